"""Fixtures of the cost-report tests: the sample Cost Explorer data, settings, moto AWS."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
import requests
from moto import mock_aws

from lambdas.cost_report.handler import function
from tenant_provisioner.costs.cost_explorer import CostExplorerSource, FixtureClient
from tenant_provisioner.costs.settings import ReportSettings

SAMPLE = Path(__file__).resolve().parents[2] / "lambdas" / "cost_report" / "fixtures" / "sample.json"
SENDER = "reports@example.com"
RECIPIENTS = ("ceo@example.com", "cfo@example.com")
REPORT_ENV = {"ENVIRONMENT_NAME": "prod", "REPORT_RECIPIENTS": ",".join(RECIPIENTS), "REPORT_SENDER": SENDER,
              "MONTHLY_BUDGET_USD": "1800", "REPORT_TIMEZONE": "Europe/Berlin", "ANOMALY_MIN_SHARE": "0.25",
              "ANOMALY_MIN_USD": "5", "COST_TAG_KEY": "tenant"}
MOTO_CE_RESULTS = "http://motoapi.amazonaws.com/moto-api/static/ce/cost-and-usage-results"


@pytest.fixture(scope="session")
def sample_data() -> dict:
    return json.loads(SAMPLE.read_text())


@pytest.fixture()
def sample(sample_data) -> dict:
    """A private copy of the sample fixture (tests may edit it)."""
    return copy.deepcopy(sample_data)


@pytest.fixture()
def report_env(monkeypatch) -> dict[str, str]:
    """The environment CDK gives the function, minus what a test sets itself."""
    for key, value in REPORT_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("DATABASE_URL", "DATABASE_SECRET_ARN", "IDEMPOTENCY_TABLE", "TIERS_FILE"):
        monkeypatch.delenv(key, raising=False)
    return dict(REPORT_ENV)


@pytest.fixture()
def settings(report_env) -> ReportSettings:
    return ReportSettings.from_env()


def fixture_source(data: dict, report_date) -> CostExplorerSource:
    """A source over fixture data whose 'today' is the day after the report (forecast allowed)."""
    return CostExplorerSource(FixtureClient(data), today=lambda: report_date + timedelta(days=1))


@pytest.fixture()
def aws(report_env, monkeypatch):
    """moto for every AWS API, with the report's SES identity and idempotency table in place."""
    with mock_aws():
        table = f"cost-report-idempotency-{uuid.uuid4().hex[:8]}"
        boto3.client("dynamodb").create_table(
            TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        monkeypatch.setenv("IDEMPOTENCY_TABLE", table)
        function.forget()   # each test is a fresh Lambda container: settings and clients read again
        yield {"table": table}
        function.forget()


def verify_sender() -> None:
    boto3.client("sesv2").create_email_identity(EmailIdentity=SENDER)


def inject_cost_explorer(pages: list[dict]) -> None:
    """Queue GetCostAndUsage answers in moto, in the order the report asks for them."""
    response = requests.post(MOTO_CE_RESULTS, json={"results": pages}, timeout=5)
    response.raise_for_status()


def sent_messages() -> list:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends
    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)
