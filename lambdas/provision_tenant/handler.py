"""Provisioning Lambda: a signup in, the same JSON as ``tenant-provisioner create`` out.

Invoked synchronously by the API's role (payload = the request), by the EventBridge rule on
``tenant.signup`` events (request in ``detail``), and by schedules that refill the warm pool
(``{"action": "refill_warm_pool", "size": N}``) and finish offboardings whose retention has
passed (``{"action": "drop_due_offboardings"}``); operators invoke ``{"action": "init"}`` after a
deploy and ``{"action": "migrate", "concurrency": N}`` for fleet migrations. Bad input or a
conflicting request returns a structured error (``{"status": "rejected", "error": {...}}``) so
nobody retries it; a transient failure raises, so the synchronous caller retries and an
asynchronous event goes to the retry policy and then the dead-letter queue. Idempotency is the
database's: a retried signup finds its tenant (``created: false``) or completes a half-finished one.

Settings: `ProvisionTenantSettings` (set by the tenants stack); clients: `compose.for_provisioning`.
"""

from __future__ import annotations

from typing import Any, Callable

from aws_lambda_powertools import single_metric
from aws_lambda_powertools.metrics import MetricUnit

from tenant_provisioner import control
from tenant_provisioner.db import Database, admin_connect
from tenant_provisioner.errors import InvalidInput, PlatformError, TransientError
from tenant_provisioner.runtime import compose
from tenant_provisioner.runtime.lambda_handler import LambdaFunction
from tenant_provisioner.runtime.metrics import TenantMetrics
from tenant_provisioner.runtime.settings import ProvisionTenantSettings
from tenant_provisioner.tenants import fleet, records, warm_pool
from tenant_provisioner.tenants.provisioning import CreateRequest

ACTOR = "lambda:provision_tenant"
function = LambdaFunction(namespace=TenantMetrics.NAMESPACE,
                          build=lambda: compose.for_provisioning(ProvisionTenantSettings.from_env()))
logger, metrics = function.logger, function.metrics


def _int(event: dict[str, Any], key: str, default: int) -> int:
    value = event.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(key, f"must be a whole number, got {value!r}")
    return value


def _init(event: dict[str, Any]) -> dict[str, Any]:
    """After a deploy: create/upgrade roles and the control schema (idempotent)."""
    database = function.clients.database
    with admin_connect(database.url) as conn:
        result = control.init(conn, database.provisioner_role)
    logger.info("control schema initialised", extra={"applied": list(result.applied), "version": result.version})
    return {"applied": list(result.applied), "version": result.version}


def _migrate(event: dict[str, Any]) -> dict[str, Any]:
    """Fleet migration with ``concurrency`` connections (large fleets: use the CLI, no 15-min cap)."""
    concurrency = _int(event, "concurrency", 4)
    database = function.clients.database
    with Database(database.url, provisioner_role=database.provisioner_role, max_size=concurrency) as pool:
        report = fleet.migrate_all(pool, actor=ACTOR, concurrency=concurrency)
    metrics.add_metric(name=TenantMetrics.TENANTS_MIGRATED, unit=MetricUnit.Count, value=len(report.migrated))
    metrics.add_metric(name=TenantMetrics.TENANT_MIGRATIONS_FAILED, unit=MetricUnit.Count, value=len(report.failed))
    logger.info("fleet migration finished", extra=report.to_dict())
    return report.to_dict()


def _refill(event: dict[str, Any]) -> dict[str, Any]:
    """The scheduled warm-pool refill (``{"action": "refill_warm_pool", "size": N}``)."""
    with function.clients.database.connection() as conn:
        result = warm_pool.refill(conn, _int(event, "size", 0))
        by_state = records.count_by_state(conn)
    metrics.add_metric(name=TenantMetrics.WARM_POOL_BUILT, unit=MetricUnit.Count, value=result.built)
    metrics.add_metric(name=TenantMetrics.WARM_POOL_SIZE, unit=MetricUnit.Count, value=result.size)
    _publish_tenants_by_state(by_state)
    logger.info("warm pool refilled", extra={**result.to_dict(), "tenants_by_state": by_state})
    return {**result.to_dict(), "tenants_by_state": by_state}


def _publish_tenants_by_state(by_state: dict[str, int]) -> None:
    """The dashboard's "tenants by state" gauge, refreshed with the 5-minute warm-pool schedule."""
    for state, count in by_state.items():
        with single_metric(name=TenantMetrics.TENANTS, unit=MetricUnit.Count, value=count,
                           namespace=TenantMetrics.NAMESPACE) as metric:
            metric.add_dimension(name="state", value=state)


def _drop_due_offboardings(event: dict[str, Any]) -> dict[str, Any]:
    """The daily schedule (``{"action": "drop_due_offboardings"}``): drop tenants past retention."""
    platform = function.clients
    with platform.database.connection() as conn:
        dropped = platform.lifecycle.drop_due(conn, actor=ACTOR)
    metrics.add_metric(name=TenantMetrics.TENANTS_OFFBOARDED, unit=MetricUnit.Count, value=len(dropped))
    logger.info("due offboardings finished", extra={"dropped": dropped})
    return {"dropped": dropped}


# Operator and schedule actions (``{"action": ...}``); every one is idempotent.
ACTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "init": _init, "migrate": _migrate, "refill_warm_pool": _refill, "drop_due_offboardings": _drop_due_offboardings,
}


def _signup(event: dict[str, Any]) -> dict[str, Any]:
    payload = event.get("detail") if "detail-type" in event else event
    try:
        request = CreateRequest.parse(payload if isinstance(payload, dict) else {})
    except InvalidInput:
        metrics.add_metric(name=TenantMetrics.PROVISIONING_REJECTED, unit=MetricUnit.Count, value=1)
        raise
    logger.append_keys(tenant_id=request.tenant_id, tier=request.tier)
    platform = function.clients
    try:
        with platform.database.connection() as conn:
            result = platform.lifecycle.create(conn, request, actor=ACTOR, endpoint=platform.endpoint)
    except PlatformError as exc:
        if not exc.retryable:
            metrics.add_metric(name=TenantMetrics.PROVISIONING_REJECTED, unit=MetricUnit.Count, value=1)
        elif isinstance(exc, TransientError):
            metrics.add_metric(name=TenantMetrics.PROVISIONING_FAILED, unit=MetricUnit.Count, value=1)
            function.forget()
            logger.exception("provisioning failed transiently; the caller retries")
        raise
    metrics.add_metric(name=TenantMetrics.PROVISIONING_DURATION, unit=MetricUnit.Milliseconds,
                       value=result.duration_ms)
    metrics.add_metric(name=TenantMetrics.TENANTS_CREATED, unit=MetricUnit.Count, value=1 if result.created else 0)
    logger.info("tenant provisioned", extra={"tenant_created": result.created, "duration_ms": result.duration_ms,
                                             "schema": result.tenant.schema_name})
    return result.to_dict()


@function.handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "action" not in event:
        return _signup(event)
    action = ACTIONS.get(event["action"])
    if action is None:
        raise InvalidInput("action", f"{event['action']!r} is not one of {', '.join(ACTIONS)}")
    return action(event)
