"""Provisioning Lambda: a signup in, the same JSON as ``tenant-provisioner create`` out.

Invoked synchronously by the API's role (payload = the request), by the EventBridge rule on
``tenant.signup`` events (request in ``detail``), and by schedules that refill the warm pool
(``{"action": "refill_warm_pool", "size": N}``) and finish offboardings whose retention has
passed (``{"action": "drop_due_offboardings"}``); operators invoke ``{"action": "init"}`` after a
deploy and ``{"action": "migrate", "concurrency": N}`` for fleet migrations. Bad input or a conflicting request returns a
structured error (``{"status": "rejected", "error": {...}}``) so nobody retries it; a transient
failure raises, so the synchronous caller retries and an asynchronous event goes to the retry
policy and then the dead-letter queue. Idempotency is the database's: a retried signup finds
its tenant (``created: false``) or completes a half-finished one.

Environment: ``DATABASE_SECRET_ARN`` (RDS master secret; the login user works as
``TENANT_PROVISIONER_ROLE``), ``DATABASE_NAME``, ``DATABASE_SSLMODE`` (default ``require``),
``TENANT_SECRETS_PREFIX``, ``TENANT_SECRETS_KMS_KEY_ID``, optional ``TENANT_DB_HOST``/``PORT``.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext
from psycopg.conninfo import make_conninfo

from tenant_provisioner import control
from tenant_provisioner.tenants import fleet, lifecycle, offboarding, records, warm_pool
from tenant_provisioner.db import Database, admin_connect, provisioner_role_from_env, rds_secret_params
from tenant_provisioner.errors import InvalidInput, PlatformError, TransientError
from tenant_provisioner.tenants.provisioning import CreateRequest, DbEndpoint
from tenant_provisioner.secrets import AwsSecretStore

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "SaaS/Tenants"))
ACTOR = "lambda:provision_tenant"

# Reused across warm invocations: the connection URL, one pooled connection, one Secrets Manager client.
_url: str | None = None
_database: Database | None = None
_endpoint: DbEndpoint | None = None
_store: AwsSecretStore | None = None


def _secret_store() -> AwsSecretStore:
    global _store
    if _store is None:
        _store = AwsSecretStore.from_env()
    return _store


def _connect() -> tuple[Database, DbEndpoint]:
    global _url, _database, _endpoint
    if _url is None or _database is None or _endpoint is None:
        params = rds_secret_params(os.environ["DATABASE_SECRET_ARN"], dbname=os.environ.get("DATABASE_NAME"),
                                   sslmode=os.environ.get("DATABASE_SSLMODE", "require"))
        _url = make_conninfo(**params)
        _database = Database(_url, max_size=1)
        _endpoint = DbEndpoint(host=os.environ.get("TENANT_DB_HOST") or params["host"],
                               port=int(os.environ.get("TENANT_DB_PORT") or params["port"]), database=params["dbname"])
    return _database, _endpoint


def _forget_connection() -> None:
    """After a connection failure (e.g. a rotated master password), re-read the secret next time."""
    global _url, _database, _endpoint
    if _database is not None:
        _database.close()
    _url = _database = _endpoint = None
    parameters.clear_caches()


def _rejected(exc: PlatformError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": exc.code, "message": str(exc)}
    if isinstance(exc, InvalidInput):
        error["field"] = exc.field
    return {"status": "rejected", "error": error}


def _int(event: dict[str, Any], key: str, default: int) -> int:
    value = event.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(key, f"must be a whole number, got {value!r}")
    return value


def _init(event: dict[str, Any]) -> dict[str, Any]:
    """After a deploy: create/upgrade roles and the control schema (idempotent)."""
    _connect()
    assert _url is not None
    with admin_connect(_url) as conn:
        result = control.init(conn, provisioner_role_from_env())
    logger.info("control schema initialised", extra={"applied": list(result.applied), "version": result.version})
    return {"applied": list(result.applied), "version": result.version}


def _migrate(event: dict[str, Any]) -> dict[str, Any]:
    """Fleet migration with ``concurrency`` connections (large fleets: use the CLI, no 15-min cap)."""
    concurrency = _int(event, "concurrency", 4)
    _connect()
    assert _url is not None
    with Database(_url, max_size=concurrency) as database:
        report = fleet.migrate_all(database, actor=ACTOR, concurrency=concurrency)
    metrics.add_metric(name="TenantsMigrated", unit=MetricUnit.Count, value=len(report.migrated))
    metrics.add_metric(name="TenantMigrationsFailed", unit=MetricUnit.Count, value=len(report.failed))
    logger.info("fleet migration finished", extra=report.to_dict())
    return report.to_dict()


def _refill(event: dict[str, Any]) -> dict[str, Any]:
    """The scheduled warm-pool refill (``{"action": "refill_warm_pool", "size": N}``)."""
    database, _ = _connect()
    with database.connection() as conn:
        result = warm_pool.refill(conn, _int(event, "size", 0))
        by_state = records.count_by_state(conn)
    metrics.add_metric(name="WarmPoolBuilt", unit=MetricUnit.Count, value=result.built)
    metrics.add_metric(name="WarmPoolSize", unit=MetricUnit.Count, value=result.size)
    _publish_tenants_by_state(by_state)
    logger.info("warm pool refilled", extra={**result.to_dict(), "tenants_by_state": by_state})
    return {**result.to_dict(), "tenants_by_state": by_state}


def _publish_tenants_by_state(by_state: dict[str, int]) -> None:
    """The dashboard's "tenants by state" gauge, refreshed with the 5-minute warm-pool schedule."""
    for state, count in by_state.items():
        with single_metric(name="Tenants", unit=MetricUnit.Count, value=count,
                           namespace=metrics.namespace) as metric:
            metric.add_dimension(name="state", value=state)


