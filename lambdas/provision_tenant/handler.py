"""Provisioning Lambda: a signup in, the same JSON as ``tenant-provisioner create`` out.

Invoked synchronously by the API's role (payload = the request) and by the EventBridge rule on
``tenant.signup`` events (request in ``detail``). Nothing else: operator and schedule actions
live in their own function (``lambdas/tenant_operations``), so the API's invoker role cannot run
them by adding an ``action`` key; such an event, or one that is not a JSON object, is rejected.
Bad input or a conflicting request returns a structured error (``{"status": "rejected",
"error": {...}}``) so nobody retries it; a transient failure raises, so the synchronous caller
retries and an asynchronous event goes to the retry policy and then the dead-letter queue.
Idempotency is the database's: a retried signup finds its tenant (``created: false``) or
completes a half-finished one.

Settings: `ProvisionTenantSettings` (set by the tenants stack); clients: `compose.for_provisioning`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.common.events import require_object
from tenant_provisioner.errors import InvalidInput, PlatformError, TransientError
from tenant_provisioner.runtime import compose
from tenant_provisioner.runtime.lambda_handler import LambdaFunction
from tenant_provisioner.runtime.metrics import TenantMetrics
from tenant_provisioner.runtime.settings import ProvisionTenantSettings
from tenant_provisioner.tenants.provisioning import CreateRequest

ACTOR = "lambda:provision_tenant"
function = LambdaFunction(namespace=TenantMetrics.NAMESPACE,
                          build=lambda: compose.for_provisioning(ProvisionTenantSettings.from_env()))
logger, metrics = function.logger, function.metrics


@function.handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        event = require_object(event)
        if "action" in event:
            raise InvalidInput("action", "operator actions are not accepted by the provisioning function; "
                                         "invoke the tenant_operations function")
        payload = event.get("detail") if "detail-type" in event else event
        request = CreateRequest.parse(require_object(payload))
    except InvalidInput:
        metrics.add_metric(name=TenantMetrics.PROVISIONING_REJECTED, unit=MetricUnit.Count, value=1)
        raise
    logger.append_keys(tenant_id=request.tenant_id, tier=request.tier)
    platform = function.clients
    try:
        with platform.database.connection() as conn:
            result = platform.lifecycle.create(conn, request, actor=ACTOR)
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

