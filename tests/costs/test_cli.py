"""`python -m lambdas.cost_report`: local dry runs from a fixture, bad input, and the committed sample."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
from typer.testing import CliRunner

from tenant_provisioner.cli.cost_report import app
from tests.costs.conftest import SAMPLE

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _generated_stripped(html: str) -> str:
    return re.sub(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "Generated -", html)


def test_dry_run_from_the_sample_fixture(tmp_path, monkeypatch):
    for key in ("REPORT_RECIPIENTS", "REPORT_SENDER", "MONTHLY_BUDGET_USD", "DATABASE_URL", "TIERS_FILE"):
        monkeypatch.delenv(key, raising=False)
    out, text = tmp_path / "r.html", tmp_path / "r.txt"
    result = runner.invoke(app, ["--fixture", str(SAMPLE), "--dry-run", "--out", str(out), "--text-out", str(text)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["report_date"] == "2026-11-22" and summary["message_id"] is None
    assert summary["cost_explorer_requests"] == 4 and summary["budget_level"] == "ok"
    assert "EC2 - Other" in out.read_text() and "BREAKER EVENTS" in text.read_text()
    committed = (REPO / "docs" / "sample-cost-report.html").read_text()
    assert _generated_stripped(out.read_text()) == _generated_stripped(committed), (
        "docs/sample-cost-report.html is stale: python -m lambdas.cost_report --fixture "
        "lambdas/cost_report/fixtures/sample.json --dry-run --out docs/sample-cost-report.html")


def test_budget_and_environment_can_be_overridden(tmp_path, monkeypatch):
    monkeypatch.delenv("MONTHLY_BUDGET_USD", raising=False)
    result = runner.invoke(app, ["--fixture", str(SAMPLE), "--dry-run", "--out", str(tmp_path / "r.html"),
                                 "--budget-usd", "1000", "--environment", "staging"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["budget_level"] == "hard limit"        # $1,058 of $1,000
    assert "[staging] AWS cost" in (tmp_path / "r.html").read_text()


def test_bad_input_exits_2_with_the_reason(tmp_path):
    bad_date = runner.invoke(app, ["--fixture", str(SAMPLE), "--dry-run", "--date", "yesterday",
                                   "--out", str(tmp_path / "r.html")])
    assert bad_date.exit_code == 2 and "expected YYYY-MM-DD" in bad_date.output
    missing = runner.invoke(app, ["--fixture", str(tmp_path / "nope.json"), "--dry-run"])
    assert missing.exit_code == 2 and "file not found" in missing.output
    assert not (tmp_path / "r.html").exists()


def test_the_readme_cost_explorer_command_needs_only_credentials(tmp_path, monkeypatch):
    """README: `python -m lambdas.cost_report --date 2026-11-22 --dry-run --out report.html`. Without
    MONTHLY_BUDGET_USD the budget is the configured one; offline it stops at the missing credentials."""
    for key in ("MONTHLY_BUDGET_USD", "ENVIRONMENT_NAME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN", "AWS_PROFILE", "DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    # A process's first boto3.client() caches its credentials in boto3's default session: an earlier
    # test's client (tests/conftest.py sets fake keys) must not stand in for "this machine has none".
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    result = runner.invoke(app, ["--date", "2026-11-22", "--dry-run", "--out", str(tmp_path / "report.html")])
    assert "MONTHLY_BUDGET_USD" not in result.output  # failed on it before
    assert result.exit_code != 0 and "credentials" in result.output


def test_a_fixture_without_a_budget_uses_the_environments_configured_budget(tmp_path, monkeypatch, sample_data):
    monkeypatch.delenv("MONTHLY_BUDGET_USD", raising=False)
    monkeypatch.delenv("ENVIRONMENT_NAME", raising=False)
    fixture = tmp_path / "no-budget.json"
    fixture.write_text(json.dumps({k: v for k, v in sample_data.items() if k != "monthly_budget_usd"}))
    result = runner.invoke(app, ["--fixture", str(fixture), "--dry-run", "--out", str(tmp_path / "r.html"),
                                 "--environment", "dev"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["budget_level"] == "emergency"  # $1,058 of dev's configured $500
    unknown = runner.invoke(app, ["--fixture", str(fixture), "--dry-run", "--out", str(tmp_path / "r.html"),
                                  "--environment", "staging"])
    assert unknown.exit_code == 2 and "--budget-usd" in unknown.output
