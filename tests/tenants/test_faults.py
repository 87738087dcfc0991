"""Fault injection: a failure after any step leaves nothing reachable and a retry converges; a
process killed between steps leaves an unusable tenant that the next create completes."""

from __future__ import annotations

import boto3
import psycopg
import pytest
from moto import mock_aws

from tenant_provisioner import audit, lifecycle, pipeline
from tenant_provisioner.pipeline import CreateRequest, DbEndpoint
from tenant_provisioner.secrets import AwsSecretStore

PREFIX = "/saas/test"


class Boom(RuntimeError):
    pass


class Killed(BaseException):
    """Stands for the process dying: not an Exception, so the pipeline undoes nothing."""


class FailingStep:
    name = "fault"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def apply(self, ctx):
        raise self.error

    def undo(self, ctx):
        pass


@pytest.fixture()
def store():
    with mock_aws():
        yield AwsSecretStore(PREFIX, client=boto3.client("secretsmanager", region_name="us-east-1"))


def _steps(store, fault_at: int | None, error: BaseException):
    steps = [pipeline.DatabaseStep(), pipeline.SecretStep(store, DbEndpoint("db.internal", 5432, "app")),
             pipeline.ActivateStep()]
    if fault_at is not None:
        steps.insert(fault_at, FailingStep(error))
    return steps


def _request(tenant_id):
    return CreateRequest.parse({"tenant_id": tenant_id, "tier": "starter", "admin_email": "a@example.com"})


def _footprint(conn, tenant_db, store, tenant_id):
    """Everything a tenant could be reached through: control row, schemas, roles, secret."""
    row = conn.execute("SELECT state FROM control.tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
    schemas = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_%%'").fetchone()[0]
    roles = conn.execute(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        " JOIN pg_roles r ON r.oid = m.member WHERE g.rolname = %s AND r.rolname LIKE 't\\_%%'",
        (f"{tenant_db.provisioner_role}_tenants",)).fetchone()[0]
    return {"row": row, "schemas": schemas, "roles": roles, "secret": store.exists(tenant_id)}


@pytest.mark.parametrize("fault_at", [1, 2, 3])
def test_failure_after_each_step_leaves_nothing_and_a_retry_converges(fresh_tenant_db, store, fault_at):
    tenant_id = "fault-co"
    with fresh_tenant_db.database() as db, db.connection() as conn:
        with pytest.raises(Boom):
            lifecycle.create(conn, _request(tenant_id), actor="t", steps=_steps(store, fault_at, Boom("injected")))
        assert _footprint(conn, fresh_tenant_db, store, tenant_id) == {
            "row": None, "schemas": 0, "roles": 0, "secret": False}
        failures = audit.entries(conn, tenant_id, action="tenant.provisioning_failed")
        assert [e["detail"]["step"] for e in failures] == ["fault"]

        result = lifecycle.create(conn, _request(tenant_id), actor="t", steps=_steps(store, None, Boom("unused")))
        assert result.created and result.tenant.state == "active"
        assert _footprint(conn, fresh_tenant_db, store, tenant_id) == {
            "row": ("active",), "schemas": 1, "roles": 1, "secret": True}


@pytest.mark.parametrize("killed_at", [1, 2])  # after the database step, after the secret step
def test_killed_between_steps_is_unreachable_and_the_next_create_completes(fresh_tenant_db, store, killed_at):
    tenant_id = "killed-co"
    with fresh_tenant_db.database() as db, db.connection() as conn:
        with pytest.raises(Killed):
            lifecycle.create(conn, _request(tenant_id), actor="t", steps=_steps(store, killed_at, Killed()))
        tenant = lifecycle.get(conn, tenant_id)
        assert tenant.state == "provisioning"
        with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
            psycopg.connect(fresh_tenant_db.login_url(tenant.role_name))

        result = lifecycle.create(conn, _request(tenant_id), actor="t", steps=_steps(store, None, Killed()))
        assert result.created and result.tenant.schema_name == tenant.schema_name
        assert _footprint(conn, fresh_tenant_db, store, tenant_id) == {
            "row": ("active",), "schemas": 1, "roles": 1, "secret": True}
    with psycopg.connect(fresh_tenant_db.login_url(tenant.role_name)) as app:
        assert app.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_the_secret_holds_working_credentials_and_no_password_is_returned(fresh_tenant_db, store):
    import json

    with fresh_tenant_db.database() as db, db.connection() as conn:
        result = lifecycle.create(conn, _request("secret-co"), actor="t", steps=_steps(store, None, Boom("x")))
    value = json.loads(store._client.get_secret_value(SecretId=f"{PREFIX}/tenants/secret-co")["SecretString"])
    assert value["user"] == result.tenant.role_name and value["schema"] == result.tenant.schema_name
    assert value["password"] not in json.dumps(result.to_dict())
    with fresh_tenant_db.admin() as conn:
        verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                                (result.tenant.role_name,)).fetchone()[0]
    assert verifier.startswith("SCRAM-SHA-256$") and value["password"] not in verifier


def test_a_leftover_secret_of_an_undone_attempt_is_replaced(fresh_tenant_db, store):
    """An earlier attempt's secret survived its undo (AWS failed during the undo): the retry,
    which gets a new role, must not keep credentials that name the old one."""
    import json

    store.put("orphan-co", {"user": "t_0000000000000000", "password": "stale"})
    with fresh_tenant_db.database() as db, db.connection() as conn:
        result = lifecycle.create(conn, _request("orphan-co"), actor="t", steps=_steps(store, None, Boom("x")))
    value = json.loads(store._client.get_secret_value(SecretId=f"{PREFIX}/tenants/orphan-co")["SecretString"])
    assert value["user"] == result.tenant.role_name and value["password"] != "stale"
