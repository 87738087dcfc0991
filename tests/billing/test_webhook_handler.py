"""The webhook Lambda: Function URL event in, HTTP answer out; signing secret from Secrets Manager (moto)."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from moto import mock_aws

from lambdas.stripe_webhook import handler as webhook_lambda
from tenant_provisioner.billing.accounts import load_account
from tests.billing.support import WEBHOOK_SECRET, create_tenant
from tests.billing.stripe_server import sign_webhook
from tests.support.lambda_context import LambdaContext


@pytest.fixture()
def lambda_env(monkeypatch, control_url, db, stripe_env):
    monkeypatch.setenv("DATABASE_URL", control_url)
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET")
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name="/saas/test/stripe/webhook-signing-secret",
                                                           SecretString=WEBHOOK_SECRET)["ARN"]
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_ID", arn)
        webhook_lambda.function.forget()   # a fresh container
        yield arn
    webhook_lambda.function.forget()


def url_event(body: bytes, signature: str | None, *, base64_body: bool = False, method: str = "POST") -> dict:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["stripe-signature"] = signature
    return {"version": "2.0", "rawPath": "/", "headers": headers,
            "requestContext": {"http": {"method": method, "path": "/"}},
            "body": base64.b64encode(body).decode() if base64_body else body.decode(),
            "isBase64Encoded": base64_body}


def call(event):
    response = webhook_lambda.handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_signed_event_is_applied_once(lambda_env, fake_stripe, conn, client, settings, synced):
    create_tenant(conn, client, settings)
    account = load_account(conn, "acme-corp")
    event = fake_stripe.event("invoice.payment_failed",
                              fake_stripe.invoice(account.stripe_customer_id, account.stripe_subscription_id,
                                                  status="open"))
    body = json.dumps(event).encode()
    status, answer = call(url_event(body, sign_webhook(body, WEBHOOK_SECRET), base64_body=True))
    assert status == 200 and answer["outcome"].startswith("grace until")
    status, answer = call(url_event(body, sign_webhook(body, WEBHOOK_SECRET)))
    assert (status, answer["outcome"]) == (200, "ignored: event already processed")


def test_bad_or_missing_signature_is_400(lambda_env, fake_stripe, conn):
    body = json.dumps(fake_stripe.event("invoice.paid", {"id": "in_1", "customer": "cus_1"})).encode()
    assert call(url_event(body, None))[0] == 400
    assert call(url_event(body, sign_webhook(body, "whsec_wrong")))[0] == 400
    assert call(url_event(b"not json", sign_webhook(b"not json", WEBHOOK_SECRET)))[0] == 400
    assert conn.execute("SELECT count(*) FROM control.stripe_webhook_events").fetchone()[0] == 0


def test_placeholder_secret_is_a_500_so_stripe_retries_after_setup(lambda_env, fake_stripe, monkeypatch):
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name="/saas/test/stripe/placeholder",
                                                           SecretString="GeneratedPlaceholder123")["ARN"]
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_ID", arn)
        body = b"{}"
        assert call(url_event(body, sign_webhook(body, WEBHOOK_SECRET))) == (500, {"error": "endpoint not configured"})


def test_only_post(lambda_env):
    assert call(url_event(b"", None, method="GET"))[0] == 405


def test_database_unavailable_is_a_500_so_stripe_retries(lambda_env, fake_stripe, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    body = json.dumps(fake_stripe.event("invoice.paid", {"id": "in_1", "customer": "cus_1"})).encode()
    status, answer = call(url_event(body, sign_webhook(body, WEBHOOK_SECRET)))
    assert (status, answer) == (500, {"error": "temporarily unavailable"})
