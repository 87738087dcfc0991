"""Operator and schedule actions on the tenant fleet, in their own function and permission.

Kept out of the provisioning function on purpose: the API's invoker role may invoke provisioning
(a signup), and must not be able to run operator actions by adding an ``action`` key to a
signup-shaped event. Only the schedules of the tenants stack and the operator roles of config
(``TenantsConfig.operator_role_arns``) may invoke this one.

Events (every action is idempotent):

- ``{"action": "init"}``: after a deploy, create/upgrade roles, hardening and the control schema;
- ``{"action": "migrate", "concurrency": N}``: fleet migration (large fleets: the CLI, no 15-min cap);
- ``{"action": "refill_warm_pool", "size": N}``: the 5-minute schedule (also the tenants-by-state
  gauge and ``TenantConnectionLimits``, the sum of the tenants' connection limits);
- ``{"action": "drop_due_offboardings"}``: the daily schedule; each tenant on its own, and the
  invocation fails (error alarm, retries, dead-letter queue) when any could not be dropped.

Bad input returns a structured rejection; a transient failure raises. Environment:
``DATABASE_SECRET_ARN`` / ``DATABASE_NAME`` (or ``DATABASE_URL``), ``TENANT_PROVISIONER_ROLE``,
``TENANT_SECRETS_PREFIX``, ``TENANT_SECRETS_KMS_KEY_ID``.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common.events import rejected, require_object, whole_number
from tenant_provisioner import control
from tenant_provisioner.db import Database, admin_connect, database_url_from_env, provisioner_role_from_env
from tenant_provisioner.errors import InvalidInput, PlatformError, TransientError
from tenant_provisioner.secrets import AwsSecretStore
from tenant_provisioner.tenants import fleet, offboarding, records, warm_pool

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "SaaS/Tenants"))
ACTOR = "lambda:tenant_operations"


def _init(event: dict[str, Any], url: str) -> dict[str, Any]:
    with admin_connect(url) as conn:
        result = control.init(conn, provisioner_role_from_env())
    summary = {"applied": list(result.applied), "version": result.version, "unhardened": list(result.unhardened)}
    logger.info("control schema initialised", extra=summary)
    return summary


def _migrate(event: dict[str, Any], url: str) -> dict[str, Any]:
    concurrency = whole_number(event, "concurrency", 4)
    with Database(url, max_size=concurrency) as database:
        report = fleet.migrate_all(database, actor=ACTOR, concurrency=concurrency)
    metrics.add_metric(name="TenantsMigrated", unit=MetricUnit.Count, value=len(report.migrated))
    metrics.add_metric(name="TenantMigrationsFailed", unit=MetricUnit.Count, value=len(report.failed))
    logger.info("fleet migration finished", extra=report.to_dict())
    return report.to_dict()


def _refill(event: dict[str, Any], url: str) -> dict[str, Any]:
    size = whole_number(event, "size", 0)
    with Database(url) as database, database.connection() as conn:
        result = warm_pool.refill(conn, size)
        by_state = records.count_by_state(conn)
        committed = records.committed_connections(conn)
    metrics.add_metric(name="WarmPoolBuilt", unit=MetricUnit.Count, value=result.built)
    metrics.add_metric(name="WarmPoolSize", unit=MetricUnit.Count, value=result.size)
    # Capacity: the tenants' CONNECTION LIMITs summed, alarmed against max_connections x overcommit.
    metrics.add_metric(name="TenantConnectionLimits", unit=MetricUnit.Count, value=committed)
    for state, count in by_state.items():  # the dashboard's "tenants by state" gauge
        with single_metric(name="Tenants", unit=MetricUnit.Count, value=count, namespace=metrics.namespace) as metric:
            metric.add_dimension(name="state", value=state)
    summary = {**result.to_dict(), "tenants_by_state": by_state, "tenant_connection_limits": committed}
    logger.info("warm pool refilled", extra=summary)
    return summary


def _drop_due_offboardings(event: dict[str, Any], url: str) -> dict[str, Any]:
    with Database(url) as database, database.connection() as conn:
        result = offboarding.drop_due(conn, actor=ACTOR, store=AwsSecretStore.from_env())
    metrics.add_metric(name="TenantsOffboarded", unit=MetricUnit.Count, value=len(result.dropped))
    metrics.add_metric(name="OffboardingFailures", unit=MetricUnit.Count, value=len(result.failed))
    logger.info("due offboardings finished", extra=result.to_dict())
    if result.failed:  # the invocation fails, so its error alarm pages; the others were dropped
        raise TransientError(f"{len(result.failed)} due offboarding(s) failed: {result.failed}")
    return result.to_dict()


ACTIONS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "init": _init, "migrate": _migrate, "refill_warm_pool": _refill, "drop_due_offboardings": _drop_due_offboardings,
}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        event = require_object(event)
        name = event.get("action")
        action = ACTIONS.get(name) if isinstance(name, str) else None
        if action is None:
            raise InvalidInput("action", f"{name!r} is not one of {', '.join(ACTIONS)}")
        return action(event, database_url_from_env())
    except PlatformError as exc:
        if exc.retryable:
            raise
        logger.warning("operation rejected", extra={"code": exc.code, "reason": str(exc)})
        return rejected(exc)
