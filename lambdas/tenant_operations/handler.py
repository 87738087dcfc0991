"""Operator and schedule actions on the tenant fleet, in their own function and permission.

Kept out of the provisioning function on purpose: the API's invoker role may invoke provisioning
(a signup), and must not be able to run operator actions by adding an ``action`` key to a
signup-shaped event. Only the schedules of the tenants stack and the operator roles of config
(``TenantsConfig.operator_role_arns``) may invoke this one.

Events (every action is idempotent):

- ``{"action": "init"}``: after a deploy, create/upgrade roles, hardening and the control schema, and
  the services' login with the password in its secret (also after rotating it);
- ``{"action": "sync_passwords"}``: every live tenant role's password derived from the key in the
  tenant-password key secret (first deploy, and after rotating the key);
- ``{"action": "migrate", "concurrency": N}``: fleet migration (large fleets: the CLI, no 15-min cap);
- ``{"action": "refill_warm_pool", "size": N}``: the 5-minute schedule (also the tenants-by-state
  gauge and ``TenantConnectionLimits``, the sum of the tenants' connection limits);
- ``{"action": "drop_due_offboardings"}``: the daily schedule; each tenant on its own, and the
  invocation fails (error alarm, retries, dead-letter queue) when any could not be dropped.

Bad input returns a structured rejection; a transient failure raises.
Settings: `TenantOperationsSettings` (set by the tenants stack); clients: `compose.for_tenant_operations`.
"""

from __future__ import annotations

from typing import Any, Callable

from aws_lambda_powertools import single_metric
from aws_lambda_powertools.metrics import MetricUnit

from lambdas.common.events import require_object, whole_number
from tenant_provisioner import control
from tenant_provisioner.db import Database, admin_connect
from tenant_provisioner.errors import InvalidInput, TransientError
from tenant_provisioner.gateway.credentials import sync_passwords
from tenant_provisioner.gateway.services_login import ensure_services_login
from tenant_provisioner.runtime import compose
from tenant_provisioner.runtime.lambda_handler import LambdaFunction
from tenant_provisioner.runtime.metrics import TenantMetrics
from tenant_provisioner.runtime.settings import TenantOperationsSettings
from tenant_provisioner.tenants import fleet, records, warm_pool
from tenant_provisioner.tiers import load_tiers

ACTOR = "lambda:tenant_operations"
function = LambdaFunction(namespace=TenantMetrics.NAMESPACE,
                          build=lambda: compose.for_tenant_operations(TenantOperationsSettings.from_env()))
logger, metrics = function.logger, function.metrics


def _init(event: dict[str, Any]) -> dict[str, Any]:
    platform = function.clients
    database = platform.database
    login = platform.service_credentials.login() if platform.service_credentials is not None else None
    with admin_connect(database.url) as conn:
        result = control.init(conn, database.provisioner_role)
        if login is not None:
            ensure_services_login(conn, provisioner_role=database.provisioner_role, username=login[0], password=login[1])
    summary = {"applied": list(result.applied), "version": result.version, "unhardened": list(result.unhardened),
               "services_login": login[0] if login is not None else None}
    logger.info("control schema initialised", extra=summary)
    return summary


def _sync_passwords(event: dict[str, Any]) -> dict[str, Any]:
    platform = function.clients
    if platform.service_credentials is None:
        raise InvalidInput("action", "sync_passwords needs the tenant-password key secret (not configured here)")
    deriver = platform.service_credentials.password_deriver()
    with platform.database.connection() as conn:
        updated = sync_passwords(conn, deriver, actor=ACTOR)
    summary = {"roles_updated": updated, "version": deriver.version}
    logger.info("tenant passwords derived", extra=summary)
    return summary


def _migrate(event: dict[str, Any]) -> dict[str, Any]:
    concurrency = whole_number(event, "concurrency", 4)
    database = function.clients.database
    with Database(database.url, provisioner_role=database.provisioner_role, max_size=concurrency) as pool:
        report = fleet.migrate_all(pool, actor=ACTOR, concurrency=concurrency)
    metrics.add_metric(name=TenantMetrics.TENANTS_MIGRATED, unit=MetricUnit.Count, value=len(report.migrated))
    metrics.add_metric(name=TenantMetrics.TENANT_MIGRATIONS_FAILED, unit=MetricUnit.Count, value=len(report.failed))
    logger.info("fleet migration finished", extra=report.to_dict())
    return report.to_dict()


def _refill(event: dict[str, Any]) -> dict[str, Any]:
    size = whole_number(event, "size", 0)
    with function.clients.database.connection() as conn:
        result = warm_pool.refill(conn, size)
        by_state = records.count_by_state(conn)
        committed = records.committed_connections(conn, catalog=load_tiers())
    metrics.add_metric(name=TenantMetrics.WARM_POOL_BUILT, unit=MetricUnit.Count, value=result.built)
    metrics.add_metric(name=TenantMetrics.WARM_POOL_SIZE, unit=MetricUnit.Count, value=result.size)
    # Capacity: the tenants' tier connection counts summed, alarmed against max_connections x overcommit.
    metrics.add_metric(name=TenantMetrics.TENANT_CONNECTION_LIMITS, unit=MetricUnit.Count, value=committed)
    for state, count in by_state.items():  # the dashboard's "tenants by state" gauge
        with single_metric(name=TenantMetrics.TENANTS, unit=MetricUnit.Count, value=count,
                           namespace=TenantMetrics.NAMESPACE) as metric:
            metric.add_dimension(name="state", value=state)
    summary = {**result.to_dict(), "tenants_by_state": by_state, "tenant_connection_limits": committed}
    logger.info("warm pool refilled", extra=summary)
    return summary


def _drop_due_offboardings(event: dict[str, Any]) -> dict[str, Any]:
    platform = function.clients
    with platform.database.connection() as conn:
        result = platform.lifecycle.drop_due(conn, actor=ACTOR)
    metrics.add_metric(name=TenantMetrics.TENANTS_OFFBOARDED, unit=MetricUnit.Count, value=len(result.dropped))
    metrics.add_metric(name=TenantMetrics.OFFBOARDING_FAILURES, unit=MetricUnit.Count, value=len(result.failed))
    logger.info("due offboardings finished", extra=result.to_dict())
    if result.failed:  # the invocation fails, so its error alarm pages; the others were dropped
        raise TransientError(f"{len(result.failed)} due offboarding(s) failed: {result.failed}")
    return result.to_dict()


ACTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "init": _init, "sync_passwords": _sync_passwords, "migrate": _migrate, "refill_warm_pool": _refill, "drop_due_offboardings": _drop_due_offboardings,
}


@function.handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    event = require_object(event)
    name = event.get("action")
    action = ACTIONS.get(name) if isinstance(name, str) else None
    if action is None:
        raise InvalidInput("action", f"{name!r} is not one of {', '.join(ACTIONS)}")
    return action(event)
