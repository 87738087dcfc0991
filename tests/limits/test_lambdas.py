"""The two Lambda handlers, invoked as Lambda would, on real PostgreSQL + Redis and moto."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from lambdas.budget_breaker import handler as budget_handler
from lambdas.enforce_limits import handler as enforce_handler
from tenant_provisioner.runtime import compose
from tenant_provisioner.errors import InvalidInput
from tenant_provisioner.limits import RateLimiter, TenantKeys
from tenant_provisioner.tenants.provisioning import CreateRequest
from tests.support.lambda_context import LambdaContext

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later


@pytest.fixture()
def lambda_env(monkeypatch, tenant_db, redis_server_url):
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        ses = boto3.client("sesv2", region_name="us-east-1")
        ses.create_email_identity(EmailIdentity="limits@example.com")
        topic = sns.create_topic(Name="ops")["TopicArn"]
        for name, value in {"DATABASE_URL": tenant_db.url, "TENANT_PROVISIONER_ROLE": tenant_db.provisioner_role,
                            "REDIS_URL": redis_server_url, "LIMITS_SENDER_EMAIL": "limits@example.com",
                            "OPS_TOPIC_ARN": topic, "BUDGET_ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
                            "BUDGET_NAME": "platform", "POWERTOOLS_METRICS_NAMESPACE": "SaaS/Limits"}.items():
            monkeypatch.setenv(name, value)
        yield


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # the refused bad event adds none
def test_enforce_handler_runs_a_cycle_for_the_asked_tenants(lambda_env, db, tenant_ids, redis_client, tiny_tiers):
    tenant_id = tenant_ids("lambda")
    with db.connection() as conn:
        lifecycle.create(conn, CreateRequest.parse({"tenant_id": tenant_id, "tier": "starter",
                                                    "admin_email": "a@acme.test"}), actor="test:limits")
    try:
        RateLimiter(redis_client).acquire(tenant_id, "starter", cost=20)
        summary = enforce_handler.handler({"tenant_ids": [tenant_id]}, LambdaContext())
        assert summary["tenants"] == 1 and summary["errors"] == []
        assert redis_client.hget(TenantKeys.of(tenant_id).state, "state") == b"ok"
        with pytest.raises(InvalidInput):
            enforce_handler.handler({"tenant_ids": "everyone"}, LambdaContext())
    finally:
        redis_client.delete(*TenantKeys.of(tenant_id).as_list())


def test_budget_handler_reads_the_budget_and_records_the_level(lambda_env, db):
    with db.connection() as conn:
        conn.execute("DELETE FROM control.platform_budget_levels")
    boto3.client("budgets", region_name="us-east-1").create_budget(AccountId=DEFAULT_ACCOUNT_ID, Budget={
        "BudgetName": "platform", "BudgetLimit": {"Amount": "1800", "Unit": "USD"}, "TimeUnit": "MONTHLY",
        "BudgetType": "COST", "CalculatedSpend": {"ActualSpend": {"Amount": "1710", "Unit": "USD"}}})
    event = {"Records": [{"Sns": {"Subject": "AWS Budgets: platform has exceeded your alert threshold",
                                  "Message": "AWS Budget Notification"}}]}
    outcome = budget_handler.handler(event, LambdaContext())
    assert outcome["level"] == "warning"  # 1710 of 1800 = 95 %
    assert outcome["applied"] == [{"level": "warning", "actions": ["notify_ops: sent"]}]
    assert budget_handler.handler(event, LambdaContext())["applied"] == []  # SNS redelivers: nothing twice
    with db.connection() as conn:
        conn.execute("DELETE FROM control.platform_budget_levels")
