"""Budget-breaker Lambda: an AWS Budgets notification (via SNS) -> platform budget level -> actions.

The notification only wakes it up: the level comes from ``budgets:DescribeBudget`` (see
`tenant_provisioner.limits.budget`), so redelivered or out-of-order notifications converge, and
each level's actions run once a month. Returns what was applied.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from tenant_provisioner.db import Database, database_url_from_env
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.limits.budget import Actuators, NonProdTargets, enforce_budget, read_spend

logger = Logger()
metrics = Metrics(namespace="SaaS/Limits")


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"budget breaker: {name} is not set")
    return value


def _split(name: str) -> list[str]:
    return [item for item in os.environ.get(name, "").split(",") if item]


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    records = (event or {}).get("Records", [])
    logger.info("budget notification", extra={"records": len(records),
                                               "subjects": [r.get("Sns", {}).get("Subject") for r in records]})
    spend = read_spend(boto3.client("budgets"), account_id=_required("BUDGET_ACCOUNT_ID"),
                       budget_name=_required("BUDGET_NAME"))
    act = Actuators(sns=boto3.client("sns"), ops_topic_arn=_required("OPS_TOPIC_ARN"), rds=boto3.client("rds"),
                    eks=boto3.client("eks"), nonprod=NonProdTargets(db_instances=_split("NONPROD_DB_INSTANCES"),
                                                                    nodegroups=_split("NONPROD_NODEGROUPS")))
    period_start = datetime.now(timezone.utc).date().replace(day=1)
    with Database(database_url_from_env(), max_size=1) as db, db.connection() as conn:
        outcome = enforce_budget(conn, spend, period_start, act)
    metrics.add_metric(name="PlatformBudgetLevel", unit=MetricUnit.Count, value=int(outcome.level))
    logger.info("budget breaker done", extra={"outcome": outcome.to_dict()})
    return outcome.to_dict()
