"""Connection settings of the limits Lambdas: URLs locally, secrets (moto) in AWS; bad config is typed."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict

from tenant_provisioner.errors import ConfigError
from tenant_provisioner.db import database_url_from_env
from tenant_provisioner.runtime.clients import redis_client


def test_urls_win_when_given():
    assert database_url_from_env({"DATABASE_URL": "postgresql://x@h/db"}) == "postgresql://x@h/db"
    client = redis_client({"REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert client.connection_pool.connection_kwargs["host"] == "127.0.0.1"


def test_secrets_give_tls_connections_without_the_values_anywhere_else():
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        db_arn = secrets.create_secret(Name="rds-master", SecretString=json.dumps(
            {"host": "db.internal", "port": 5432, "username": "master", "password": "pw-db-1"}))["ARN"]
        cache_arn = secrets.create_secret(Name="cache-auth", SecretString="pw-cache-1")["ARN"]
        params = conninfo_to_dict(database_url_from_env({"DATABASE_SECRET_ARN": db_arn, "DATABASE_NAME": "app"}))
        client = redis_client({"REDIS_HOST": "cache.internal", "REDIS_PORT": "6380", "REDIS_AUTH_SECRET_ARN": cache_arn})
    assert params == {"host": "db.internal", "port": "5432", "user": "master", "password": "pw-db-1",
                      "dbname": "app", "sslmode": "require"}
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["password"]) == ("cache.internal", 6380, "pw-cache-1")
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"


def test_missing_settings_are_config_errors():
    with pytest.raises(ConfigError, match="DATABASE_URL or DATABASE_SECRET_ARN"):
        database_url_from_env({})
    with pytest.raises(ConfigError, match="REDIS_URL"):
        redis_client({"REDIS_HOST": "cache.internal"})
