"""Enforcement Lambda: one `run_cycle` per invocation (EventBridge every 5 minutes, or on demand).

Event: ``{}`` for every tenant, or ``{"tenant_ids": ["acme", ...]}`` to enforce some now (e.g.
right after an operator resume). Returns the cycle summary; raises after the cycle when it
recorded errors, so the asynchronous retry and the dead-letter queue see the failure (a re-run
is safe: the cycle is idempotent). Post-cycle reporters come from `registered_reporters()`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from tenant_provisioner import validation
from tenant_provisioner.db import Database, database_url_from_env
from tenant_provisioner.errors import InvalidInput, TransientError
from tenant_provisioner.limits.enforcer import registered_reporters, run_cycle
from tenant_provisioner.limits.notify import AwsNotifier
from tenant_provisioner.limits.reaper import ReaperSettings
from tenant_provisioner.runtime.clients import redis_client

logger = Logger()
metrics = Metrics(namespace="SaaS/Limits")


def _tenant_ids(event: dict[str, Any]) -> list[str] | None:
    ids = event.get("tenant_ids")
    if ids is None:
        return None
    if not isinstance(ids, list):
        raise InvalidInput("tenant_ids", "must be a list of tenant ids")
    return [validation.tenant_id(i) for i in ids]


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    tenant_ids = _tenant_ids(event or {})
    with Database(database_url_from_env(), max_size=1) as db:
        result = run_cycle(db, redis_client(), notifier=AwsNotifier.from_env(), tenant_ids=tenant_ids,
                           reporters=registered_reporters(), reaper=ReaperSettings.from_env())
    summary = result.to_dict()
    metrics.add_metric(name="TenantsEnforced", unit=MetricUnit.Count, value=len(result.usage))
    metrics.add_metric(name="BreakerTransitions", unit=MetricUnit.Count, value=len(result.transitions))
    metrics.add_metric(name="Suspensions", unit=MetricUnit.Count,
                       value=sum(t["to"] == "suspended" and t["cause"] == "usage" for t in result.transitions))
    metrics.add_metric(name="EnforcementErrors", unit=MetricUnit.Count, value=len(result.errors))
    metrics.add_metric(name="TenantSessionsTerminated", unit=MetricUnit.Count, value=len(result.terminated))
    logger.info("enforcement cycle done", extra={"summary": summary})
    if result.errors:
        raise TransientError(f"enforcement cycle finished with {len(result.errors)} error(s): {result.errors[:3]}")
    return summary
