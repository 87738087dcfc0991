"""The Lambda end to end on moto (Cost Explorer, SES, DynamoDB) and a real PostgreSQL control schema."""

from __future__ import annotations

import email
import json
import socket
import uuid
from datetime import datetime, timedelta, timezone
from email import policy

import boto3
from botocore.awsrequest import AWSResponse
import pytest
from psycopg.conninfo import conninfo_to_dict

from tenant_provisioner.costs.delivery import ReportDeliveryError
from lambdas.cost_report.handler import handler
from tenant_provisioner.costs.platform_data import read_platform
from tenant_provisioner.costs.service import platform_loader, resolve_report_date
from tenant_provisioner.costs.settings import ReportSettings
from tenant_provisioner import control
from tenant_provisioner.db import admin_connect
from tenant_provisioner.errors import ConfigError, InvalidInput
from tests.costs.conftest import RECIPIENTS, REPORT_ENV, SENDER, inject_cost_explorer, sent_messages, verify_sender
from tests.support.lambda_context import LambdaContext


@pytest.fixture(scope="module")
def control_db(module_database_url, sample_data):
    """The control schema (every control migration, incl. the limits engineer's tenant_usage) with the
    sample's tenants, usage and audit events."""
    with admin_connect(module_database_url) as conn:
        control.init(conn, f"prov_{uuid.uuid4().hex[:8]}")
        platform = sample_data["platform"]
        for tenant in platform["tenants"]:
            conn.execute("INSERT INTO control.tenants (tenant_id, schema_name, role_name, tier, state, admin_email)"
                         " VALUES (%s, %s, %s, %s, %s, %s)",
                         (tenant["tenant_id"], f"t_{uuid.uuid4().hex[:16]}", f"r_{uuid.uuid4().hex[:12]}",
                          tenant["tier"], tenant["state"], f"admin@{tenant['tenant_id']}.example"))
        conn.execute("INSERT INTO control.tenants (tenant_id, schema_name, role_name, tier, state, admin_email)"
                     " VALUES ('gone-away', %s, 'r_gone', 'pro', 'offboarded', 'a@b.example')",
                     (f"t_{uuid.uuid4().hex[:16]}",))
        for tenant_id, admitted in platform["api_requests"].items():
            conn.execute("INSERT INTO control.tenant_usage (tenant_id, period_start, quantity, admitted, attempted)"
                         " VALUES (%s, '2026-11-01', 'api_requests', %s, %s)", (tenant_id, admitted, admitted))
        conn.execute("INSERT INTO control.tenant_usage (tenant_id, period_start, quantity, admitted, attempted)"
                     " VALUES ('acme-corp', '2026-10-01', 'api_requests', 999999999, 999999999)")
        events = [("2 hours", "fjord-apps", "breaker.hard_limit"), ("3 hours", "dunmore-labs", "tenant.suspended"),
                  ("30 hours", "glasswing", "breaker.warning"), ("1 hour", "acme-corp", "tenant.created")]
        for age, tenant_id, action in events:
            conn.execute("INSERT INTO control.audit_log (at, tenant_id, action, actor, detail) "
                         "VALUES (now() - %s::interval, %s, %s, 'enforcer', '{}')", (age, tenant_id, action))
    return module_database_url


@pytest.fixture()
def ce_calls(sample_data):
    """Every Cost Explorer API call the code makes (botocore's own view, not our counter).

    moto has no GetCostForecast: it is answered here, at the boto layer, from the sample.
    """
    boto3.setup_default_session()
    calls: list[str] = []
    events = boto3.DEFAULT_SESSION.events
    events.register("before-call.ce", lambda model, **_: calls.append(model.name))

    def forecast(model, **_):   # the more specific handler runs first and ends the call
        calls.append(model.name)
        return AWSResponse("https://ce.us-east-1.amazonaws.com", 200, {}, None), sample_data["forecast"]

    events.register("before-call.ce.GetCostForecast", forecast)
    yield calls
    boto3.DEFAULT_SESSION = None


