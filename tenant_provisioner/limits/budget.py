"""The platform budget breaker: AWS Budgets spend -> level -> actions, each level once a month.

Levels on the monthly platform budget (same shape as the tenant breakers):

- ``warning``   actual >= 90 %, or forecast >= 100 %: notify ops;
- ``hard_limit`` actual >= 100 %: freeze non-essential spend - no new free/trial tenants
  (tiers priced 0) and the configured non-prod resources scaled to zero (RDS instances stopped,
  EKS node groups to 0);
- ``emergency`` actual >= 200 %: block every new signup and page ops.

The level is computed from ``budgets:DescribeBudget`` (not parsed from the notification text),
so any notification - or a manual invocation - converges on the right level. Each level reached
is inserted once per month into ``control.platform_budget_levels``; only the run whose insert
succeeds applies that level's actions, so a redelivered SNS message does nothing twice. Levels
only rise within a month; a new month starts from nothing.
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Sequence

import psycopg
from psycopg.types.json import Jsonb

from tenant_provisioner import audit
from tenant_provisioner.errors import PlatformError
from tenant_provisioner.tiers import Tier

log = logging.getLogger(__name__)


class SignupBlocked(PlatformError):
    """The platform budget breaker refuses new signups (or free ones) for the rest of the month."""

    code = "signups_blocked"
    exit_code = 2


class BudgetLevel(enum.IntEnum):
    OK = 0
    WARNING = 1
    HARD_LIMIT = 2
    EMERGENCY = 3

    @property
    def label(self) -> str:
        return self.name.lower()


ACTIONS: dict[BudgetLevel, tuple[str, ...]] = {
    BudgetLevel.WARNING: ("notify_ops",),
    BudgetLevel.HARD_LIMIT: ("notify_ops", "freeze_free_signups", "scale_nonprod_to_zero"),
    BudgetLevel.EMERGENCY: ("page_ops", "block_signups"),
}


@dataclass(frozen=True)
class Spend:
    budget_usd: Decimal
    actual_usd: Decimal
    forecast_usd: Decimal | None

    def level(self) -> BudgetLevel:
        """Exact decimal comparisons at 90 / 100 / 200 % (forecast 100 % warns)."""
        if self.budget_usd <= 0:
            return BudgetLevel.EMERGENCY if self.actual_usd > 0 else BudgetLevel.OK
        if self.actual_usd >= 2 * self.budget_usd:
            return BudgetLevel.EMERGENCY
        if self.actual_usd >= self.budget_usd:
            return BudgetLevel.HARD_LIMIT
        if self.actual_usd * 10 >= self.budget_usd * 9 or (self.forecast_usd or 0) >= self.budget_usd:
            return BudgetLevel.WARNING
        return BudgetLevel.OK


def read_spend(budgets: Any, *, account_id: str, budget_name: str) -> Spend:
    budget = budgets.describe_budget(AccountId=account_id, BudgetName=budget_name)["Budget"]
    spend = budget.get("CalculatedSpend", {})
    forecast = spend.get("ForecastedSpend")
    return Spend(budget_usd=Decimal(budget["BudgetLimit"]["Amount"]),
                 actual_usd=Decimal(spend.get("ActualSpend", {}).get("Amount", "0")),
                 forecast_usd=Decimal(forecast["Amount"]) if forecast else None)


@dataclass
class NonProdTargets:
    """Resources the hard limit scales to zero (from config; empty means nothing to scale)."""

    db_instances: Sequence[str] = ()
    nodegroups: Sequence[str] = ()  # "cluster/nodegroup"


@dataclass
class Actuators:
    """The AWS clients actions use (boto3 in the Lambda, moto in tests)."""

    sns: Any
    ops_topic_arn: str
    rds: Any = None
    eks: Any = None
    nonprod: NonProdTargets = field(default_factory=NonProdTargets)


@dataclass
class BudgetOutcome:
    period_start: date
    level: BudgetLevel
    applied: list[dict[str, Any]] = field(default_factory=list)  # one entry per newly reached level

    def to_dict(self) -> dict[str, Any]:
        return {"period_start": self.period_start.isoformat(), "level": self.level.label, "applied": self.applied}


def _scale_nonprod(act: Actuators) -> list[str]:
    done = []
    for instance in act.nonprod.db_instances:
        act.rds.stop_db_instance(DBInstanceIdentifier=instance)
        done.append(f"rds:{instance} stopped")
    for target in act.nonprod.nodegroups:
        cluster, nodegroup = target.split("/", 1)
        act.eks.update_nodegroup_config(clusterName=cluster, nodegroupName=nodegroup,
                                        scalingConfig={"minSize": 0, "desiredSize": 0, "maxSize": 1})
        done.append(f"eks:{target} scaled to 0")
    return done or ["no non-prod resources configured"]


def _apply(level: BudgetLevel, spend: Spend, period_start: date, act: Actuators) -> list[str]:
    results = []
    for action in ACTIONS[level]:
        if action in ("notify_ops", "page_ops"):
            severity = "page" if action == "page_ops" else "info"
            share = f"{spend.actual_usd / spend.budget_usd:.0%}" if spend.budget_usd else "n/a"
            act.sns.publish(TopicArn=act.ops_topic_arn, Subject=f"Platform budget {level.label}: {share} spent"[:100],
                            Message=json.dumps({"level": level.label, "period_start": period_start.isoformat(),
                                                "actual_usd": str(spend.actual_usd), "budget_usd": str(spend.budget_usd),
                                                "forecast_usd": str(spend.forecast_usd), "actions": ACTIONS[level]}),
                            MessageAttributes={"severity": {"DataType": "String", "StringValue": severity}})
            results.append(f"{action}: sent")
        elif action == "scale_nonprod_to_zero":
            results += _scale_nonprod(act)
        else:  # freeze_free_signups / block_signups take effect through signup_block_reason()
            results.append(f"{action}: in force")
    return results


def enforce_budget(conn: psycopg.Connection, spend: Spend, period_start: date, act: Actuators, *,
                   actor: str = "budget_breaker") -> BudgetOutcome:
    """Record every level up to the current one (once a month each) and apply the new ones."""
    outcome = BudgetOutcome(period_start=period_start, level=spend.level())
    for level in BudgetLevel:
        if level is BudgetLevel.OK or level > outcome.level:
            continue
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO control.platform_budget_levels (period_start, level, actual_usd, forecast_usd, budget_usd)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING level",
                (period_start, level.label, spend.actual_usd, spend.forecast_usd, spend.budget_usd)).fetchone()
            if row is None:
                continue  # reached (and acted on) earlier this month
            results = _apply(level, spend, period_start, act)
            conn.execute("UPDATE control.platform_budget_levels SET actions = %s WHERE period_start = %s AND level = %s",
                         (Jsonb(results), period_start, level.label))
            audit.record(conn, tenant_id=None, action=f"budget.{level.label}", actor=actor,
                         detail={"actual_usd": str(spend.actual_usd), "budget_usd": str(spend.budget_usd),
                                 "forecast_usd": str(spend.forecast_usd), "actions": results})
        outcome.applied.append({"level": level.label, "actions": results})
    return outcome


def current_level(conn: psycopg.Connection, period_start: date) -> BudgetLevel:
    rows = conn.execute("SELECT level FROM control.platform_budget_levels WHERE period_start = %s",
                        (period_start,)).fetchall()
    return max((BudgetLevel[r[0].upper()] for r in rows), default=BudgetLevel.OK)


def signup_block_reason(conn: psycopg.Connection, tier: Tier, period_start: date) -> str | None:
    """Why a new signup on `tier` is refused by the budget breaker this month, or None."""
    level = current_level(conn, period_start)
    if level >= BudgetLevel.EMERGENCY:
        return "new signups are blocked: the platform budget is at 200 % (emergency)"
    if level >= BudgetLevel.HARD_LIMIT and tier.price_usd_per_month == 0:
        return f"free/trial signups ({tier.name}) are frozen: the platform budget is at 100 %"
    return None
