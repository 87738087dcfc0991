"""Local runs: ``python -m lambdas.cost_report --date 2026-11-22 --dry-run --out report.html``.

Costs come from Cost Explorer when AWS credentials exist, or from a JSON fixture (``--fixture``;
the sample is ``lambdas/cost_report/fixtures/sample.json``). Tenant data comes from the fixture's
``platform`` part, else from ``DATABASE_URL`` when set. Without ``--dry-run`` the report is sent
through SES like the scheduled run (not deduplicated: an operator's re-send is deliberate).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from tenant_provisioner.costs.cost_explorer import FixtureClient
from tenant_provisioner.costs.delivery import send_report
from tenant_provisioner.costs.platform_data import PlatformSnapshot
from tenant_provisioner.costs.render import render_html, render_text
from tenant_provisioner.costs.service import ReportRun, cost_source, parse_report_date, platform_loader, summary
from tenant_provisioner.costs.settings import ReportSettings
from tenant_provisioner.errors import ConfigError, PlatformError
from tenant_provisioner.runtime import env as envvars

DEFAULT_ENVIRONMENT = "prod"   # the CEO's report is about production unless told otherwise

app = typer.Typer(add_completion=False, help=__doc__)
err = Console(stderr=True)


def _configured_budget(environment: str) -> str:
    """The budget CDK gives the deployed function of `environment` (stacks/config.py, the one source)."""
    from stacks.config import ENVIRONMENTS, load_config  # plain dataclasses, no CDK import

    if environment not in ENVIRONMENTS:
        raise ConfigError(f"no configured budget for environment {environment!r} (known: "
                          f"{', '.join(ENVIRONMENTS)}): pass --budget-usd or set MONTHLY_BUDGET_USD")
    return str(load_config(environment).limits.monthly_budget_usd)


def _settings(fixture: dict[str, Any], environment: Optional[str], budget: Optional[float],
              dry_run: bool) -> ReportSettings:
    """Environment settings, with fixture values, the environment's configured budget and harmless
    addresses (dry runs) filling gaps."""
    env = dict(envvars.environ(None))
    name = environment or env.get("ENVIRONMENT_NAME") or fixture.get("environment") or DEFAULT_ENVIRONMENT
    if budget is None and not env.get("MONTHLY_BUDGET_USD"):
        budget = fixture.get("monthly_budget_usd") or _configured_budget(name)
    defaults = {"ENVIRONMENT_NAME": name, "REPORT_TIMEZONE": fixture.get("timezone", "UTC")}
    if dry_run:
        defaults |= {"REPORT_RECIPIENTS": "dry-run@example.com", "REPORT_SENDER": "dry-run@example.com"}
    for key, value in defaults.items():
        env.setdefault(key, value)
    env["ENVIRONMENT_NAME"] = name
    if budget is not None:
        env["MONTHLY_BUDGET_USD"] = str(budget)
    return ReportSettings.from_env(env)


@app.command()
def main(
    report_date: Optional[str] = typer.Option(None, "--date", help="Day to report on (default: yesterday)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Render only; never send."),
    out: Path = typer.Option(Path("report.html"), "--out", help="Where to write the HTML."),
    text_out: Optional[Path] = typer.Option(None, "--text-out", help="Also write the plain-text part."),
    fixture: Optional[Path] = typer.Option(None, "--fixture", help="JSON fixture instead of Cost Explorer."),
    environment: Optional[str] = typer.Option(None, help="Environment (default: ENVIRONMENT_NAME, the fixture's, "
                                                          "else prod); its budget comes from stacks/config.py."),
    budget_usd: Optional[float] = typer.Option(None, help="Monthly budget (default: MONTHLY_BUDGET_USD, else the "
                                                          "environment's configured budget)."),
) -> None:
    """Render the daily cost report to a file (and send it unless --dry-run)."""
    try:
        client = FixtureClient.from_file(fixture) if fixture else None
        data = client.fixture if client else {}
        settings = _settings(data, environment, budget_usd, dry_run)
        today = datetime.now(timezone.utc).astimezone(settings.timezone).date()
        default_day = data.get("report_date") or (today - timedelta(days=1)).isoformat()
        day = parse_report_date(report_date or default_day, today if not client else date.max)
        if client:   # a fixture's day counts as yesterday, so its forecast response is used
            source = cost_source(settings, client, today=lambda: day + timedelta(days=1))
        else:
            source = cost_source(settings)
        platform = ((lambda *_: PlatformSnapshot.from_mapping(data["platform"])) if "platform" in data
                    else platform_loader(settings))
        report = ReportRun(settings, source, platform).build(day)
        out.write_text(render_html(report))
        if text_out:
            text_out.write_text(render_text(report))
        message_id = None if dry_run else send_report(report, settings)
    except PlatformError as exc:
        err.print(f"[red]error ({exc.code}):[/red] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
    typer.echo(json.dumps({**summary(report, message_id), "out": str(out)}, indent=2))

