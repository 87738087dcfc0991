"""HTML and plain-text renderings of a `Report`, for mail clients.

Mail clients strip <style>, scripts and often remote images, so the HTML uses tables and inline
styles only, and the 30-day chart is a table of bars (cells with a width and a background) that
renders the same in Gmail, Outlook and Apple Mail. Every dynamic string is escaped.
"""

from __future__ import annotations

import calendar
from decimal import ROUND_HALF_UP, Decimal
from html import escape

from tenant_provisioner.costs.report import Report, ServiceLine, UnitEconomics, gross_margin

LEVEL_COLOURS = {"ok": ("#1a7f37", "#ffffff"), "warning": ("#b26a00", "#ffffff"),
                 "hard limit": ("#c62828", "#ffffff"), "emergency": ("#5c0000", "#ffffff"),
                 "on target": ("#1a7f37", "#ffffff"), "above target": ("#1d4ed8", "#ffffff"),
                 "below target": ("#c62828", "#ffffff"), "no revenue": ("#c62828", "#ffffff")}
FORECAST_SOURCES = {"cost-explorer": "Cost Explorer forecast",
                    "extrapolated": "extrapolated from the last 7 days",
                    "month complete": "month complete"}
# Bars are drawn to scale up to this multiple of the median day (or the daily budget pace): one
# spike must not flatten the other 29 days into slivers. A day above it is drawn full width and
# marked off scale; its amount is printed as always.
SPIKE_FACTOR = Decimal(3)
TENANT_ROWS = 25
BAR = "#4a7bd0"
BAR_OVER = "#c62828"
CELL = "padding:4px 8px;border-bottom:1px solid #e5e7eb;"
NUM = CELL + "text-align:right;white-space:nowrap;"
HEAD = "padding:4px 8px;border-bottom:2px solid #9ca3af;text-align:left;font-weight:600;"
SECTION = "font-size:16px;margin:24px 0 8px 0;color:#111827;"
ESTIMATE_NOTE = "Cost Explorer still marks this day's figures as estimated; they usually rise by the next day."


def usd(value: Decimal) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value).quantize(Decimal('0.01'), ROUND_HALF_UP):,}"


