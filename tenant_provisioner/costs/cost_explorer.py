"""Cost Explorer access behind a small interface, capped at a fixed number of paid requests.

Every Cost Explorer request (every page) costs $0.01, so a report makes at most
`MAX_REQUESTS_PER_REPORT` of them: one daily-by-service query that covers the 30-day chart,
yesterday, the 7-day average and month-to-date; one month-to-date query grouped by the `tenant`
cost-allocation tag; and, when a request is left, Cost Explorer's forecast (otherwise the
forecast is extrapolated from the month's daily costs). botocore's own retries are switched off
for this client so that every attempt goes through `RequestBudget`, which counts and logs them.
"""

from __future__ import annotations

import calendar
import json
import logging
import random
import time
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tenant_provisioner.errors import InvalidInput, PlatformError, TransientError

MAX_REQUESTS_PER_REPORT = 4
METRIC = "UnblendedCost"
# What the platform consumes: credits and refunds would hide spend (and vanish when credits run out).
USAGE_ONLY = {"Not": {"Dimensions": {"Key": "RECORD_TYPE", "Values": ["Credit", "Refund"]}}}
UNTAGGED = ""  # Cost Explorer's value for cost without the tag ("tenant$")
THROTTLING_CODES = frozenset({"ThrottlingException", "LimitExceededException", "TooManyRequestsException",
                              "RequestLimitExceeded"})
# Our own retry loop owns retries: botocore's would be invisible to the request count.
_CE_CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5,
                           read_timeout=30)

logger = logging.getLogger(__name__)


class CostExplorerBudgetExceeded(PlatformError):
    """The report would need more Cost Explorer requests than it may make."""

    code = "cost_explorer_budget_exceeded"


class CostExplorerUnavailable(TransientError):
    """Cost Explorer kept throttling or failed; the scheduled retry may succeed."""

    code = "cost_explorer_unavailable"


@dataclass(frozen=True)
class Forecast:
    month_end_usd: Decimal   # month-to-date actual + forecast for the rest of the month
    source: str              # "cost-explorer" | "extrapolated" | "month complete"
    note: str = ""


@dataclass(frozen=True)
class CostData:
    """Everything the report needs from Cost Explorer for one report date."""

    report_date: date
    daily_by_service: Mapping[date, Mapping[str, Decimal]]
    estimated_days: frozenset[date]
    month_by_tenant: Mapping[str, Decimal]   # tag value -> cost; UNTAGGED is shared cost
    forecast: Forecast | None
    requests: int

    def day_total(self, day: date) -> Decimal:
        return sum(self.daily_by_service.get(day, {}).values(), Decimal(0))

    @property
    def month_start(self) -> date:
        return self.report_date.replace(day=1)

    @property
    def month_to_date(self) -> Decimal:
        day, total = self.month_start, Decimal(0)
        while day <= self.report_date:
            total += self.day_total(day)
            day += timedelta(days=1)
        return total


class CostSource(Protocol):
    """Where cost data comes from: Cost Explorer, or a JSON fixture for local runs and tests."""

    def fetch(self, report_date: date) -> CostData: ...


