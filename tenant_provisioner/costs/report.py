"""Turns cost data, the tiers file and control-schema data into the report's figures.

Pure functions over plain data: no I/O, so every figure is tested directly. Money is Decimal.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from tenant_provisioner.costs.cost_explorer import UNTAGGED, CostData, Forecast
from tenant_provisioner.costs.platform_data import BILLABLE_STATES, AuditEvent, PlatformSnapshot
from tenant_provisioner.costs.settings import ReportSettings
from tenant_provisioner.tiers import BreakerLevels, TierCatalog

CHART_DAYS = 30
ZERO = Decimal(0)


def gross_margin(revenue: Decimal, cost: Decimal) -> Decimal | None:
    """(revenue - cost) / revenue; None without revenue (a margin of nothing is undefined)."""
    return (revenue - cost) / revenue if revenue else None


@dataclass(frozen=True)
class BudgetStatus:
    budget: Decimal
    month_to_date: Decimal
    share: Decimal
    level: str                  # ok | warning | hard limit | emergency
    forecast: Forecast
    forecast_share: Decimal
    forecast_level: str


@dataclass(frozen=True)
class ServiceLine:
    name: str
    yesterday: Decimal
    previous: Decimal
    anomaly: bool

    @property
    def change(self) -> Decimal:
        return self.yesterday - self.previous

    @property
    def change_share(self) -> Decimal | None:
        return self.change / self.previous if self.previous else None


@dataclass(frozen=True)
class TenantLine:
    tenant_id: str
    tier: str
    state: str
    direct: Decimal
    shared: Decimal
    revenue: Decimal

    @property
    def cost(self) -> Decimal:
        return self.direct + self.shared

    @property
    def margin(self) -> Decimal | None:
        return gross_margin(self.revenue, self.cost)


def margin_status(margin: Decimal | None, low: Decimal, high: Decimal) -> str:
    """Where a margin stands against the target band."""
    if margin is None:
        return "no revenue"
    return "below target" if margin < low else "above target" if margin > high else "on target"


@dataclass(frozen=True)
class UnitEconomics:
    """The platform as a business, month to date: its margin against the target band, and how many
    paying tenants — at today's average revenue and direct cost per tenant — would carry the shared
    cost (break even) or reach the bottom of the target band."""

    revenue: Decimal
    cost: Decimal
    paying_tenants: int
    revenue_per_tenant: Decimal
    direct_cost_per_tenant: Decimal
    shared_cost: Decimal            # everything paying tenants do not cause directly
    status: str
    break_even_tenants: int | None  # None: a tenant costs at least what it pays at current prices
    target_tenants: int | None      # None: the target is out of reach at current prices

    @property
    def margin(self) -> Decimal | None:
        return gross_margin(self.revenue, self.cost)


def _tenants_needed(shared: Decimal, per_tenant: Decimal) -> int | None:
    """Tenants whose contribution (`per_tenant` each) covers `shared`; None if they never do."""
    if per_tenant <= 0:
        return None
    return max(1, math.ceil(shared / per_tenant))


def unit_economics(tenants: tuple[TenantLine, ...], month_to_date: Decimal,
                   target: tuple[Decimal, Decimal]) -> UnitEconomics:
    paying = [t for t in tenants if t.revenue > 0]
    revenue = sum((t.revenue for t in paying), ZERO)
    direct = sum((t.direct for t in paying), ZERO)
    count = len(paying)
    per_revenue = revenue / count if count else ZERO
    per_direct = direct / count if count else ZERO
    shared = max(month_to_date - direct, ZERO)
    low, high = target
    return UnitEconomics(
        revenue=revenue, cost=month_to_date, paying_tenants=count, revenue_per_tenant=per_revenue,
        direct_cost_per_tenant=per_direct, shared_cost=shared,
        status=margin_status(gross_margin(revenue, month_to_date), low, high),
        break_even_tenants=_tenants_needed(shared, per_revenue - per_direct) if count else None,
        # margin >= low  <=>  N * (revenue per tenant * (1 - low) - direct per tenant) >= shared
        target_tenants=_tenants_needed(shared, per_revenue * (1 - low) - per_direct) if count else None)


@dataclass(frozen=True)
class TierLine:
    tier: str
    display_name: str
    tenants: int
    revenue: Decimal
    cost: Decimal
    status: str                 # below target | on target | above target | no revenue

    @property
    def margin(self) -> Decimal | None:
        return gross_margin(self.revenue, self.cost)


@dataclass(frozen=True)
class Report:
    environment: str
    report_date: date
    generated_at: datetime
    yesterday: Decimal
    seven_day_average: Decimal
    budget: BudgetStatus
    services: tuple[ServiceLine, ...]
    other_services: Decimal
    chart: tuple[tuple[date, Decimal], ...]
    tenants: tuple[TenantLine, ...]
    tiers: tuple[TierLine, ...]
    unallocated: Decimal        # shared cost with no tenant to carry it
    margin_target: tuple[Decimal, Decimal]
    economics: UnitEconomics
    events: tuple[AuditEvent, ...]
    events_since: datetime
    platform_unavailable: str | None
    notes: tuple[str, ...]
    estimated: bool
    ce_requests: int
    ce_request_limit: int

    @property
    def change_vs_average(self) -> Decimal | None:
        return (self.yesterday - self.seven_day_average) / self.seven_day_average if self.seven_day_average else None

    @property
    def anomalies(self) -> tuple[ServiceLine, ...]:
        return tuple(s for s in self.services if s.anomaly)


def budget_level(share: Decimal, breakers: BreakerLevels) -> str:
    """The platform breaker level for spend at `share` of the monthly budget."""
    if share >= Decimal(str(breakers.suspension)):
        return "emergency"
    if share >= Decimal(str(breakers.hard_limit)):
        return "hard limit"
    if share >= Decimal(str(breakers.warning)):
        return "warning"
    return "ok"


def _services(costs: CostData, settings: ReportSettings) -> tuple[tuple[ServiceLine, ...], Decimal]:
    day, before = costs.report_date, costs.report_date - timedelta(days=1)
    today = costs.daily_by_service.get(day, {})
    previous = costs.daily_by_service.get(before, {})
    lines = []
    for name in set(today) | set(previous):
        y, p = today.get(name, ZERO), previous.get(name, ZERO)
        rise = y - p
        anomaly = rise > settings.anomaly_min_usd and (p == 0 or rise / p > settings.anomaly_min_share)
        lines.append(ServiceLine(name, y, p, anomaly))
    lines.sort(key=lambda s: (-s.yesterday, s.name))
    shown = lines[:settings.top_services] + [s for s in lines[settings.top_services:] if s.anomaly]
    other = sum((s.yesterday for s in lines if s not in shown), ZERO)
    return tuple(shown), other


def _revenue(tier_price: Decimal, overage: Decimal, report_date: date) -> Decimal:
    """Month-to-date revenue: the flat price pro rata for the days so far, plus billed overage."""
    days_in_month = calendar.monthrange(report_date.year, report_date.month)[1]
    return tier_price * report_date.day / days_in_month + overage


def _tenants(costs: CostData, platform: PlatformSnapshot, catalog: TierCatalog,
             notes: list[str]) -> tuple[tuple[TenantLine, ...], Decimal]:
    direct = {k: v for k, v in costs.month_by_tenant.items() if k != UNTAGGED}
    shared_pool = max(costs.month_to_date - sum(direct.values(), ZERO), ZERO)
    known = {t.tenant_id: t for t in platform.tenants}
    usage = {t: platform.api_requests.get(t, 0) for t in known}
    total_usage = sum(usage.values())
    if known and not total_usage:
        notes.append("no API-request usage recorded this period: shared cost split evenly between tenants")
    lines = []
    for tenant_id, tenant in known.items():
        weight = Decimal(usage[tenant_id]) / total_usage if total_usage else Decimal(1) / len(known)
        revenue = ZERO
        if tenant.state in BILLABLE_STATES and tenant.tier in catalog.tiers:
            tier = catalog.get(tenant.tier)
            quota = tier.api_requests
            billed = max(0, min(usage[tenant_id], quota.hard_limit) - quota.included)
            overage = Decimal(billed) * Decimal(str(quota.overage_usd_per_1000 or 0)) / 1000
            revenue = _revenue(Decimal(str(tier.price_usd_per_month)), overage, costs.report_date)
        lines.append(TenantLine(tenant_id, tenant.tier, tenant.state, direct.get(tenant_id, ZERO),
                                shared_pool * weight, revenue))
    strangers = sorted(set(direct) - set(known))
    if strangers and not platform.unavailable:
        notes.append(f"cost tagged with tenants unknown to control.tenants: {', '.join(strangers)}")
    lines += [TenantLine(t, "?", "unknown", direct[t], ZERO, ZERO) for t in strangers]
    lines.sort(key=lambda line: (-line.cost, line.tenant_id))
    return tuple(lines), ZERO if known else shared_pool


def _tiers(lines: tuple[TenantLine, ...], catalog: TierCatalog) -> tuple[TierLine, ...]:
    result = []
    low, high = Decimal(str(catalog.margin_min)), Decimal(str(catalog.margin_max))
    for name, tier in catalog.tiers.items():
        members = [line for line in lines if line.tier == name]
        revenue = sum((m.revenue for m in members), ZERO)
        cost = sum((m.cost for m in members), ZERO)
        status = margin_status(gross_margin(revenue, cost), low, high)
        result.append(TierLine(name, tier.display_name, len(members), revenue, cost, status))
    return tuple(result)


def build_report(costs: CostData, platform: PlatformSnapshot, catalog: TierCatalog, settings: ReportSettings,
                 *, generated_at: datetime, events_since: datetime, ce_request_limit: int) -> Report:
    """All figures of the report for `costs.report_date`."""
    day = costs.report_date
    notes = list(platform.notes)
    week = [costs.day_total(day - timedelta(days=n)) for n in range(1, 8)]
    mtd = costs.month_to_date
    forecast = costs.forecast or Forecast(mtd, "month complete")
    if forecast.note:
        notes.append(f"forecast {forecast.source}: {forecast.note}")
    budget = settings.monthly_budget_usd
    services, other = _services(costs, settings)
    tenants, unallocated = _tenants(costs, platform, catalog, notes)
    target = (Decimal(str(catalog.margin_min)), Decimal(str(catalog.margin_max)))
    return Report(
        environment=settings.environment,
        report_date=day,
        generated_at=generated_at,
        yesterday=costs.day_total(day),
        seven_day_average=sum(week, ZERO) / 7,
        budget=BudgetStatus(budget, mtd, mtd / budget, budget_level(mtd / budget, catalog.breakers), forecast,
                            forecast.month_end_usd / budget,
                            budget_level(forecast.month_end_usd / budget, catalog.breakers)),
        services=services,
        other_services=other,
        chart=tuple((day - timedelta(days=n), costs.day_total(day - timedelta(days=n)))
                    for n in reversed(range(CHART_DAYS))),
        tenants=tenants,
        tiers=_tiers(tenants, catalog),
        unallocated=unallocated,
        margin_target=target,
        economics=unit_economics(tenants, mtd, target),
        events=platform.events,
        events_since=events_since,
        platform_unavailable=platform.unavailable,
        notes=tuple(notes),
        estimated=day in costs.estimated_days,
        ce_requests=costs.requests,
        ce_request_limit=ce_request_limit,
    )
