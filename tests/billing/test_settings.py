"""Stripe credentials: from Secrets Manager (moto) in AWS, from the environment locally; placeholders count as none."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from tenant_provisioner.billing.settings import BillingSettings, api_key, stripe_client, webhook_signing_secret
from tenant_provisioner.errors import ConfigError

KEY = "sk_test_fake_from_secrets_manager_01"


@pytest.fixture()
def no_local_values(monkeypatch):
    for var in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_KEY_SECRET_ID", "STRIPE_WEBHOOK_SECRET_ID"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(("stored", "expected"), [(KEY, KEY), ("AbCdGeneratedPlaceholder0123456789", None)])
def test_api_key_from_secrets_manager(no_local_values, monkeypatch, stored, expected):
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name=f"/saas/test/stripe/api-key-{len(stored)}",
                                                           SecretString=stored)["ARN"]
        monkeypatch.setenv("STRIPE_API_KEY_SECRET_ID", arn)
        assert api_key() == expected


def test_no_key_anywhere_means_no_client(no_local_values):
    assert api_key() is None and stripe_client(BillingSettings()) is None


def test_local_environment_wins_and_the_webhook_secret_must_look_like_one(no_local_values, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "rk_test_fake_restricted_key_01")
    assert api_key() == "rk_test_fake_restricted_key_01"
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "not-a-signing-secret")
    with pytest.raises(ConfigError, match="not configured"):
        webhook_signing_secret()


def test_settings_are_validated(monkeypatch):
    monkeypatch.setenv("BILLING_PAYMENT_GRACE_DAYS", "seven")
    with pytest.raises(ConfigError):
        BillingSettings.from_env()
    with pytest.raises(ConfigError):
        BillingSettings(catalog_prefix="Bad-Prefix")
    assert BillingSettings(catalog_prefix="acme").meter_event_name == "acme_api_requests"
