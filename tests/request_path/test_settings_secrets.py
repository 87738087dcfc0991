"""Services' credentials from Secrets Manager (moto): resolved once at start through boto3 into the
same settings the inline environment gives; a missing or malformed secret is a clear ConfigError."""

from __future__ import annotations

import json
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict

from services.settings import ServiceSettings, load_for_process
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.gateway.credentials import PasswordDeriver

REGION = "eu-west-1"
ENDPOINTS = {"DATABASE_URL": "postgresql://db.example.internal:5432/saas?sslmode=require",
             "REDIS_URL": "rediss://cache.example.internal:6379/0", "AWS_REGION": REGION}


@pytest.fixture()
def secrets(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        arns = {
            "DATABASE_SECRET_ARN": client.create_secret(Name="/saas/dev/platform/services-db-login", SecretString=json.dumps(
                {"username": "tenant_provisioner_services", "password": "pw/with:odd@chars" + "x" * 30}))["ARN"],
            "CACHE_AUTH_SECRET_ARN": client.create_secret(
                Name="/saas/dev/platform/cache-auth", SecretString="tok/en+" + "t" * 57)["ARN"],
            "TENANT_DB_PASSWORD_KEY_SECRET_ARN": client.create_secret(
                Name="/saas/dev/platform/tenant-password-key", SecretString=json.dumps({"key": "k" * 64, "version": 3}))["ARN"],
        }
        yield client, arns


def test_secrets_complete_endpoint_only_urls_and_give_the_deriver(secrets):
    _, arns = secrets
    settings = ServiceSettings.from_env({**ENDPOINTS, **arns})
    db = conninfo_to_dict(settings.database_url)
    assert (db["host"], db["dbname"], db["sslmode"]) == ("db.example.internal", "saas", "require")
    assert (db["user"], db["password"]) == ("tenant_provisioner_services", "pw/with:odd@chars" + "x" * 30)
    redis = urlsplit(settings.redis_url)
    assert (redis.scheme, redis.hostname, redis.port, redis.path) == ("rediss", "cache.example.internal", 6379, "/0")
    assert unquote(redis.password) == "tok/en+" + "t" * 57
    assert settings.password_deriver.version == 3
    assert settings.password_deriver.password("t_acme") == PasswordDeriver.from_text("k" * 64, 3).password("t_acme")


def test_inline_environment_still_works_and_reads_no_secret():
    def refuse(arn):
        raise AssertionError(f"read {arn}")
    env = {"DATABASE_URL": "postgresql://me:pw@localhost/db", "REDIS_URL": "redis://:tok@localhost:6379/0",
           "TENANT_DB_PASSWORD_KEY": "k" * 40, "TENANT_DB_PASSWORD_VERSION": "2"}
    settings = ServiceSettings.from_env(env, read_secret=refuse)
    assert settings.database_url == env["DATABASE_URL"] and settings.redis_url == env["REDIS_URL"]
    assert settings.password_deriver.version == 2


@pytest.mark.parametrize("variable", ["DATABASE_SECRET_ARN", "CACHE_AUTH_SECRET_ARN", "TENANT_DB_PASSWORD_KEY_SECRET_ARN"])
def test_a_missing_secret_names_itself_and_the_role(secrets, variable):
    _, arns = secrets
    missing = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:gone-AbCdEf"
    with pytest.raises(ConfigError, match=f"cannot read secret {missing}: ResourceNotFoundException.*Pod Identity"):
        ServiceSettings.from_env({**ENDPOINTS, **arns, variable: missing})


@pytest.mark.parametrize(("variable", "value"), [
    ("DATABASE_SECRET_ARN", json.dumps({"username": "svc"})),           # no password
    ("DATABASE_SECRET_ARN", "not json"),
    ("TENANT_DB_PASSWORD_KEY_SECRET_ARN", json.dumps({"key": "short"})),  # below the key's minimum
    ("TENANT_DB_PASSWORD_KEY_SECRET_ARN", json.dumps({"key": "k" * 64, "version": "two"})),
    ("CACHE_AUTH_SECRET_ARN", " "),
])
def test_a_malformed_secret_is_a_config_error(secrets, variable, value):
    client, arns = secrets
    client.put_secret_value(SecretId=arns[variable], SecretString=value)
    with pytest.raises(ConfigError):
        ServiceSettings.from_env({**ENDPOINTS, **arns})


def test_process_start_exits_2_with_one_line(secrets, monkeypatch, capsys):
    _, arns = secrets
    for name, value in {**ENDPOINTS, **arns, "CACHE_AUTH_SECRET_ARN": arns["CACHE_AUTH_SECRET_ARN"] + "-gone"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        load_for_process()
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("error: cannot read secret")
