"""Enforcement Lambda: one `run_cycle` per invocation (EventBridge every 5 minutes, or on demand).

Event: ``{}`` for every tenant, or ``{"tenant_ids": ["acme", ...]}`` to enforce some now (e.g.
right after an operator resume). Returns the cycle summary; raises after the cycle when it
recorded errors, so the asynchronous retry and the dead-letter queue see the failure (a re-run
is safe: the cycle is idempotent). Billing's post-cycle reporters come from the composition root.

Settings: `EnforceLimitsSettings` (set by the limits stack); clients: `compose.for_enforcement`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from tenant_provisioner import validation
from tenant_provisioner.errors import InvalidInput, TransientError
from tenant_provisioner.limits.enforcer import run_cycle
from tenant_provisioner.runtime import compose
from tenant_provisioner.runtime.lambda_handler import LambdaFunction
from tenant_provisioner.runtime.metrics import LimitsMetrics
from tenant_provisioner.runtime.settings import EnforceLimitsSettings

function = LambdaFunction(namespace=LimitsMetrics.NAMESPACE, rejects=(),
                          build=lambda: compose.for_enforcement(EnforceLimitsSettings.from_env()))
logger, metrics = function.logger, function.metrics


def _tenant_ids(event: dict[str, Any]) -> list[str] | None:
    ids = event.get("tenant_ids")
    if ids is None:
        return None
    if not isinstance(ids, list):
        raise InvalidInput("tenant_ids", "must be a list of tenant ids")
    return [validation.tenant_id(i) for i in ids]


@function.handler
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    tenant_ids = _tenant_ids(event or {})
    platform = function.clients
    assert platform.redis is not None and platform.notifier is not None
    result = run_cycle(platform.database, platform.redis, notifier=platform.notifier, lifecycle=platform.lifecycle,
                       key_prefix=platform.key_prefix, tenant_ids=tenant_ids, reporters=platform.reporters(),
                       reaper=platform.reaper)
    summary = result.to_dict()
    metrics.add_metric(name=LimitsMetrics.TENANTS_ENFORCED, unit=MetricUnit.Count, value=len(result.usage))
    metrics.add_metric(name=LimitsMetrics.BREAKER_TRANSITIONS, unit=MetricUnit.Count, value=len(result.transitions))
    metrics.add_metric(name=LimitsMetrics.SUSPENSIONS, unit=MetricUnit.Count,
                       value=sum(t["to"] == "suspended" and t["cause"] == "usage" for t in result.transitions))
    metrics.add_metric(name=LimitsMetrics.ENFORCEMENT_ERRORS, unit=MetricUnit.Count, value=len(result.errors))
    metrics.add_metric(name=LimitsMetrics.TENANT_SESSIONS_TERMINATED, unit=MetricUnit.Count,
                       value=len(result.terminated))
    logger.info("enforcement cycle done", extra={"summary": summary})
    if result.errors:
        raise TransientError(f"enforcement cycle finished with {len(result.errors)} error(s): {result.errors[:3]}")
    return summary
