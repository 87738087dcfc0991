"""Budget-breaker Lambda: an AWS Budgets notification (via SNS) -> platform budget level -> actions.

The notification only wakes it up: the level comes from ``budgets:DescribeBudget`` (see
`tenant_provisioner.limits.budget`), so redelivered or out-of-order notifications converge, and
each level's actions run once a month. Returns what was applied.

Settings: `BudgetBreakerSettings` (set by the limits stack); clients: `compose.for_budget_breaker`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from tenant_provisioner.limits.budget import enforce_budget, read_spend
from tenant_provisioner.runtime import compose
from tenant_provisioner.runtime.lambda_handler import LambdaFunction
from tenant_provisioner.runtime.metrics import LimitsMetrics
from tenant_provisioner.runtime.settings import BudgetBreakerSettings

function = LambdaFunction(namespace=LimitsMetrics.NAMESPACE, rejects=(),
                          build=lambda: compose.for_budget_breaker(BudgetBreakerSettings.from_env()))
logger, metrics = function.logger, function.metrics


@function.handler
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    records = (event or {}).get("Records", [])
    logger.info("budget notification", extra={"records": len(records),
                                               "subjects": [r.get("Sns", {}).get("Subject") for r in records]})
    breaker = function.clients
    budget = breaker.settings.budget
    spend = read_spend(breaker.budgets, account_id=budget.account_id, budget_name=budget.budget_name)
    period_start = datetime.now(timezone.utc).date().replace(day=1)
    with breaker.database.connection() as conn:
        outcome = enforce_budget(conn, spend, period_start, breaker.actuators)
    metrics.add_metric(name=LimitsMetrics.PLATFORM_BUDGET_LEVEL, unit=MetricUnit.Count, value=int(outcome.level))
    logger.info("budget breaker done", extra={"outcome": outcome.to_dict()})
    return outcome.to_dict()
