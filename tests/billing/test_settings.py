"""Stripe credentials: from Secrets Manager (moto) in AWS, from the environment locally; placeholders count as none."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from tenant_provisioner.billing.settings import BillingSettings
from tenant_provisioner.errors import ConfigError

KEY = "sk_test_fake_from_secrets_manager_01"


@pytest.mark.parametrize(("stored", "expected"), [(KEY, KEY), ("AbCdGeneratedPlaceholder0123456789", None)])
def test_api_key_from_secrets_manager(stored, expected):
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name=f"/saas/test/stripe/api-key-{len(stored)}",
                                                           SecretString=stored)["ARN"]
        assert BillingSettings.from_env({"STRIPE_API_KEY_SECRET_ID": arn}).api_key_value() == expected


def test_no_key_anywhere_means_no_client():
    settings = BillingSettings.from_env({})
    assert settings.api_key_value() is None and settings.client() is None


def test_local_environment_wins_and_the_webhook_secret_must_look_like_one():
    settings = BillingSettings.from_env({"STRIPE_API_KEY": "rk_test_fake_restricted_key_01",
                                         "STRIPE_API_KEY_SECRET_ID": "arn:never-read",
                                         "STRIPE_WEBHOOK_SECRET": "not-a-signing-secret"})
    assert settings.api_key_value() == "rk_test_fake_restricted_key_01"
    with pytest.raises(ConfigError, match="not configured"):
        settings.webhook_signing_secret()


def test_settings_are_validated():
    with pytest.raises(ConfigError):
        BillingSettings.from_env({"BILLING_PAYMENT_GRACE_DAYS": "seven"})
    with pytest.raises(ConfigError):
        BillingSettings(catalog_prefix="Bad-Prefix")
    assert BillingSettings(catalog_prefix="acme").meter_event_name == "acme_api_requests"


def test_the_environment_a_stack_writes_names_secrets_never_values():
    settings = BillingSettings(api_key="sk_test_local_only", api_key_secret_id="arn:key", payment_grace_days=3)
    env = settings.to_env()
    assert "sk_test_local_only" not in env.values() and env["STRIPE_API_KEY_SECRET_ID"] == "arn:key"
    assert BillingSettings.from_env(env) == BillingSettings(api_key_secret_id="arn:key", payment_grace_days=3)