def _drop_due_offboardings(event: dict[str, Any]) -> dict[str, Any]:
    """The daily schedule (``{"action": "drop_due_offboardings"}``): drop tenants past retention."""
    database, _ = _connect()
    with database.connection() as conn:
        dropped = offboarding.drop_due(conn, actor=ACTOR, store=_secret_store())
    metrics.add_metric(name="TenantsOffboarded", unit=MetricUnit.Count, value=len(dropped))
    logger.info("due offboardings finished", extra={"dropped": dropped})
    return {"dropped": dropped}


# Operator and schedule actions (``{"action": ...}``); every one is idempotent.
ACTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "init": _init, "migrate": _migrate, "refill_warm_pool": _refill, "drop_due_offboardings": _drop_due_offboardings,
}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "action" in event:
        action = ACTIONS.get(event["action"])
        if action is None:
            return _rejected(InvalidInput("action", f"{event['action']!r} is not one of {', '.join(ACTIONS)}"))
        try:
            return action(event)
        except PlatformError as exc:
            if exc.retryable:
                raise
            return _rejected(exc)
    payload = event.get("detail") if "detail-type" in event else event
    try:
        request = CreateRequest.parse(payload if isinstance(payload, dict) else {})
    except InvalidInput as exc:
        logger.warning("signup rejected", extra={"field": exc.field, "reason": exc.detail})
        metrics.add_metric(name="ProvisioningRejected", unit=MetricUnit.Count, value=1)
        return _rejected(exc)
    logger.append_keys(tenant_id=request.tenant_id, tier=request.tier)
    database, endpoint = _connect()
    try:
        with database.connection() as conn:
            result = lifecycle.create(conn, request, actor=ACTOR, store=_secret_store(), endpoint=endpoint)
    except TransientError:
        metrics.add_metric(name="ProvisioningFailed", unit=MetricUnit.Count, value=1)
        _forget_connection()
        logger.exception("provisioning failed transiently; the caller retries")
        raise
    except PlatformError as exc:
        if exc.retryable:
            raise
        logger.warning("signup rejected", extra={"code": exc.code, "reason": str(exc)})
        metrics.add_metric(name="ProvisioningRejected", unit=MetricUnit.Count, value=1)
        return _rejected(exc)
    metrics.add_metric(name="ProvisioningDuration", unit=MetricUnit.Milliseconds, value=result.duration_ms)
    metrics.add_metric(name="TenantsCreated", unit=MetricUnit.Count, value=1 if result.created else 0)
    logger.info("tenant provisioned", extra={"tenant_created": result.created, "duration_ms": result.duration_ms,
                                             "schema": result.tenant.schema_name})
    return result.to_dict()
