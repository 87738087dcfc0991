"""The platform budget breaker on real PostgreSQL, AWS through moto."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from tenant_provisioner.runtime import compose
from tenant_provisioner.limits.budget import (Actuators, BudgetLevel, NonProdTargets, SignupBlocked, Spend,
                                              enforce_budget, read_spend, signup_block_reason)
from tenant_provisioner.tenants.provisioning import CreateRequest
from tenant_provisioner.tiers import load_tiers

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later

NOV = date(2026, 11, 1)
cents = st.integers(min_value=0, max_value=10**9).map(lambda c: Decimal(c) / 100)


@given(budget=cents.filter(lambda b: b > 0), actual=cents)
def test_levels_at_exact_boundaries(budget, actual):
    level = Spend(budget, actual, None).level()
    expected = (BudgetLevel.EMERGENCY if actual >= 2 * budget else BudgetLevel.HARD_LIMIT if actual >= budget
                else BudgetLevel.WARNING if actual >= Decimal("0.9") * budget else BudgetLevel.OK)
    assert level is expected


def test_forecast_over_budget_warns_early():
    assert Spend(Decimal(1000), Decimal(100), Decimal(1000)).level() is BudgetLevel.WARNING
    assert Spend(Decimal(1000), Decimal(100), Decimal("999.99")).level() is BudgetLevel.OK


@pytest.fixture()
def aws(ops_topic):
    rds = boto3.client("rds", region_name="us-east-1")
    rds.create_db_instance(DBInstanceIdentifier="dev-db", DBInstanceClass="db.t4g.micro", Engine="postgres",
                           MasterUsername="postgres", MasterUserPassword="not-a-real-one-1")
    act = Actuators(sns=ops_topic.sns, ops_topic_arn=ops_topic.arn, rds=rds,
                    nonprod=NonProdTargets(db_instances=["dev-db"]))
    return act, lambda: len(ops_topic.messages()), rds


def test_each_level_acts_once_a_month(db, aws):
    act, inbox, rds = aws
    with db.connection() as conn:
        conn.execute("DELETE FROM control.platform_budget_levels")
        first = enforce_budget(conn, Spend(Decimal(1000), Decimal(950), None), NOV, act)
        assert [a["level"] for a in first.applied] == ["warning"] and inbox() == 1
        assert enforce_budget(conn, Spend(Decimal(1000), Decimal(960), None), NOV, act).applied == []
        # a jump straight to 200 %: the hard limit's actions run too, in order, once
        jump = enforce_budget(conn, Spend(Decimal(1000), Decimal(2000), None), NOV, act)
        assert [a["level"] for a in jump.applied] == ["hard_limit", "emergency"]
        assert enforce_budget(conn, Spend(Decimal(1000), Decimal(2500), None), NOV, act).applied == []
        assert inbox() == 2
        status = rds.describe_db_instances(DBInstanceIdentifier="dev-db")["DBInstances"][0]["DBInstanceStatus"]
        assert status == "stopped"
        actions = [r[0] for r in conn.execute(
            "SELECT action FROM control.audit_log WHERE action LIKE 'budget.%' ORDER BY id")]
        assert actions == ["budget.warning", "budget.hard_limit", "budget.emergency"]
        assert signup_block_reason(conn, load_tiers().get("starter"), NOV) is not None
        assert signup_block_reason(conn, load_tiers().get("starter"), date(2026, 12, 1)) is None
        conn.execute("DELETE FROM control.platform_budget_levels")


def test_signups_refused_at_200_percent_and_free_tiers_at_100(db, aws, tenant_ids):
    act, _inbox, _rds = aws
    starter = load_tiers().get("starter")
    free = dataclasses.replace(starter, name="trial", price_usd_per_month=0)
    with db.connection() as conn:
        period = conn.execute("SELECT date_trunc('month', now() AT TIME ZONE 'utc')::date").fetchone()[0]
        conn.execute("DELETE FROM control.platform_budget_levels")
        enforce_budget(conn, Spend(Decimal(100), Decimal(100), None), period, act)
        assert signup_block_reason(conn, free, period) and signup_block_reason(conn, starter, period) is None
        enforce_budget(conn, Spend(Decimal(100), Decimal(200), None), period, act)
        tenant_id = tenant_ids("blocked")
        with pytest.raises(SignupBlocked, match="200 %"):
            lifecycle.create(conn, CreateRequest.parse({"tenant_id": tenant_id, "tier": "starter",
                                                        "admin_email": "a@acme.test"}), actor="test:limits")
        assert conn.execute("SELECT count(*) FROM control.tenants WHERE tenant_id = %s AND state = 'active'",
                            (tenant_id,)).fetchone()[0] == 0
        conn.execute("DELETE FROM control.platform_budget_levels")


def test_read_spend_from_aws_budgets():
    with mock_aws():
        budgets = boto3.client("budgets", region_name="us-east-1")
        budgets.create_budget(AccountId="123456789012", Budget={
            "BudgetName": "platform", "BudgetLimit": {"Amount": "1800", "Unit": "USD"}, "TimeUnit": "MONTHLY",
            "BudgetType": "COST"})
        spend = read_spend(budgets, account_id="123456789012", budget_name="platform")
        assert spend.budget_usd == Decimal(1800) and spend.level() is BudgetLevel.OK
