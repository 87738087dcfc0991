"""Settings classes: URLs locally, secrets (moto) in AWS; bad or missing config is a typed error;
what a stack writes (`to_env`) is what the handler reads back (`from_env`)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict

from tenant_provisioner.billing.settings import BillingSettings
from tenant_provisioner.db import DatabaseSettings
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.runtime.settings import (BudgetBreakerSettings, BudgetSettings, EnforceLimitsSettings,
                                                 NotifierSettings, ProvisionTenantSettings, RedisSettings,
                                                 SecretStoreSettings, ServiceCredentialsSettings,
                                                 StripeWebhookSettings, TenantOperationsSettings)


def test_urls_win_when_given():
    assert DatabaseSettings.from_env({"DATABASE_URL": "postgresql://x@h/db"}).conninfo() == "postgresql://x@h/db"
    client = RedisSettings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/0"}).client()
    assert client.connection_pool.connection_kwargs["host"] == "127.0.0.1"


def test_secrets_give_tls_connections_without_the_values_anywhere_else():
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        db_arn = secrets.create_secret(Name="rds-master", SecretString=json.dumps(
            {"host": "db.internal", "port": 5432, "username": "master", "password": "pw-db-1"}))["ARN"]
        cache_arn = secrets.create_secret(Name="cache-auth", SecretString="pw-cache-1")["ARN"]
        database = DatabaseSettings.from_env({"DATABASE_SECRET_ARN": db_arn, "DATABASE_NAME": "app"})
        params = conninfo_to_dict(database.conninfo())
        client = RedisSettings.from_env({"REDIS_HOST": "cache.internal", "REDIS_PORT": "6380",
                                         "REDIS_AUTH_SECRET_ARN": cache_arn}).client()
    assert params == {"host": "db.internal", "port": "5432", "user": "master", "password": "pw-db-1",
                      "dbname": "app", "sslmode": "require"}
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["password"]) == ("cache.internal", 6380, "pw-cache-1")
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"


def test_missing_settings_are_config_errors():
    with pytest.raises(ConfigError, match="DATABASE_URL or DATABASE_SECRET_ARN"):
        DatabaseSettings.from_env({})
    with pytest.raises(ConfigError, match="REDIS_URL"):
        RedisSettings.from_env({"REDIS_HOST": "cache.internal"}).client()
    with pytest.raises(ConfigError, match="needs Redis"):
        EnforceLimitsSettings.from_env({"DATABASE_URL": "postgresql://x@h/db", "LIMITS_SENDER_EMAIL": "a@b.example",
                                        "OPS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:ops"})
    with pytest.raises(ConfigError, match="LIMITS_SENDER_EMAIL"):
        NotifierSettings.from_env({"OPS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:ops"})
    with pytest.raises(ConfigError, match="TENANT_SECRETS_PREFIX"):  # offboarding deletes legacy tenant secrets
        TenantOperationsSettings.from_env({"DATABASE_URL": "postgresql://x@h/db"})
    with pytest.raises(ConfigError, match="REDIS_PORT"):
        RedisSettings.from_env({"REDIS_HOST": "cache.internal", "REDIS_PORT": "six"})


DATABASE = DatabaseSettings(secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:rds", name="app",
                            provisioner_role="prov")


@pytest.mark.parametrize("settings", [
    ProvisionTenantSettings(database=DATABASE, billing=BillingSettings(api_key_secret_id="arn:stripe-key"),
                            credentials=ServiceCredentialsSettings(password_key_secret_arn="arn:key")),
    TenantOperationsSettings(database=DATABASE, secrets=SecretStoreSettings(prefix="/saas/dev")),
    EnforceLimitsSettings(database=DATABASE, redis=RedisSettings(host="cache", port=6380, auth_secret_arn="arn:auth"),
                          notifier=NotifierSettings(sender="limits@example.com", ops_topic_arn="arn:ops"),
                          billing=BillingSettings(payment_grace_days=3)),
    BudgetBreakerSettings(database=DATABASE, budget=BudgetSettings(
        account_id="111111111111", budget_name="saas-dev-platform", ops_topic_arn="arn:ops",
        nonprod_db_instances=("a", "b"), nonprod_nodegroups=("c/d",))),
    StripeWebhookSettings(database=DATABASE, billing=BillingSettings(webhook_secret_id="arn:whsec")),
], ids=lambda s: type(s).__name__)
def test_what_a_stack_writes_is_what_the_handler_reads(settings):
    assert type(settings).from_env(settings.to_env()) == settings
