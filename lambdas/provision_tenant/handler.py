"""Provisioning Lambda: a signup in, the same JSON as ``tenant-provisioner create`` out.

Invoked synchronously by the API's role (payload = the request), by the EventBridge rule on
``tenant.signup`` events (request in ``detail``), and by schedules that refill the warm pool
(``{"action": "refill_warm_pool", "size": N}``) and finish offboardings whose retention has
passed (``{"action": "drop_due_offboardings"}``). Bad input or a conflicting request returns a
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
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext
from psycopg.conninfo import make_conninfo

from tenant_provisioner import lifecycle, offboarding, warm_pool
from tenant_provisioner.db import Database
from tenant_provisioner.errors import InvalidInput, PlatformError, TransientError
from tenant_provisioner.pipeline import CreateRequest, DbEndpoint
from tenant_provisioner.secrets import AwsSecretStore

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "SaaS/Tenants"))
ACTOR = "lambda:provision_tenant"
_SECRET_MAX_AGE_SECONDS = 300

# Reused across warm invocations: one connection, one Secrets Manager client.
_database: Database | None = None
_endpoint: DbEndpoint | None = None
_store: AwsSecretStore | None = None


def _secret_store() -> AwsSecretStore:
    global _store
    if _store is None:
        _store = AwsSecretStore.from_env()
    return _store


def _connect() -> tuple[Database, DbEndpoint]:
    global _database, _endpoint
    if _database is None or _endpoint is None:
        secret: dict[str, Any] = parameters.get_secret(os.environ["DATABASE_SECRET_ARN"], transform="json",
                                                       max_age=_SECRET_MAX_AGE_SECONDS)
        dbname = os.environ.get("DATABASE_NAME") or secret.get("dbname") or "postgres"
        url = make_conninfo(host=secret["host"], port=int(secret["port"]), user=secret["username"],
                            password=secret["password"], dbname=dbname,
                            sslmode=os.environ.get("DATABASE_SSLMODE", "require"))
        _database = Database(url, max_size=1)
        _endpoint = DbEndpoint(host=os.environ.get("TENANT_DB_HOST") or secret["host"],
                               port=int(os.environ.get("TENANT_DB_PORT") or secret["port"]), database=dbname)
    return _database, _endpoint


def _forget_connection() -> None:
    """After a connection failure (e.g. a rotated master password), re-read the secret next time."""
    global _database, _endpoint
    if _database is not None:
        _database.close()
    _database = _endpoint = None
    parameters.clear_caches()


def _rejected(exc: PlatformError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": exc.code, "message": str(exc)}
    if isinstance(exc, InvalidInput):
        error["field"] = exc.field
    return {"status": "rejected", "error": error}


def _refill(size: int) -> dict[str, Any]:
    """The scheduled warm-pool refill (``{"action": "refill_warm_pool", "size": N}``)."""
    database, _ = _connect()
    with database.connection() as conn:
        result = warm_pool.refill(conn, size)
    metrics.add_metric(name="WarmPoolBuilt", unit=MetricUnit.Count, value=result.built)
    metrics.add_metric(name="WarmPoolSize", unit=MetricUnit.Count, value=result.size)
    logger.info("warm pool refilled", extra=result.to_dict())
    return result.to_dict()


def _drop_due_offboardings() -> dict[str, Any]:
    """The daily schedule (``{"action": "drop_due_offboardings"}``): drop tenants past retention."""
    database, _ = _connect()
    with database.connection() as conn:
        dropped = offboarding.drop_due(conn, actor=ACTOR, store=_secret_store())
    metrics.add_metric(name="TenantsOffboarded", unit=MetricUnit.Count, value=len(dropped))
    logger.info("due offboardings finished", extra={"dropped": dropped})
    return {"dropped": dropped}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "refill_warm_pool":
        return _refill(int(event.get("size", 0)))
    if event.get("action") == "drop_due_offboardings":
        return _drop_due_offboardings()
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
