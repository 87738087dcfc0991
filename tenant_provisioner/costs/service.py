"""One report run: decide the date, gather data, build the report, deliver it (or write it out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

from tenant_provisioner.costs.cost_explorer import MAX_REQUESTS_PER_REPORT, CostExplorerSource, CostSource
from tenant_provisioner.costs.platform_data import PlatformSnapshot, read_platform
from tenant_provisioner.costs.report import Report, build_report
from tenant_provisioner.costs.settings import ReportSettings
from tenant_provisioner.errors import InvalidInput
from tenant_provisioner.tiers import load_tiers

EVENTS_WINDOW = timedelta(hours=24)
PlatformLoader = Callable[[date, datetime, datetime], PlatformSnapshot]


def parse_report_date(value: str, today: date) -> date:
    """A report date from input: an ISO date before `today` (today's costs are not in yet)."""
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput("date", f"expected YYYY-MM-DD, got {value!r}") from None
    if day >= today:
        raise InvalidInput("date", f"{day} has no complete costs yet; choose a day before {today}")
    return day


def resolve_report_date(event: Mapping[str, Any], settings: ReportSettings, now: datetime) -> date:
    """The day a run reports on: `date` if given, else the day before the (scheduled) run, locally.

    The schedule passes its own `scheduled_time`, so a retry hours later still reports on the
    same day and hits the same idempotency record.
    """
    today = now.astimezone(settings.timezone).date()
    if event.get("date"):
        return parse_report_date(event["date"], today)
    if event.get("scheduled_time"):
        try:
            scheduled = datetime.fromisoformat(str(event["scheduled_time"]).replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput("scheduled_time", f"not an ISO timestamp: {event['scheduled_time']!r}") from None
        if scheduled.tzinfo is None:
            raise InvalidInput("scheduled_time", "must carry a time zone")
        return scheduled.astimezone(settings.timezone).date() - timedelta(days=1)
    return today - timedelta(days=1)


def cost_source(settings: ReportSettings, client: Any = None,
                today: Callable[[], date] = date.today) -> CostExplorerSource:
    """Cost Explorer (or `client`, e.g. a fixture) queried as the settings say."""
    return CostExplorerSource(client, tag_key=settings.tag_key, scope=settings.scope, today=today)


def platform_loader(settings: ReportSettings) -> PlatformLoader:
    """Reads the control schema if a database is configured; otherwise says there is none."""
    def load(period_start: date, since: datetime, until: datetime) -> PlatformSnapshot:
        if settings.database is None:
            return PlatformSnapshot(unavailable="no database configured")
        try:
            conninfo = settings.database.conninfo(application_name="cost-report")
        except (GetParameterError, TransformParameterError, KeyError) as exc:
            return PlatformSnapshot(unavailable=f"database secret unreadable ({type(exc).__name__})")
        return read_platform(conninfo, period_start=period_start, since=since, until=until)
    return load


@dataclass(frozen=True)
class ReportRun:
    """What one run needs from outside: where costs and tenant data come from, and the clock."""

    settings: ReportSettings
    costs: CostSource
    platform: PlatformLoader
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    def build(self, report_date: date) -> Report:
        generated_at = self.now()
        since = generated_at - EVENTS_WINDOW
        costs = self.costs.fetch(report_date)
        platform = self.platform(report_date.replace(day=1), since, generated_at)
        return build_report(costs, platform, load_tiers(), self.settings, generated_at=generated_at,
                            events_since=since, ce_request_limit=MAX_REQUESTS_PER_REPORT)


def summary(report: Report, message_id: str | None) -> dict[str, Any]:
    """The run's JSON-safe result (returned by the Lambda and stored by idempotency)."""
    return {
        "report_date": report.report_date.isoformat(),
        "message_id": message_id,
        "yesterday_usd": str(report.yesterday),
        "month_to_date_usd": str(report.budget.month_to_date),
        "budget_level": report.budget.level,
        "forecast_usd": str(report.budget.forecast.month_end_usd),
        "anomalies": [s.name for s in report.anomalies],
        "cost_explorer_requests": report.ce_requests,
        "tenant_data": report.platform_unavailable or "ok",
    }
