"""Provisioning Lambda: a signup in, the same JSON as ``tenant-provisioner create`` out.

Invoked synchronously by the API's role (payload = the request) and by the EventBridge rule on
``tenant.signup`` events (request in ``detail``). Nothing else: operator and schedule actions
live in their own function (``lambdas/tenant_operations``), so the API's invoker role cannot run
them by adding an ``action`` key; such an event, or one that is not a JSON object, is rejected.
Bad input or a conflicting request returns a
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

from lambdas.common.events import rejected, require_object
from tenant_provisioner.tenants import lifecycle
from tenant_provisioner.db import Database, rds_secret_params
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


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        event = require_object(event)
        if "action" in event:
            raise InvalidInput("action", "operator actions are not accepted by the provisioning function; "
                                         "invoke the tenant_operations function")
        payload = event.get("detail") if "detail-type" in event else event
        request = CreateRequest.parse(require_object(payload))
    except InvalidInput as exc:
        logger.warning("signup rejected", extra={"field": exc.field, "reason": exc.detail})
        metrics.add_metric(name="ProvisioningRejected", unit=MetricUnit.Count, value=1)
        return rejected(exc)
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
        return rejected(exc)
    metrics.add_metric(name="ProvisioningDuration", unit=MetricUnit.Milliseconds, value=result.duration_ms)
    metrics.add_metric(name="TenantsCreated", unit=MetricUnit.Count, value=1 if result.created else 0)
    logger.info("tenant provisioned", extra={"tenant_created": result.created, "duration_ms": result.duration_ms,
                                             "schema": result.tenant.schema_name})
    return result.to_dict()