def _parse(message):
    parsed = email.message_from_string(message.raw_data, policy=policy.default)
    return parsed, parsed.get_body(("plain",)).get_content(), parsed.get_body(("html",)).get_content()


def _run(sample, date="2026-11-22"):
    inject_cost_explorer(sample["daily_by_service"] + sample["month_by_tenant"])
    return handler({"date": date}, LambdaContext())


def test_report_is_sent_with_both_parts(aws, control_db, sample, ce_calls, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", control_db)
    verify_sender()
    result = _run(sample)
    [message] = sent_messages()
    assert message.source == SENDER and set(message.destinations) == set(RECIPIENTS)  # moto lists each twice
    parsed, text, html = _parse(message)
    assert parsed["Subject"].startswith("[prod] AWS cost 2026-11-22: $62.98; month to date $1,058.39")
    assert "(OK)" in parsed["Subject"]
    for body in (text, html):
        assert "$62.98" in body and "$1,058.39" in body and "58.8 %" in body     # totals vs the $1,800 budget
        assert "Amazon Elastic Compute Cloud - Compute" in body and "ANOMALY" in body
        assert "acme-corp" in body and "blue-harbor" in body and "gone-away" not in body
        assert "breaker.hard_limit" in body and "tenant.suspended" in body
        assert "breaker.warning" not in body and "tenant.created" not in body   # too old / not a breaker event
    assert "Budget level: OK" in text and "MARGIN PER TIER" in text
    assert result["budget_level"] == "ok" and result["anomalies"] == ["EC2 - Other"]
    assert result["tenant_data"] == "ok" and result["message_id"]
    # 2 pages by service + 1 by tenant (+ the forecast when the day is yesterday, else extrapolated)
    assert ce_calls.count("GetCostAndUsage") == 3 and len(ce_calls) <= 4
    assert result["cost_explorer_requests"] == len(ce_calls)
    [emf] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf["environment"] == "prod" and emf["CostExplorerRequests"] == [float(len(ce_calls))]
    assert emf["Runs"] == [1.0] and emf["ReportsDelivered"] == [1.0]


def test_a_retry_for_the_same_date_sends_nothing(aws, sample, ce_calls):
    verify_sender()
    first = _run(sample)
    calls_after_first = len(ce_calls)
    second = handler({"date": "2026-11-22"}, LambdaContext())
    assert second == first
    assert len(sent_messages()) == 1
    assert len(ce_calls) == calls_after_first       # the stored result is returned: no new paid queries


def test_a_failed_send_raises_and_its_retry_sends_once(aws, sample, ce_calls):
    with pytest.raises(ReportDeliveryError, match="SES did not send the cost report for 2026-11-22"):
        _run(sample)                               # sender identity not verified: SES rejects
    assert sent_messages() == []
    verify_sender()
    handler({"date": "2026-11-22"}, LambdaContext())
    handler({"date": "2026-11-22"}, LambdaContext())
    assert len(sent_messages()) == 1


def test_report_goes_out_when_the_database_is_down(aws, sample, ce_calls, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{port}/nowhere")
    verify_sender()
    result = _run(sample)
    assert result["tenant_data"].startswith("database unreachable (OperationalError")
    _, text, html = _parse(sent_messages()[0])
    assert "Breaker events unknown: database unreachable" in text and "Tenant data unavailable" in html


def test_bad_on_demand_date_is_answered_not_retried(aws):
    verify_sender()
    assert handler({"date": "22.11.2026"}, LambdaContext())["error"] == "invalid_input"
    assert handler({"date": "2999-01-01"}, LambdaContext())["field"] == "date"
    assert sent_messages() == []


def test_missing_idempotency_table_is_a_config_error(aws, monkeypatch):
    monkeypatch.delenv("IDEMPOTENCY_TABLE")
    with pytest.raises(ConfigError, match="IDEMPOTENCY_TABLE"):
        handler({}, LambdaContext())


@pytest.mark.parametrize("scheduled, expected", [
    ("2026-11-23T06:00:00Z", "2026-11-22"),          # 07:00 in Berlin
    ("2026-11-22T23:30:00Z", "2026-11-22"),          # already the 23rd in Berlin
    ("2026-03-01T06:00:00+00:00", "2026-02-28"),
])
def test_scheduled_runs_report_on_the_local_yesterday(scheduled, expected):
    settings = ReportSettings.from_env(REPORT_ENV)
    now = datetime(2026, 11, 24, tzinfo=timezone.utc)   # a retry a day later still reports the same day
    assert resolve_report_date({"scheduled_time": scheduled}, settings, now).isoformat() == expected


def test_scheduled_time_without_zone_is_refused():
    with pytest.raises(InvalidInput, match="time zone"):
        resolve_report_date({"scheduled_time": "2026-11-23T06:00:00"}, ReportSettings.from_env(REPORT_ENV),
                            datetime(2026, 11, 24, tzinfo=timezone.utc))


@pytest.mark.parametrize("key, value, message", [
    ("REPORT_RECIPIENTS", "", "REPORT_RECIPIENTS"), ("REPORT_RECIPIENTS", "ceo@example.com,nope", "REPORT_RECIPIENTS"),
    ("REPORT_SENDER", "reports", "REPORT_SENDER"), ("MONTHLY_BUDGET_USD", "-5", "positive"),
    ("MONTHLY_BUDGET_USD", "lots", "must be a number"), ("REPORT_TIMEZONE", "Mars/Olympus", "time zone"),
    ("MONTHLY_BUDGET_USD", "NaN", "positive"),
])
def test_bad_settings_name_the_variable(key, value, message):
    with pytest.raises(ConfigError, match=message):
        ReportSettings.from_env({**REPORT_ENV, key: value})



def test_a_database_without_the_usage_table_splits_evenly(database_url):
    """An older control schema (before the limits migration) still gives tenants and events."""
    with admin_connect(database_url) as conn:
        control.init(conn, f"prov_{uuid.uuid4().hex[:8]}")
        conn.execute("DROP TABLE control.tenant_usage CASCADE")
        conn.execute("INSERT INTO control.tenants (tenant_id, schema_name, role_name, tier, state, admin_email) "
                     "VALUES ('acme-corp', %s, 'r_acme', 'pro', 'active', 'a@acme.example')",
                     (f"t_{uuid.uuid4().hex[:16]}",))
    now = datetime.now(timezone.utc)
    snapshot = read_platform(database_url, period_start=now.date().replace(day=1), since=now - timedelta(days=1),
                             until=now)
    assert snapshot.unavailable is None and [t.tenant_id for t in snapshot.tenants] == ["acme-corp"]
    assert snapshot.api_requests == {} and "tenant_usage does not exist" in snapshot.notes[0]


def test_database_connection_comes_from_the_rds_secret(aws, monkeypatch):
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="/saas/prod/platform/rds-master", SecretString=json.dumps(
        {"engine": "postgres", "host": "db.internal", "port": 5432, "username": "master", "password": "s3cr3t"}))["ARN"]
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("DATABASE_NAME", "app")
    conninfo = conninfo_to_dict(ReportSettings.from_env().database.conninfo(application_name="cost-report"))
    assert conninfo == {"host": "db.internal", "port": "5432", "user": "master", "password": "s3cr3t",
                        "dbname": "app", "sslmode": "require", "application_name": "cost-report"}


@pytest.mark.parametrize("secret", [None, "not json", '{"host": "db.internal"}'])
def test_an_unreadable_secret_is_said_not_raised(aws, monkeypatch, secret):
    secrets = boto3.client("secretsmanager")
    arn = (secrets.create_secret(Name=f"s-{uuid.uuid4().hex[:6]}", SecretString=secret)["ARN"] if secret
           else "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    now = datetime.now(timezone.utc)
    snapshot = platform_loader(ReportSettings.from_env())(now.date().replace(day=1), now - timedelta(days=1), now)
    assert snapshot.unavailable.startswith("database secret unreadable (")
    assert "s3cr3t" not in snapshot.unavailable
