"""The report's figures: budget levels, anomalies, tenant cost split and margins."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from tenant_provisioner.costs.cost_explorer import CostData, Forecast
from tenant_provisioner.costs.platform_data import PlatformSnapshot, TenantRecord
from tenant_provisioner.costs.report import budget_level, build_report
from tenant_provisioner.tiers import load_tiers
from tenant_provisioner.costs.settings import ReportSettings
from tests.costs.conftest import REPORT_ENV, fixture_source

DAY = date(2026, 11, 22)
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)
BREAKERS = load_tiers().breakers


def _build(costs, platform, settings):
    return build_report(costs, platform, load_tiers(), settings, generated_at=NOW,
                        events_since=NOW - timedelta(hours=24), ce_request_limit=4)


@pytest.fixture()
def sample_costs(sample):
    return fixture_source(sample, DAY).fetch(DAY)


@pytest.mark.parametrize("share, level", [("0", "ok"), ("0.8999", "ok"), ("0.9", "warning"), ("0.99", "warning"),
                                          ("1.0", "hard limit"), ("1.99", "hard limit"), ("2.0", "emergency"),
                                          ("7.5", "emergency")])
def test_budget_levels_follow_the_tiers_file_breakers(share, level):
    assert budget_level(Decimal(share), BREAKERS) == level


@given(st.decimals(min_value=0, max_value=10, places=4), st.decimals(min_value=0, max_value=10, places=4))
def test_budget_level_never_falls_as_spend_rises(a, b):
    order = ["ok", "warning", "hard limit", "emergency"]
    low, high = sorted((a, b))
    assert order.index(budget_level(low, BREAKERS)) <= order.index(budget_level(high, BREAKERS))


def test_sample_report_figures(sample_costs, sample, settings):
    report = _build(sample_costs, PlatformSnapshot.from_mapping(sample["platform"]), settings)
    assert report.yesterday == sample_costs.day_total(DAY)
    assert report.seven_day_average == sum((sample_costs.day_total(DAY - timedelta(days=n)) for n in range(1, 8)),
                                           Decimal(0)) / 7
    assert report.budget.share == report.budget.month_to_date / 1800
    assert report.budget.level == "ok"
    assert [s.name for s in report.anomalies] == ["EC2 - Other"]
    assert report.services[0].yesterday >= report.services[1].yesterday
    assert len(report.chart) == 30 and report.chart[-1] == (DAY, report.yesterday)
    assert report.estimated and report.ce_requests == 4


def test_tenant_costs_add_up_to_the_month_and_follow_usage(sample_costs, sample, settings):
    report = _build(sample_costs, PlatformSnapshot.from_mapping(sample["platform"]), settings)
    total = sum((t.cost for t in report.tenants), Decimal(0)) + report.unallocated
    assert abs(total - report.budget.month_to_date) < Decimal("0.000001")
    by_id = {t.tenant_id: t for t in report.tenants}
    usage = sample["platform"]["api_requests"]
    assert float(by_id["acme-corp"].shared / by_id["hollow-oak"].shared) == pytest.approx(
        usage["acme-corp"] / usage["hollow-oak"])
    assert by_id["dunmore-labs"].revenue == 0          # suspended: no revenue
    days = Decimal(22) / 30
    assert by_id["hollow-oak"].revenue == Decimal(9) * days
    # blue-harbor (pro) used 1.45M of 1M included: 450k overage at $0.02 / 1k
    assert by_id["blue-harbor"].revenue == Decimal(49) * days + Decimal(450) * Decimal("0.02")


def test_margin_status_against_the_target_band(sample_costs, settings):
    cheap = replace(sample_costs, daily_by_service={DAY: {"AWS Lambda": Decimal("1")}},
                    month_by_tenant={"": Decimal("1")})
    platform = PlatformSnapshot(tenants=(TenantRecord("acme-corp", "business", "active"),
                                         TenantRecord("bob-co", "starter", "active")),
                                api_requests={"acme-corp": 9, "bob-co": 1})
    report = _build(cheap, platform, settings)
    tiers = {t.tier: t for t in report.tiers}
    assert tiers["pro"].status == "no revenue"
    assert tiers["business"].status == "above target"   # $1 of cost against $109 revenue
    costly = replace(cheap, daily_by_service={DAY: {"AWS Lambda": Decimal("110")}},
                     month_by_tenant={"": Decimal("110")})
    tiers = {t.tier: t for t in _build(costly, platform, settings).tiers}
    assert tiers["business"].status == "below target" and tiers["business"].margin < Decimal("0.85")


def test_without_tenant_data_shared_cost_stays_unallocated(sample_costs, settings):
    report = _build(sample_costs, PlatformSnapshot(unavailable="database unreachable (OperationalError)"), settings)
    assert report.platform_unavailable.startswith("database unreachable")
    assert {t.state for t in report.tenants} == {"unknown"}      # tagged cost only
    total = report.unallocated + sum((t.cost for t in report.tenants), Decimal(0))
    assert abs(total - report.budget.month_to_date) < Decimal("0.000001")


def test_no_usage_splits_shared_cost_evenly(sample_costs, sample, settings):
    platform = PlatformSnapshot.from_mapping({**sample["platform"], "api_requests": {}})
    report = _build(sample_costs, platform, settings)
    assert len({t.shared for t in report.tenants}) == 1
    assert any("split evenly" in n for n in report.notes)


@hsettings(max_examples=50)
@given(yesterday=st.decimals(min_value=0, max_value=1000, places=2),
       before=st.decimals(min_value=0, max_value=1000, places=2))
def test_anomaly_needs_both_the_share_and_the_amount(yesterday, before):
    settings = ReportSettings.from_env(REPORT_ENV)
    costs = CostData(DAY, {DAY: {"S": yesterday}, DAY - timedelta(days=1): {"S": before}}, frozenset(), {},
                     Forecast(yesterday, "month complete"), 0)
    line = _build(costs, PlatformSnapshot(), settings).services[0]
    rise = yesterday - before
    expected = rise > 5 and (before == 0 or rise / before > Decimal("0.25"))
    assert line.anomaly == expected


@hsettings(max_examples=60, deadline=None)
@given(tenants=st.lists(st.tuples(st.sampled_from(["starter", "pro", "business"]),
                                  st.sampled_from(["active", "suspended"]),
                                  st.integers(min_value=0, max_value=30_000_000),
                                  st.decimals(min_value=0, max_value=5, places=2)), max_size=12),
       shared=st.decimals(min_value=0, max_value=5000, places=2))
def test_every_dollar_is_carried_exactly_once(tenants, shared):
    """Direct + shared cost over all tenants (plus what no tenant carries) is the month's total."""
    settings = ReportSettings.from_env(REPORT_ENV)
    direct = {f"tenant-{i:02d}": cost for i, (_, _, _, cost) in enumerate(tenants)}
    total = shared + sum(direct.values(), Decimal(0))
    costs = CostData(DAY, {DAY: {"Amazon EC2": total}}, frozenset(), {"": shared, **direct},
                     Forecast(total, "month complete"), 2)
    platform = PlatformSnapshot(
        tenants=tuple(TenantRecord(f"tenant-{i:02d}", tier, state) for i, (tier, state, _, _) in enumerate(tenants)),
        api_requests={f"tenant-{i:02d}": used for i, (_, _, used, _) in enumerate(tenants)})
    report = _build(costs, platform, settings)
    carried = sum((t.cost for t in report.tenants), Decimal(0)) + report.unallocated
    assert abs(carried - total) < Decimal("0.0000001")
    assert all(t.shared >= 0 and t.revenue >= 0 for t in report.tenants)
    assert sum(t.tenants for t in report.tiers) == len(tenants)


