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
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from tenant_provisioner.billing import webhooks
from tenant_provisioner.billing.settings import BillingSettings, webhook_signing_secret
from tenant_provisioner.db import Database, database_url_from_env
from tenant_provisioner.errors import ConfigError, InvalidInput, TransientError

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "SaaS/Billing"))
_database: Database | None = None


def _db() -> Database:
    global _database
    if _database is None:
        _database = Database(database_url_from_env(application_name="stripe-webhook"), max_size=1)
    return _database


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


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    method = event.get("requestContext", {}).get("http", {}).get("method", "POST")
    if method != "POST":
        metrics.add_metric(name="WebhookRejected", unit=MetricUnit.Count, value=1)
        return _response(405, {"error": "POST only"})
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        secret = webhook_signing_secret()
        stripe_event = webhooks.verify(_raw_body(event), headers.get("stripe-signature"), secret)
    except TransientError as exc:
        logger.error("signing secret unavailable, Stripe will retry: %s", exc)
        metrics.add_metric(name="WebhookFailed", unit=MetricUnit.Count, value=1)
        return _response(500, {"error": "temporarily unavailable"})
    except ConfigError as exc:
        logger.error("webhook endpoint misconfigured: %s", exc)
        metrics.add_metric(name="WebhookMisconfigured", unit=MetricUnit.Count, value=1)
        return _response(500, {"error": "endpoint not configured"})
    except InvalidInput as exc:
        metrics.add_metric(name="WebhookRejected", unit=MetricUnit.Count, value=1)
        result = webhooks.rejected(exc)
        return _response(result.status, result.to_dict())
    try:
        with _db().connection() as conn:
            result = webhooks.apply(conn, stripe_event, BillingSettings.from_env())
    except (TransientError, parameters.exceptions.GetParameterError) as exc:
        logger.error("webhook event %s not applied, Stripe will retry: %s", stripe_event["id"], exc)
        metrics.add_metric(name="WebhookFailed", unit=MetricUnit.Count, value=1)
        return _response(500, {"error": "temporarily unavailable"})
    metrics.add_metric(name="WebhookApplied", unit=MetricUnit.Count, value=1)
    return _response(result.status, result.to_dict())
