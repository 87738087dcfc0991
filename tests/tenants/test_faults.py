"""Fault injection: a failure after any step leaves nothing reachable and a retry converges; a
process killed between steps leaves an unusable tenant that the next create completes."""

from __future__ import annotations

import json

import boto3
import psycopg
import pytest
from moto import mock_aws

from tenant_provisioner import audit
from tenant_provisioner.gateway.credentials import PasswordDeriver
from tenant_provisioner.tenants import provisioning, records
from tenant_provisioner.runtime import compose
from tenant_provisioner.tenants.provisioning import CreateRequest
from tenant_provisioner.secrets import AwsSecretStore
from tests.request_path.test_keys_cli import _scram_matches

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later

PREFIX = "/saas/test"
DERIVER = PasswordDeriver.from_text("k" * 48)


class Boom(RuntimeError):
    pass


class Killed(BaseException):
    """Stands for the process dying: not an Exception, so the pipeline undoes nothing."""


class FailingStep:
    """Fails at position `at` of the pipeline, remembering the names the tenant had got by then."""

    name = "fault"

    def __init__(self, at: int, error: BaseException) -> None:
        self.at = at
        self.error = error
        self.names: list[str] = []

    def apply(self, ctx):
        if ctx.tenant is not None:
            self.names = [ctx.tenant.schema_name, ctx.tenant.role_name]
        raise self.error

    def undo(self, ctx):
        pass


def _steps(fault: FailingStep | None = None):
    steps = [provisioning.DatabaseStep(), provisioning.PasswordStep(lambda: DERIVER), provisioning.ActivateStep()]
    return steps if fault is None else [*steps[:fault.at], fault, *steps[fault.at:]]


def _request(tenant_id):
    return CreateRequest.parse({"tenant_id": tenant_id, "tier": "starter", "admin_email": "a@example.com"})


def _footprint(conn, tenant_id, names):
    """Everything the tenant could be reached through: control row, its schema and role."""
    row = conn.execute("SELECT state FROM control.tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
    schemas, roles = conn.execute("SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = ANY(%s)),"
                                  " (SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s))",
                                  (names, names)).fetchone()
    return {"row": row, "schemas": schemas, "roles": roles}


@pytest.mark.parametrize("fault_at", [1, 2, 3])  # after the database, password and activation steps
def test_failure_after_each_step_leaves_nothing_and_a_retry_converges(db, tenant_ids, fault_at):
    tenant_id = tenant_ids("fault")
    fault = FailingStep(fault_at, Boom("injected"))
    with db.connection() as conn:
        with pytest.raises(Boom):
            lifecycle.create(conn, _request(tenant_id), actor="t", steps=_steps(fault))
        assert len(fault.names) == 2
        assert _footprint(conn, tenant_id, fault.names) == {
            "row": None, "schemas": 0, "roles": 0}
        failures = audit.entries(conn, tenant_id, action="tenant.provisioning_failed")
        assert [e["detail"]["step"] for e in failures] == ["fault"]

        result = lifecycle.create(conn, _request(tenant_id), actor="t", steps=_steps())
        assert result.created and result.tenant.state == "active"
        assert _footprint(conn, tenant_id, [result.tenant.schema_name]) == {
            "row": ("active",), "schemas": 1, "roles": 1}


@pytest.mark.parametrize("killed_at", [1, 2])  # after the database step, after the password step
def test_killed_between_steps_is_unreachable_and_the_next_create_completes(tenant_db, db, tenant_ids, killed_at):
    tenant_id = tenant_ids("killed")
    with db.connection() as conn:
        with pytest.raises(Killed):
            lifecycle.create(conn, _request(tenant_id), actor="t", steps=_steps(FailingStep(killed_at, Killed())))
        tenant = records.require(conn, tenant_id)
        assert tenant.state == "provisioning"
        assert tenant_db.verifier(tenant.role_name) is None  # no password until activation: no login

        result = lifecycle.create(conn, _request(tenant_id), actor="t", steps=_steps())
        assert result.created and result.tenant.schema_name == tenant.schema_name
        assert _footprint(conn, tenant_id, [tenant.schema_name]) == {
            "row": ("active",), "schemas": 1, "roles": 1}
    with psycopg.connect(tenant_db.login_url(tenant.role_name)) as app:
        assert app.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_the_role_gets_the_derived_password_and_no_secret_is_written(tenant_db, db, tenant_ids):
    """Services derive the password from their key (gateway/credentials.py): nothing per tenant is
    stored, even with a secret store configured (it only deletes legacy secrets at offboarding)."""
    tenant_id = tenant_ids("derived")
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        stored = compose.lifecycle(secret_store=AwsSecretStore(PREFIX, client=client), password_deriver=lambda: DERIVER)
        with db.connection() as conn:
            result = stored.create(conn, _request(tenant_id), actor="t")
        assert client.list_secrets()["SecretList"] == []
    password = DERIVER.password(result.tenant.role_name)
    assert password not in json.dumps(result.to_dict()) and "secret_name" not in result.to_dict()
    with tenant_db.admin() as conn:
        verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                                (result.tenant.role_name,)).fetchone()[0]
    assert _scram_matches(verifier, password)
