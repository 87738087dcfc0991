"""Cost Explorer access: query windows, the 4-request cap, throttling retries, forecast fallbacks."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from decimal import Decimal

import boto3
import pytest
from botocore.stub import ANY, Stubber
from hypothesis import given
from hypothesis import strategies as st

from tenant_provisioner.costs.cost_explorer import (MAX_REQUESTS_PER_REPORT, CostExplorerBudgetExceeded, CostExplorerSource,
                                       CostExplorerUnavailable, FixtureClient, RequestBudget, month_end,
                                       query_window)
from tenant_provisioner.errors import InvalidInput
from tests.costs.conftest import fixture_source

DAY = date(2026, 11, 22)


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)))
def test_query_window_covers_the_chart_and_the_month(day):
    start, end = query_window(day)
    assert end == day + timedelta(days=1)
    assert start <= day - timedelta(days=29) and start <= day.replace(day=1)
    assert (end - start).days <= 31
    assert month_end(day).day == 1 and month_end(day) > day


def test_sample_report_fits_in_four_requests(sample):
    costs = fixture_source(sample, DAY).fetch(DAY)
    assert costs.requests == MAX_REQUESTS_PER_REPORT   # 2 pages by service + 1 by tenant + forecast
    assert costs.forecast.source == "cost-explorer"
    assert costs.forecast.month_end_usd == costs.month_to_date + Decimal("401.37")
    assert DAY in costs.estimated_days
    assert set(costs.daily_by_service) == {DAY - timedelta(days=n) for n in range(30)}
    assert costs.month_by_tenant["acme-corp"] == Decimal("3.910000")
    assert "" in costs.month_by_tenant   # the untagged (shared) cost


def test_forecast_is_extrapolated_when_no_request_is_left(sample):
    """A third page of daily data uses the request the forecast would have had."""
    pages = sample["daily_by_service"]
    third = len(pages[1]["ResultsByTime"]) // 2
    sample["daily_by_service"] = [pages[0], {**pages[1], "ResultsByTime": pages[1]["ResultsByTime"][:third]},
                                  {**pages[1], "ResultsByTime": pages[1]["ResultsByTime"][third:]}]
    costs = fixture_source(sample, DAY).fetch(DAY)
    assert costs.requests == 4
    assert costs.forecast.source == "extrapolated"
    assert "no Cost Explorer request left" in costs.forecast.note


def test_a_fifth_request_is_refused_before_it_is_made(sample):
    pages = sample["daily_by_service"]
    sample["daily_by_service"] = [copy.deepcopy(pages[0]) for _ in range(5)]
    client = FixtureClient(sample)
    calls = []
    original = client.get_cost_and_usage
    client.get_cost_and_usage = lambda **kw: calls.append(kw) or original(**kw)
    with pytest.raises(CostExplorerBudgetExceeded, match="at most 4 requests"):
        CostExplorerSource(client).fetch(DAY)
    assert len(calls) == 4


def test_forecast_for_a_past_day_is_extrapolated_without_a_request(sample):
    source = CostExplorerSource(FixtureClient(sample), today=lambda: DAY + timedelta(days=5))
    costs = source.fetch(DAY)
    assert costs.requests == 3 and costs.forecast.source == "extrapolated"
    week = sum((costs.day_total(DAY - timedelta(days=n)) for n in range(7)), Decimal(0)) / 7
    assert costs.forecast.month_end_usd == costs.month_to_date + week * 8


def test_last_day_of_the_month_needs_no_forecast(sample):
    day = date(2026, 11, 30)
    costs = CostExplorerSource(FixtureClient(sample), today=lambda: date(2026, 12, 1)).fetch(day)
    assert costs.forecast.source == "month complete" and costs.requests == 3


def _throttle(stubber: Stubber, operation: str, times: int, code: str = "LimitExceededException") -> None:
    for _ in range(times):
        stubber.add_client_error(operation, service_error_code=code, service_message="Rate exceeded",
                                 http_status_code=400)


def test_throttling_is_retried_with_backoff_and_only_answers_count(sample):
    client = boto3.client("ce", region_name="us-east-1")
    sleeps: list[float] = []
    stubber = Stubber(client)
    pages = sample["daily_by_service"]
    _throttle(stubber, "get_cost_and_usage", 2)
    stubber.add_response("get_cost_and_usage", pages[0])
    _throttle(stubber, "get_cost_and_usage", 1, code="ThrottlingException")
    stubber.add_response("get_cost_and_usage", pages[1])
    stubber.add_response("get_cost_and_usage", sample["month_by_tenant"][0])
    stubber.add_response("get_cost_forecast", sample["forecast"])
    budget = RequestBudget(sleep=sleeps.append, base_delay=0.5)
    with stubber:
        costs = CostExplorerSource(client, budget=budget, today=lambda: DAY + timedelta(days=1)).fetch(DAY)
    stubber.assert_no_pending_responses()
    assert costs.requests == 4 and budget.throttled == 3
    assert len(sleeps) == 3 and sleeps[0] <= 0.5 and sleeps[1] <= 1.0 and sleeps[2] <= 0.5


def test_throttling_that_never_ends_raises_a_transient_error():
    client = boto3.client("ce", region_name="us-east-1")
    stubber = Stubber(client)
    _throttle(stubber, "get_cost_and_usage", 5)
    with stubber, pytest.raises(CostExplorerUnavailable, match="still throttled after 5 attempts") as info:
        CostExplorerSource(client, budget=RequestBudget(sleep=lambda _: None)).fetch(DAY)
    assert info.value.retryable


def test_a_failing_forecast_falls_back_to_extrapolation(sample):
    client = boto3.client("ce", region_name="us-east-1")
    stubber = Stubber(client)
    for page in sample["daily_by_service"] + sample["month_by_tenant"]:
        stubber.add_response("get_cost_and_usage", page)
    stubber.add_client_error("get_cost_forecast", service_error_code="DataUnavailableException")
    with stubber:
        costs = CostExplorerSource(client, today=lambda: DAY + timedelta(days=1)).fetch(DAY)
    assert costs.forecast.source == "extrapolated" and "DataUnavailableException" in costs.forecast.note
    assert costs.requests == 3


def test_access_denied_is_not_retried():
    client = boto3.client("ce", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_client_error("get_cost_and_usage", service_error_code="AccessDeniedException")
    with stubber, pytest.raises(CostExplorerUnavailable, match="AccessDenied"):
        CostExplorerSource(client, budget=RequestBudget(sleep=pytest.fail)).fetch(DAY)


@pytest.mark.parametrize("content, message", [("{", "not valid JSON"), ("[]", "needs 'daily_by_service'")])
def test_bad_fixture_files_are_invalid_input(tmp_path, content, message):
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        FixtureClient.from_file(path)
    with pytest.raises(InvalidInput, match="not found"):
        FixtureClient.from_file(tmp_path / "missing.json")


def test_every_query_is_scoped_to_the_environment_tag_when_asked(sample):
    client = boto3.client("ce", region_name="us-east-1")
    stubber = Stubber(client)
    scoped = {"And": [{"Not": {"Dimensions": {"Key": "RECORD_TYPE", "Values": ["Credit", "Refund"]}}},
                      {"Tags": {"Key": "environment", "Values": ["prod"], "MatchOptions": ["EQUALS"]}}]}
    first, second = sample["daily_by_service"]
    for page, expected in ((first, _ANY_QUERY), (second, _ANY_QUERY_PAGE), (sample["month_by_tenant"][0], _ANY_QUERY)):
        stubber.add_response("get_cost_and_usage", page, {**expected, "Filter": scoped})
    stubber.add_response("get_cost_forecast", sample["forecast"], {**_ANY_FORECAST, "Filter": scoped})
    with stubber:
        CostExplorerSource(client, scope=("environment", "prod"), today=lambda: DAY + timedelta(days=1)).fetch(DAY)
    stubber.assert_no_pending_responses()


_ANY_QUERY = {key: ANY for key in ("TimePeriod", "Granularity", "Metrics", "GroupBy")}
_ANY_QUERY_PAGE = {**_ANY_QUERY, "NextPageToken": ANY}
_ANY_FORECAST = {key: ANY for key in ("TimePeriod", "Granularity", "Metric")}