def test_unit_economics_of_the_sample(sample_costs, sample, settings):
    """-388.8 % margin month to date: the headline says how many paying tenants would change that."""
    report = _build(sample_costs, PlatformSnapshot.from_mapping(sample["platform"]), settings)
    e = report.economics
    paying = [t for t in report.tenants if t.revenue > 0]
    assert e.paying_tenants == len(paying) == 7 and e.status == "below target"
    assert e.cost == report.budget.month_to_date and e.revenue == sum((t.revenue for t in paying), Decimal(0))
    assert e.shared_cost == e.cost - sum((t.direct for t in paying), Decimal(0))
    contribution = e.revenue_per_tenant - e.direct_cost_per_tenant
    assert e.break_even_tenants == 36
    assert (e.break_even_tenants - 1) * contribution < e.shared_cost <= e.break_even_tenants * contribution
    # at the target count the margin reaches the bottom of the band, one tenant fewer it does not
    def margin_with(n):
        return (n * e.revenue_per_tenant - e.shared_cost - n * e.direct_cost_per_tenant) / (n * e.revenue_per_tenant)
    assert margin_with(e.target_tenants) >= Decimal("0.85") > margin_with(e.target_tenants - 1)


@given(revenue=st.decimals(min_value=0, max_value=500, places=2), direct=st.decimals(min_value=0, max_value=500,
                                                                                       places=2))
@hsettings(max_examples=50)
def test_break_even_is_absent_exactly_when_a_tenant_costs_what_it_pays(revenue, direct):
    from tenant_provisioner.costs.report import TenantLine, unit_economics
    tenant = TenantLine("t", "pro", "active", direct, Decimal(0), revenue)
    e = unit_economics((tenant,), direct + Decimal(100), (Decimal("0.85"), Decimal("0.95")))
    if revenue == 0:
        assert e.paying_tenants == 0 and e.break_even_tenants is None and e.status == "no revenue"
    else:
        assert (e.break_even_tenants is None) == (revenue <= direct)