def pct(value: Decimal | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    rounded = (value * 100).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return f"{'+' if signed and rounded > 0 else ''}{rounded} %"


def subject(report: Report) -> str:
    b, low, high = report.budget, *report.margin_target
    return (f"[{report.environment}] AWS cost {report.report_date}: {usd(report.yesterday)}; "
            f"month to date {usd(b.month_to_date)} = {pct(b.share)} of budget ({b.level.upper()}); "
            f"margin {pct(report.economics.margin)} vs target {pct(low)} to {pct(high)}")


def _break_even(e: UnitEconomics, low: Decimal) -> str:
    """How many paying tenants the platform needs at current prices, in one sentence."""
    if not e.paying_tenants:
        return "No paying tenants yet: break-even cannot be estimated."
    now = (f"{e.paying_tenants} paying tenants now, each paying {usd(e.revenue_per_tenant)} and causing "
           f"{usd(e.direct_cost_per_tenant)} of direct cost month to date, against {usd(e.shared_cost)} "
           "of shared cost")
    if e.break_even_tenants is None:
        return f"Never breaks even at current prices: a tenant costs more than it pays ({now})."
    target = (f"{e.target_tenants:,} reach the {pct(low)} margin target" if e.target_tenants is not None
              else f"the {pct(low)} margin target is out of reach at current prices")
    return f"Breaks even at {e.break_even_tenants:,} paying tenants at current prices; {target} ({now})."


def _headline(report: Report) -> tuple[str, str]:
    """(margin sentence, break-even sentence): unit economics first, before spend."""
    e, (low, high) = report.economics, report.margin_target
    margin = f"Margin month to date: {pct(e.margin)} vs target {pct(low)} to {pct(high)}"
    return margin, _break_even(e, low)


def _daily_pace(report: Report) -> Decimal:
    days = calendar.monthrange(report.report_date.year, report.report_date.month)[1]
    return report.budget.budget / days


def _badge(level: str) -> str:
    bg, fg = LEVEL_COLOURS[level]
    return (f'<span style="background:{bg};color:{fg};padding:2px 8px;border-radius:3px;'
            f'font-weight:600;">{escape(level.upper())}</span>')


class Markup(str):
    """A cell that is already HTML (everything else is escaped)."""


def _cell(value: str) -> str:
    return value if isinstance(value, Markup) else escape(value)


def _table(headers: list[str] | None, rows: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f'<th style="{HEAD}{"text-align:right;" if i >= numeric_from else ""}">{escape(h)}</th>'
                   for i, h in enumerate(headers or []))
    body = "".join("<tr>" + "".join(f'<td style="{NUM if i >= numeric_from else CELL}">{_cell(cell)}</td>'
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return (f'<table role="presentation" cellpadding="0" cellspacing="0" border="0" '
            f'style="border-collapse:collapse;font-size:13px;">{f"<tr>{head}</tr>" if head else ""}{body}</table>')


def _service_change(s: ServiceLine) -> str:
    return f"{usd(s.change)} ({pct(s.change_share, signed=True)})"


def _chart_scale(report: Report) -> Decimal:
    """The amount drawn as a full-width bar: the highest day, unless one spikes far above the rest."""
    pace = _daily_pace(report)
    amounts = sorted(amount for _, amount in report.chart)
    median = amounts[len(amounts) // 2] if amounts else Decimal(0)
    peak = max([*amounts[-1:], pace, Decimal("0.01")])
    return min(peak, max(median * SPIKE_FACTOR, pace, Decimal("0.01")))


def _chart_html(report: Report) -> str:
    pace = _daily_pace(report)
    scale = _chart_scale(report)
    rows = []
    for day, amount in report.chart:
        width = min(100, int((amount / scale * 100).to_integral_value(ROUND_HALF_UP)))
        colour = BAR_OVER if amount > pace else BAR
        off_scale = " &#9650; off scale" if amount > scale else ""
        bar = (f'<td width="{width}%" bgcolor="{colour}" style="background:{colour};height:12px;'
               f'font-size:0;line-height:0;">&nbsp;</td>' if width > 0 else "")
        rows.append(
            f'<tr><td style="font-size:11px;color:#4b5563;padding:1px 6px 1px 0;white-space:nowrap;">'
            f'{day:%a %d %b}</td><td width="100%" style="padding:1px 0;"><table role="presentation" '
            f'width="100%" cellpadding="0" cellspacing="0" border="0"><tr>{bar}<td style="font-size:0;'
            f'line-height:0;">&nbsp;</td></tr></table></td><td style="font-size:11px;text-align:right;'
            f'padding:1px 0 1px 6px;white-space:nowrap;">{usd(amount)}{off_scale}</td></tr>')
    legend = (f'<p style="font-size:11px;color:#4b5563;margin:4px 0 0 0;">Bars in '
              f'<span style="color:{BAR_OVER};font-weight:600;">red</span> are above the daily budget pace of '
              f'{usd(pace)} (monthly budget / days in the month).'
              + (f' Full width = {usd(scale)}; days above it are marked off scale.'
                 if any(amount > scale for _, amount in report.chart) else "") + '</p>')
    return (f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
            f'style="max-width:640px;">{"".join(rows)}</table>{legend}')


def _summary_rows(report: Report) -> list[tuple[str, str]]:
    b = report.budget
    source = FORECAST_SOURCES.get(b.forecast.source, b.forecast.source)
    forecast = f"{usd(b.forecast.month_end_usd)} = {pct(b.forecast_share)} of budget ({source})"
    return [
        ("Yesterday", f"{usd(report.yesterday)} ({pct(report.change_vs_average, signed=True)} vs the 7-day "
                      f"average of {usd(report.seven_day_average)})"),
        ("Month to date", f"{usd(b.month_to_date)} of {usd(b.budget)} = {pct(b.share)}"),
        ("Forecast, month end", forecast),
    ]


def _service_rows(report: Report, anomaly: str) -> list[list[str]]:
    return [[s.name, usd(s.yesterday), usd(s.previous), _service_change(s), anomaly if s.anomaly else ""]
            for s in report.services] + [["All other services", usd(report.other_services), "", "", ""]]


def _tenant_rows(report: Report) -> list[list[str]]:
    """The costliest tenants, then one row summing the rest (the mail stays short at 1,000 tenants)."""
    shown, rest = report.tenants[:TENANT_ROWS], report.tenants[TENANT_ROWS:]
    rows = [[t.tenant_id, t.tier, t.state, usd(t.direct), usd(t.shared), usd(t.cost), usd(t.revenue), pct(t.margin)]
            for t in shown]
    if rest:
        def total(attr: str) -> str:
            return usd(sum((getattr(t, attr) for t in rest), Decimal(0)))

        rows.append([f"{len(rest)} more tenants", "", "", total("direct"), total("shared"), total("cost"),
                     total("revenue"), ""])
    return rows


def _tier_rows(report: Report) -> list[list[str]]:
    """One row per tier, then the whole platform (its cost includes what no tenant carries)."""
    revenue = sum((t.revenue for t in report.tiers), Decimal(0))
    cost = sum((t.cost for t in report.tiers), Decimal(0)) + report.unallocated
    return [[t.display_name, str(t.tenants), usd(t.revenue), usd(t.cost), pct(t.margin), t.status]
            for t in report.tiers] + [["All tiers", str(sum(t.tenants for t in report.tiers)), usd(revenue),
                                       usd(cost), pct(gross_margin(revenue, cost)), ""]]


def _event_rows(report: Report) -> list[list[str]]:
    return [[f"{e.at:%Y-%m-%d %H:%M} UTC", e.tenant_id or "-", e.action, e.actor or "-"] for e in report.events]


def _footer(report: Report) -> list[str]:
    return [*report.notes,
            f"Cost Explorer requests: {report.ce_requests} of at most {report.ce_request_limit} "
            f"(${report.ce_requests * Decimal('0.01'):.2f}). Unblended cost in USD, credits and refunds excluded. "
            f"Generated {report.generated_at:%Y-%m-%d %H:%M} UTC."]


def _events_message(report: Report) -> str | None:
    """Why there is no event table: the database was unreachable, or nothing happened."""
    if report.platform_unavailable:
        return f"Breaker events unknown: {report.platform_unavailable}."
    if not report.events:
        return f"No breaker transitions or suspensions since {report.events_since:%Y-%m-%d %H:%M} UTC."
    return None


TENANT_HEADERS = ["Tenant", "Tier", "State", "Direct", "Shared", "Cost", "Revenue", "Margin"]
TIER_HEADERS = ["Tier", "Tenants", "Revenue", "Cost", "Margin", "vs target"]
SERVICE_HEADERS = ["Service", "Yesterday", "Day before", "Change", "Anomaly"]
EVENT_HEADERS = ["At", "Tenant", "Event", "Actor"]


def render_html(report: Report) -> str:
    b = report.budget
    margin, break_even = _headline(report)
    parts = [f'<h1 style="font-size:20px;margin:0 0 4px 0;">AWS cost report: {escape(report.environment)}, '
             f'{report.report_date:%A %d %B %Y}</h1>',
             f'<p style="margin:0 0 4px 0;font-size:15px;"><b>{escape(margin)}</b> '
             f'{_badge(report.economics.status)}</p>',
             f'<p style="margin:0 0 8px 0;">{escape(break_even)}</p>',
             f'<p style="margin:0 0 12px 0;">Budget level: {_badge(b.level)} &nbsp; Forecast level: '
             f'{_badge(b.forecast_level)}</p>']
    if report.estimated:
        parts.append(f'<p style="margin:0 0 12px 0;color:#b26a00;">{ESTIMATE_NOTE}</p>')
    parts.append(_table(None, [[Markup(f"<b>{escape(k)}</b>"), v] for k, v in _summary_rows(report)],
                        numeric_from=2))
    parts.append(f'<h2 style="{SECTION}">Top services yesterday</h2>')
    parts.append(_table(SERVICE_HEADERS, _service_rows(report, Markup('<b style="color:#c62828;">ANOMALY</b>'))))
    parts.append(f'<h2 style="{SECTION}">Daily cost, last 30 days</h2>')
    parts.append(_chart_html(report))
    low, high = report.margin_target
    parts.append(f'<h2 style="{SECTION}">Margin per tier (month to date, target {pct(low)} to {pct(high)})</h2>')
    parts.append(_table(TIER_HEADERS, _tier_rows(report)))
    parts.append(f'<h2 style="{SECTION}">Cost per tenant (month to date)</h2>')
    if report.tenants:
        parts.append(_table(TENANT_HEADERS, _tenant_rows(report), numeric_from=3))
    if report.platform_unavailable:
        parts.append(f'<p style="color:#c62828;">Tenant data unavailable: {escape(report.platform_unavailable)}. '
                     f'Shown: cost tagged per tenant only.</p>')
    if report.unallocated:
        parts.append(f"<p>Shared cost not carried by any tenant: {usd(report.unallocated)}.</p>")
    parts.append(f'<h2 style="{SECTION}">Breaker events, last 24 hours</h2>')
    message = _events_message(report)
    parts.append(f"<p>{escape(message)}</p>" if message else _table(EVENT_HEADERS, _event_rows(report),
                                                                    numeric_from=4))
    parts.append('<p style="font-size:11px;color:#6b7280;margin-top:24px;">'
                 + "<br>".join(escape(line) for line in _footer(report)) + "</p>")
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" '
            'content="width=device-width"><title>' + escape(subject(report)) + '</title></head>'
            '<body style="margin:0;padding:16px;font-family:Arial,Helvetica,sans-serif;color:#111827;'
            'background:#ffffff;">' + "".join(parts) + "</body></html>")


def _text_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]

    def fmt(row: list[str]) -> str:
        cells = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        return "  ".join(cells).rstrip()

    return [fmt(headers), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def _text_chart(report: Report, width: int = 40) -> list[str]:
    pace = _daily_pace(report)
    scale = _chart_scale(report)
    return [f"{day:%a %d %b}  {'#' * min(width, int(amount / scale * width)):<{width}}  {usd(amount):>10}"
            f"{'  over pace' if amount > pace else ''}{'  off scale' if amount > scale else ''}"
            for day, amount in report.chart]


def render_text(report: Report) -> str:
    """The plain-text part: same content as the HTML, for clients and filters that prefer it."""
    b = report.budget
    margin, break_even = _headline(report)
    lines = [f"AWS cost report: {report.environment}, {report.report_date:%A %d %B %Y}",
             f"{margin} ({report.economics.status.upper()})", break_even,
             f"Budget level: {b.level.upper()}   Forecast level: {b.forecast_level.upper()}", ""]
    if report.estimated:
        lines += [ESTIMATE_NOTE, ""]
    lines += [f"{k + ':':<21}{v}" for k, v in _summary_rows(report)]
    lines += ["", "TOP SERVICES YESTERDAY"]
    lines += _text_table(SERVICE_HEADERS, _service_rows(report, "ANOMALY"))
    lines += ["", f"DAILY COST, LAST 30 DAYS (daily budget pace {usd(_daily_pace(report))})", *_text_chart(report)]
    low, high = report.margin_target
    lines += ["", f"MARGIN PER TIER (month to date, target {pct(low)} to {pct(high)})"]
    lines += _text_table(TIER_HEADERS, _tier_rows(report))
    lines += ["", "COST PER TENANT (month to date)"]
    if report.tenants:
        lines += _text_table(TENANT_HEADERS, _tenant_rows(report))
    if report.platform_unavailable:
        lines.append(f"Tenant data unavailable: {report.platform_unavailable}. Shown: cost tagged per tenant only.")
    if report.unallocated:
        lines.append(f"Shared cost not carried by any tenant: {usd(report.unallocated)}.")
    lines += ["", "BREAKER EVENTS, LAST 24 HOURS"]
    message = _events_message(report)
    lines += [message] if message else _text_table(EVENT_HEADERS, _event_rows(report))
    lines += ["", *_footer(report)]
    return "\n".join(lines) + "\n"
