"""Rendering for mail clients: no scripts, no external images, escaped text, a 30-bar chart."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from tenant_provisioner.costs.platform_data import PlatformSnapshot
from tenant_provisioner.costs.render import render_html, render_text, subject
from tenant_provisioner.costs.report import build_report
from tenant_provisioner.tiers import load_tiers
from tests.costs.conftest import fixture_source

DAY = date(2026, 11, 22)
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture()
def report(sample, settings):
    platform = sample["platform"]
    platform["tenants"].append({"tenant_id": "<script>alert(1)</script>", "tier": "starter", "state": "active"})
    return build_report(fixture_source(sample, DAY).fetch(DAY), PlatformSnapshot.from_mapping(platform),
                        load_tiers(), settings, generated_at=NOW, events_since=NOW - timedelta(hours=24),
                        ce_request_limit=4)


def test_html_is_mail_safe(report):
    html = render_html(report)
    parser = _Tags()
    parser.feed(html)
    names = {tag for tag, _ in parser.tags}
    assert not names & {"script", "img", "link", "style", "iframe", "object", "svg", "canvas"}
    assert not any(k.startswith("on") for _, attrs in parser.tags for k in attrs)
    assert "http://" not in html and "https://" not in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_chart_has_one_bar_row_per_day(report):
    html = render_html(report)
    bars = re.findall(r'<td width="(\d+)%" bgcolor="(#[0-9a-f]{6})"', html)
    assert len(bars) == 30
    widths = [int(w) for w, _ in bars]
    assert max(widths) == 100 and widths[-1] == 100                 # the spike day is the tallest
    assert bars[-1][1] == "#c62828"                                 # above the daily budget pace


def test_text_part_carries_the_same_content(report):
    text = render_text(report)
    for needle in ("Yesterday:", "Month to date:", "Forecast, month end:", "EC2 - Other", "ANOMALY",
                   "MARGIN PER TIER", "acme-corp", "breaker.suspension", "dunmore-labs",
                   "Cost Explorer requests: 4 of at most 4", "still marks this day's figures as estimated"):
        assert needle in text, needle
    assert len([line for line in text.splitlines() if re.match(r"^\w{3} \d\d \w{3}  ", line)]) == 30
    [platform] = [line for line in text.splitlines() if line.startswith("All tiers")]
    assert platform.split()[2:5] == ["9", "$223.13", "$1,058.39"]   # every tenant, every dollar of the month


def test_subject_names_the_level(report):
    assert subject(report).startswith("[prod] AWS cost 2026-11-22: $")
    assert "(OK)" in subject(report)


def test_unreachable_database_is_said_in_both_parts(sample, settings):
    costs = fixture_source(sample, DAY).fetch(DAY)
    report = build_report(costs, PlatformSnapshot(unavailable="database unreachable (OperationalError: timeout)"),
                          load_tiers(), settings, generated_at=NOW, events_since=NOW - timedelta(hours=24),
                          ce_request_limit=4)
    for body in (render_html(report), render_text(report)):
        assert "Breaker events unknown: database unreachable" in body
        assert "Tenant data unavailable" in body


def test_a_long_tenant_list_is_cut_to_the_costliest(sample, settings):
    platform = sample["platform"]
    platform["tenants"] = [{"tenant_id": f"tenant-{n:03d}", "tier": "starter", "state": "active"} for n in range(40)]
    platform["api_requests"] = {f"tenant-{n:03d}": 1000 * (n + 1) for n in range(40)}
    result = sample["month_by_tenant"][0]["ResultsByTime"][0]
    result["Groups"] = [g for g in result["Groups"] if g["Keys"] == ["tenant$"]]   # all cost shared
    report = build_report(fixture_source(sample, DAY).fetch(DAY), PlatformSnapshot.from_mapping(platform),
                          load_tiers(), settings, generated_at=NOW, events_since=NOW - timedelta(hours=24),
                          ce_request_limit=4)
    text = render_text(report)
    assert "tenant-039" in text and "tenant-015" in text and "tenant-014" not in text   # 25 costliest
    assert "15 more tenants" in text and "15 more tenants" in render_html(report)
    assert len(render_html(report).encode()) < 102 * 1024   # Gmail clips larger messages


def test_headline_puts_unit_economics_first(report):
    """The CEO's first line is the margin against its target and the break-even tenant count."""
    html, text = render_html(report), render_text(report)
    body = html[html.index("<body"):]
    margin = body.index("Margin month to date:")
    assert margin < body.index("Budget level:") and "BELOW TARGET" in body[margin:body.index("Budget level:")]
    assert "vs target 85.0 % to 95.0 %" in body and "Breaks even at " in body and "paying tenants" in body
    assert text.splitlines()[1].startswith("Margin month to date:") and "(BELOW TARGET)" in text.splitlines()[1]
    assert text.splitlines()[2].startswith("Breaks even at ")
    assert "margin " in subject(report) and "vs target 85.0 % to 95.0 %" in subject(report)


def test_forecast_is_named_for_people(report):
    for part in (render_html(report), render_text(report)):
        assert "(Cost Explorer forecast)" in part and "cost-explorer" not in part


def test_one_spiking_day_leaves_the_other_bars_readable(report):
    spike = tuple((day, amount * 20 if day == DAY - timedelta(days=10) else amount) for day, amount in report.chart)
    spiky = replace(report, chart=spike)
    bars = [int(w) for w, _ in re.findall(r'<td width="(\d+)%" bgcolor="(#[0-9a-f]{6})"', render_html(spiky))]
    ordinary = [w for (day, _), w in zip(spike, bars) if day != DAY - timedelta(days=10)]
    assert min(ordinary) >= 20                    # were 4-6 % wide (slivers) scaled to the spike
    assert bars[-11] == 100 and render_html(spiky).count("off scale") == 2  # the bar's mark + the legend
    assert sum("off scale" in line for line in render_text(spiky).splitlines()) == 1
