"""The provisioning Lambda handler against real PostgreSQL, with Secrets Manager from moto."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict

from tenant_provisioner.tiers import load_tiers
from tests.support.lambda_context import LambdaContext as Context

PREFIX = "/saas/test"


@pytest.fixture()
def handler(tenant_db, monkeypatch):
    with mock_aws():
        params = conninfo_to_dict(tenant_db.url)
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="/saas/test/rds-master", SecretString=json.dumps({
            "host": params["host"], "port": int(params.get("port", 5432)), "username": params["user"],
            "password": "", "dbname": "ignored"}))["ARN"]
        for name, value in {"DATABASE_SECRET_ARN": arn, "DATABASE_NAME": params["dbname"],
                            "DATABASE_SSLMODE": "disable", "TENANT_PROVISIONER_ROLE": tenant_db.provisioner_role,
                            "TENANT_SECRETS_PREFIX": PREFIX, "POWERTOOLS_METRICS_NAMESPACE": "Test"}.items():
            monkeypatch.setenv(name, value)
        from lambdas.provision_tenant import handler as module

        module.function.forget()   # a fresh container
        yield module, client
        module.function.forget()


@pytest.fixture()
def operations(handler, tenant_db, monkeypatch):
    """The tenant_operations function, in the same environment (DATABASE_URL: no TLS locally)."""
    monkeypatch.setenv("DATABASE_URL", tenant_db.url)
    from lambdas.tenant_operations import handler as module

    module.function.forget()   # a fresh container
    yield module
    module.function.forget()


def _signup(tenant_id="lambda-co", **overrides):
    return {"tenant_id": tenant_id, "tier": "pro", "admin_email": "a@lambda.example",
            "company_name": "Lambda Co", **overrides}


def test_direct_invoke_provisions_and_writes_no_secret(handler):
    module, client = handler
    result = module.handler(_signup(), Context())
    assert result["status"] == "active" and result["created"] is True and result["tier"] == "pro"
    assert "secret_name" not in result
    assert [s["Name"] for s in client.list_secrets()["SecretList"]] == ["/saas/test/rds-master"]
    again = module.handler(_signup(), Context())
    assert again["created"] is False and again["schema"] == result["schema"]


def test_eventbridge_signup_event(handler):
    module, _ = handler
    event = {"version": "0", "source": "saas.signup", "detail-type": "tenant.signup",
             "detail": _signup("event-co")}
    assert module.handler(event, Context())["tenant_id"] == "event-co"


@pytest.mark.parametrize(("payload", "code", "field"), [
    (_signup("bad;name"), "invalid_input", "tenant_id"),
    (_signup(tier="gold"), "invalid_input", "tier"),
    (_signup(admin_email="nope"), "invalid_input", "admin_email"),
    ({}, "invalid_input", "tenant_id"),
])
def test_bad_input_is_a_structured_error_not_an_exception(handler, payload, code, field):
    module, _ = handler
    result = module.handler(payload, Context())
    assert result["status"] == "rejected" and result["error"]["code"] == code and result["error"]["field"] == field


def test_conflict_is_rejected_and_a_dead_database_raises(handler, monkeypatch):
    module, _ = handler
    module.handler(_signup("conflict-co"), Context())
    conflict = module.handler(_signup("conflict-co", tier="business"), Context())
    assert conflict["error"]["code"] == "tenant_conflict"
    module.function.forget()
    monkeypatch.setenv("DATABASE_NAME", "no_such_database_here")
    from tenant_provisioner.errors import TransientError

    with pytest.raises(TransientError):
        module.handler(_signup("later-co"), Context())


def test_scheduled_event_refills_the_warm_pool(handler, operations):
    module, _ = handler
    result = operations.handler({"action": "refill_warm_pool", "size": 2}, Context())
    assert result["ran"] is True and result["size"] == 2
    assert module.handler(_signup("pooled-co"), Context())["created"] is True


def test_scheduled_refill_publishes_tenants_by_state(handler, operations, tenant_db, capsys):
    module, _ = handler
    module.handler(_signup("counted-co"), Context())
    capsys.readouterr()
    result = operations.handler({"action": "refill_warm_pool", "size": 0}, Context())
    counts = result["tenants_by_state"]
    assert set(counts) == {"provisioning", "active", "suspended", "offboarding", "offboarded"}
    assert counts["active"] >= 1 and counts["provisioning"] == 0
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    gauges = {m["state"]: m["Tenants"] for m in emitted if "Tenants" in m}
    assert gauges == {state: [float(n)] for state, n in counts.items()}  # one gauge per state, zeros too
    # capacity: the live tenants' tier connection counts summed (counted-co is on pro: 20), from the
    # tiers: every role has the same CONNECTION LIMIT (issue 10.6)
    with tenant_db.database() as db, db.connection() as conn:
        tiers = [row[0] for row in conn.execute("SELECT tier FROM control.tenants WHERE state = 'active'")]
    expected = sum(load_tiers().get(tier).db_connections for tier in tiers)
    assert result["tenant_connection_limits"] == expected >= 20
    assert [m["TenantConnectionLimits"] for m in emitted if "TenantConnectionLimits" in m] == [[float(expected)]]


def test_daily_event_drops_offboardings_past_retention(handler, operations, tenant_db, tmp_path):
    module, client = handler
    module.handler(_signup("leaving-co"), Context())
    legacy = client.create_secret(Name=f"{PREFIX}/tenants/leaving-co", SecretString="{}")["ARN"]  # an earlier version's
    lifecycle = module.function.clients.lifecycle
    with tenant_db.database() as db, db.connection() as conn:
        lifecycle.offboard(conn, "leaving-co", actor="t", export_to=str(tmp_path), retention_days=30)
        assert operations.handler({"action": "drop_due_offboardings"}, Context()) == {"dropped": [], "failed": {}}
        conn.execute("UPDATE control.tenants SET drop_after = now() WHERE tenant_id = 'leaving-co'")
    assert operations.handler({"action": "drop_due_offboardings"}, Context()) == {"dropped": ["leaving-co"],
                                                                                    "failed": {}}
    assert "DeletedDate" in client.describe_secret(SecretId=legacy)


def test_operator_actions_init_and_migrate(operations):
    initialised = operations.handler({"action": "init"}, Context())
    assert initialised["applied"] == [] and initialised["version"] >= 1 and initialised["unhardened"] == []
    migrated = operations.handler({"action": "migrate", "concurrency": 2}, Context())
    assert migrated["pending"] == 0 and migrated["failed"] == {}
    unknown = operations.handler({"action": "rm -rf"}, Context())
    assert unknown["status"] == "rejected" and unknown["error"]["field"] == "action"
    for concurrency in (0, "4"):
        bad = operations.handler({"action": "migrate", "concurrency": concurrency}, Context())
        assert bad["error"]["field"] == "concurrency"


@pytest.mark.parametrize("action", ["refill_warm_pool", "init", "migrate", "drop_due_offboardings"])
def test_the_provisioning_function_runs_no_operator_action(handler, tenant_db, action):
    """Issue 10: a signup-shaped event with an `action` key ran operator actions, so the API's
    invoker role could do what only operators should."""
    module, _ = handler
    with tenant_db.database() as db, db.connection() as conn:
        pool = conn.execute("SELECT count(*) FROM control.warm_schemas").fetchone()
        result = module.handler({**_signup("smuggler-co"), "action": action, "size": 3}, Context())
        assert result["status"] == "rejected" and result["error"]["field"] == "action"
        assert conn.execute("SELECT count(*) FROM control.warm_schemas").fetchone() == pool
        assert conn.execute("SELECT count(*) FROM control.tenants WHERE tenant_id = 'smuggler-co'").fetchone() == (0,)


@pytest.mark.parametrize("event", [None, "init", ["init"], 42, {"action": None}, {"action": ["init"]},
                                   {"action": {"name": "init"}}, {"detail-type": "tenant.signup", "detail": "x"}])
def test_events_that_are_not_objects_or_carry_odd_actions_are_rejected_not_type_errors(handler, operations, event):
    module, _ = handler
    for function in (module, operations):
        result = function.handler(event, Context())
        assert result["status"] == "rejected" and result["error"]["code"] == "invalid_input"


def test_init_applies_the_services_login_and_sync_passwords_derives_tenant_passwords(handler, operations, tenant_db,
                                                                                      monkeypatch):
    from psycopg import sql

    from tenant_provisioner.db import admin_connect
    from tenant_provisioner.gateway.credentials import PasswordDeriver
    from tests.request_path.test_keys_cli import _scram_matches

    module, client = handler
    assert operations.handler({"action": "sync_passwords"}, Context())["error"]["code"] == "config_error"
    module.handler(_signup("derived-co"), Context())
    login = f"{tenant_db.provisioner_role}_services"
    login_arn = client.create_secret(Name="/saas/test/platform/services-db-login",
                                     SecretString=json.dumps({"username": login, "password": "s" * 48}))["ARN"]
    key_arn = client.create_secret(Name="/saas/test/platform/tenant-password-key",
                                   SecretString=json.dumps({"key": "k" * 64, "version": 2}))["ARN"]
    monkeypatch.setenv("SERVICES_DATABASE_SECRET_ARN", login_arn)
    monkeypatch.setenv("TENANT_DB_PASSWORD_KEY_SECRET_ARN", key_arn)
    operations.function.forget()   # settings are read once per container: a new one sees the ARNs

    def verifier(role):
        with admin_connect(tenant_db.url) as conn:
            return conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()[0]
    try:
        assert operations.handler({"action": "init"}, Context())["services_login"] == login
        assert _scram_matches(verifier(login), "s" * 48)
        client.put_secret_value(SecretId=login_arn, SecretString=json.dumps({"username": login, "password": "t" * 48}))
        operations.handler({"action": "init"}, Context())          # a rotated secret applies on the next init
        assert _scram_matches(verifier(login), "t" * 48)
        synced = operations.handler({"action": "sync_passwords"}, Context())
        assert synced["roles_updated"] >= 1 and synced["version"] == 2
        with admin_connect(tenant_db.url) as conn:
            role = conn.execute("SELECT role_name FROM control.tenants WHERE tenant_id = 'derived-co'").fetchone()[0]
        assert _scram_matches(verifier(role), PasswordDeriver.from_text("k" * 64, 2).password(role))
    finally:
        with admin_connect(tenant_db.url) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


def test_new_tenants_get_passwords_derived_from_the_current_services_key(handler, tenant_db, monkeypatch):
    from tenant_provisioner.db import admin_connect
    from tenant_provisioner.gateway.credentials import PasswordDeriver
    from tests.request_path.test_keys_cli import _scram_matches

    module, client = handler
    key_arn = client.create_secret(Name="/saas/test/platform/tenant-password-key",
                                   SecretString=json.dumps({"key": "k" * 64, "version": 1}))["ARN"]
    monkeypatch.setenv("TENANT_DB_PASSWORD_KEY_SECRET_ARN", key_arn)
    module.function.forget()

    def check(tenant_id, deriver):
        result = module.handler(_signup(tenant_id), Context())
        password = deriver.password(result["role"])
        with admin_connect(tenant_db.url) as conn:
            verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (result["role"],)).fetchone()[0]
        assert _scram_matches(verifier, password)

    check("derived-one", PasswordDeriver.from_text("k" * 64, 1))
    # A rotated key applies to the next signup without a new container.
    client.put_secret_value(SecretId=key_arn, SecretString=json.dumps({"key": "n" * 64, "version": 2}))
    check("derived-two", PasswordDeriver.from_text("n" * 64, 2))