@dataclass
class RequestBudget:
    """Counts Cost Explorer requests, refuses the one over `limit`, retries throttling with backoff.

    Only requests Cost Explorer answers count toward the limit (they are what is billed); each
    throttled attempt is counted separately and logged.
    """

    limit: int = MAX_REQUESTS_PER_REPORT
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    sleep: Callable[[float], None] = time.sleep
    used: int = 0
    throttled: int = 0
    calls: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def call(self, operation: str, request: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.used >= self.limit:
            raise CostExplorerBudgetExceeded(
                f"Cost Explorer request {self.used + 1} ({operation}) refused: a report may make at most "
                f"{self.limit} requests (each costs $0.01)")
        attempt = 1
        while True:
            try:
                response = request()
                break
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in THROTTLING_CODES:
                    raise
                self.throttled += 1
                if attempt == self.max_attempts:
                    raise CostExplorerUnavailable(
                        f"Cost Explorer {operation} still throttled after {attempt} attempts") from exc
                delay = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
                logger.warning("Cost Explorer %s throttled (%s), retry %d in %.2fs", operation, code,
                               attempt, delay)
                self.sleep(delay)
                attempt += 1
        self.used += 1
        self.calls.append(operation)
        logger.info("Cost Explorer request %d/%d: %s", self.used, self.limit, operation)
        return response


def cost_filter(scope: tuple[str, str] | None) -> dict[str, Any]:
    """Usage cost only, and only the cost tagged ``key=value`` when a scope is given."""
    if scope is None:
        return USAGE_ONLY
    key, value = scope
    return {"And": [USAGE_ONLY, {"Tags": {"Key": key, "Values": [value], "MatchOptions": ["EQUALS"]}}]}


def query_window(report_date: date) -> tuple[date, date]:
    """[start, end) covering both the 30 days ending on `report_date` and its month so far."""
    start = min(report_date - timedelta(days=29), report_date.replace(day=1))
    return start, report_date + timedelta(days=1)


def month_end(day: date) -> date:
    """The first day of the next month (Cost Explorer's end dates are exclusive)."""
    return day.replace(day=calendar.monthrange(day.year, day.month)[1]) + timedelta(days=1)


def extrapolated_forecast(daily: Mapping[date, Mapping[str, Decimal]], report_date: date,
                          month_to_date: Decimal, note: str) -> Forecast:
    """Month-to-date plus the last 7 days' average for each remaining day of the month."""
    remaining = (month_end(report_date) - report_date).days - 1
    if remaining <= 0:
        return Forecast(month_to_date, "month complete")
    last7 = [sum(daily.get(report_date - timedelta(days=n), {}).values(), Decimal(0)) for n in range(7)]
    average = sum(last7, Decimal(0)) / 7
    return Forecast(month_to_date + average * remaining, "extrapolated", note)


def _money(value: Any) -> Decimal:
    return Decimal(str(value.get(METRIC, {}).get("Amount", "0"))) if isinstance(value, Mapping) else Decimal(0)


def _parse_service_pages(pages: list[dict[str, Any]]) -> tuple[dict[date, dict[str, Decimal]], set[date]]:
    daily: dict[date, dict[str, Decimal]] = {}
    estimated: set[date] = set()
    for page in pages:
        for result in page.get("ResultsByTime", []):
            day = date.fromisoformat(result["TimePeriod"]["Start"])
            services = daily.setdefault(day, {})
            for group in result.get("Groups", []):
                name = group["Keys"][0]
                services[name] = services.get(name, Decimal(0)) + _money(group.get("Metrics"))
            if not result.get("Groups") and _money(result.get("Total")):
                services["(ungrouped)"] = _money(result.get("Total"))
            if result.get("Estimated"):
                estimated.add(day)
    return daily, estimated


def _parse_tenant_pages(pages: list[dict[str, Any]], tag_key: str) -> dict[str, Decimal]:
    by_tenant: dict[str, Decimal] = {}
    for page in pages:
        for result in page.get("ResultsByTime", []):
            for group in result.get("Groups", []):
                value = group["Keys"][0].removeprefix(f"{tag_key}$")
                by_tenant[value] = by_tenant.get(value, Decimal(0)) + _money(group.get("Metrics"))
    return by_tenant


def cost_explorer_client() -> Any:
    """Cost Explorer's one endpoint (us-east-1), with the retry settings the request budget expects."""
    return boto3.client("ce", region_name="us-east-1", config=_CE_CLIENT_CONFIG)


class CostExplorerSource:
    """`CostSource` over a boto3 Cost Explorer client (or anything with the same two methods)."""

    def __init__(self, client: Any = None, *, tag_key: str = "tenant", scope: tuple[str, str] | None = None,
                 budget: RequestBudget | None = None, today: Callable[[], date] = date.today) -> None:
        self.client = client or cost_explorer_client()
        self.tag_key = tag_key
        self.filter = cost_filter(scope)
        self.budget = budget or RequestBudget()
        self._today = today

    def _pages(self, operation: str, **params: Any) -> list[dict[str, Any]]:
        pages, token = [], None
        while True:
            kwargs = {**params, **({"NextPageToken": token} if token else {})}
            try:
                page = self.budget.call(operation, lambda kw=kwargs: self.client.get_cost_and_usage(**kw))
            except (ClientError, BotoCoreError) as exc:
                raise CostExplorerUnavailable(f"Cost Explorer {operation} failed: {exc}") from exc
            pages.append(page)
            token = page.get("NextPageToken")
            if not token:
                return pages

    def fetch(self, report_date: date) -> CostData:
        start, end = query_window(report_date)
        service_pages = self._pages(
            "GetCostAndUsage daily by SERVICE",
            TimePeriod={"Start": start.isoformat(), "End": end.isoformat()}, Granularity="DAILY",
            Metrics=[METRIC], Filter=self.filter, GroupBy=[{"Type": "DIMENSION", "Key": "SERVICE"}])
        daily, estimated = _parse_service_pages(service_pages)
        tenant_pages = self._pages(
            f"GetCostAndUsage month-to-date by tag {self.tag_key}",
            TimePeriod={"Start": report_date.replace(day=1).isoformat(), "End": end.isoformat()},
            Granularity="MONTHLY", Metrics=[METRIC], Filter=self.filter,
            GroupBy=[{"Type": "TAG", "Key": self.tag_key}])
        partial = CostData(report_date, daily, frozenset(estimated), _parse_tenant_pages(tenant_pages, self.tag_key),
                           None, self.budget.used)
        forecast = self._forecast(partial)
        return replace(partial, forecast=forecast, requests=self.budget.used)

    def _forecast(self, data: CostData) -> Forecast:
        """Cost Explorer's forecast when it can give one and a request is left; else extrapolate."""
        start, end = data.report_date + timedelta(days=1), month_end(data.report_date)
        if start >= end:
            return Forecast(data.month_to_date, "month complete")
        if self.budget.remaining <= 0:
            return extrapolated_forecast(data.daily_by_service, data.report_date, data.month_to_date,
                                         "no Cost Explorer request left for the forecast")
        if start < self._today():
            return extrapolated_forecast(data.daily_by_service, data.report_date, data.month_to_date,
                                         "Cost Explorer forecasts only from today on")
        try:
            response = self.budget.call("GetCostForecast", lambda: self.client.get_cost_forecast(
                TimePeriod={"Start": start.isoformat(), "End": end.isoformat()}, Granularity="MONTHLY",
                Metric="UNBLENDED_COST", Filter=self.filter))
        except (ClientError, BotoCoreError, CostExplorerUnavailable) as exc:
            logger.warning("Cost Explorer forecast unavailable, extrapolating: %s", exc)
            return extrapolated_forecast(data.daily_by_service, data.report_date, data.month_to_date,
                                         f"Cost Explorer forecast unavailable ({type(exc).__name__})")
        rest = Decimal(str(response.get("Total", {}).get("Amount", "0")))
        return Forecast(data.month_to_date + rest, "cost-explorer")


class FixtureClient:
    """A stand-in Cost Explorer client answering from a JSON fixture (local dry runs, tests).

    The fixture holds real response shapes: ``daily_by_service`` and ``month_by_tenant`` are lists
    of GetCostAndUsage pages, ``forecast`` an optional GetCostForecast response.
    """

    def __init__(self, fixture: Mapping[str, Any]) -> None:
        self.fixture = fixture

    @classmethod
    def from_file(cls, path: Path) -> "FixtureClient":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise InvalidInput("fixture", f"file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise InvalidInput("fixture", f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or "daily_by_service" not in data or "month_by_tenant" not in data:
            raise InvalidInput("fixture", f"{path} needs 'daily_by_service' and 'month_by_tenant' page lists")
        return cls(data)

    def get_cost_and_usage(self, **params: Any) -> dict[str, Any]:
        key = "month_by_tenant" if params["GroupBy"][0]["Type"] == "TAG" else "daily_by_service"
        pages = self.fixture[key]
        index = int(params.get("NextPageToken") or 0)
        page = dict(pages[index])
        if index + 1 < len(pages):
            page["NextPageToken"] = str(index + 1)
        return page

    def get_cost_forecast(self, **_params: Any) -> dict[str, Any]:
        if "forecast" not in self.fixture:
            raise ClientError({"Error": {"Code": "DataUnavailableException", "Message": "no forecast in fixture"}},
                              "GetCostForecast")
        return self.fixture["forecast"]
