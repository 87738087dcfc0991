"""Stripe webhook endpoint behind a Lambda Function URL (auth NONE: the signature is the auth).

Thin adapter: raw body + ``Stripe-Signature`` header → `billing.webhooks`. The signature is
checked before the database is touched; the answer tells Stripe whether to retry: 200 applied
or ignored (replays, strangers), 400 bad signature or body (never retried into success), 500
when the endpoint is misconfigured or the database is unavailable (Stripe retries for 3 days).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters

from tenant_provisioner.billing import webhooks
from tenant_provisioner.errors import ConfigError, InvalidInput, TransientError
from tenant_provisioner.runtime import compose
from tenant_provisioner.runtime.lambda_handler import LambdaFunction
from tenant_provisioner.runtime.metrics import BillingMetrics
from tenant_provisioner.runtime.settings import StripeWebhookSettings

# Every outcome is an HTTP answer (below), so no typed error is turned into a rejection here.
function = LambdaFunction(namespace=BillingMetrics.NAMESPACE, rejects=(),
                          build=lambda: compose.for_stripe_webhook(StripeWebhookSettings.from_env()))
logger, metrics = function.logger, function.metrics


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error:
            raise InvalidInput("body", "not valid base64") from None
    return body.encode("utf-8")


@function.handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    method = event.get("requestContext", {}).get("http", {}).get("method", "POST")
    if method != "POST":
        metrics.add_metric(name=BillingMetrics.WEBHOOK_REJECTED, unit=MetricUnit.Count, value=1)
        return _response(405, {"error": "POST only"})
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        platform = function.clients
        secret = platform.billing.webhook_signing_secret()
        stripe_event = webhooks.verify(_raw_body(event), headers.get("stripe-signature"), secret)
    except (TransientError, parameters.exceptions.GetParameterError) as exc:
        logger.error("signing secret unavailable, Stripe will retry: %s", exc)
        metrics.add_metric(name=BillingMetrics.WEBHOOK_FAILED, unit=MetricUnit.Count, value=1)
        return _response(500, {"error": "temporarily unavailable"})
    except ConfigError as exc:
        logger.error("webhook endpoint misconfigured: %s", exc)
        metrics.add_metric(name=BillingMetrics.WEBHOOK_MISCONFIGURED, unit=MetricUnit.Count, value=1)
        return _response(500, {"error": "endpoint not configured"})
    except InvalidInput as exc:
        metrics.add_metric(name=BillingMetrics.WEBHOOK_REJECTED, unit=MetricUnit.Count, value=1)
        result = webhooks.rejected(exc)
        return _response(result.status, result.to_dict())
    try:
        with platform.database.connection() as conn:
            result = webhooks.apply(conn, stripe_event, platform.billing, platform.lifecycle)
    except (TransientError, parameters.exceptions.GetParameterError) as exc:
        logger.error("webhook event %s not applied, Stripe will retry: %s", stripe_event["id"], exc)
        metrics.add_metric(name=BillingMetrics.WEBHOOK_FAILED, unit=MetricUnit.Count, value=1)
        return _response(500, {"error": "temporarily unavailable"})
    metrics.add_metric(name=BillingMetrics.WEBHOOK_APPLIED, unit=MetricUnit.Count, value=1)
    return _response(result.status, result.to_dict())
