"""Every lifecycle operation against real PostgreSQL."""

from __future__ import annotations

import json

import psycopg
import pytest

from tenant_provisioner import audit, migrations
from tenant_provisioner.tenants import records, schema
from tenant_provisioner.runtime import compose
from tenant_provisioner.errors import InvalidInput, TenantConflict, TenantNotFound
from tenant_provisioner.tenants.events import LifecycleListener, TenantEvents
from tenant_provisioner.tenants.lifecycle import Lifecycle
from tenant_provisioner.tenants.provisioning import CreateRequest
from tenant_provisioner.tiers import load_tiers

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later

ACTOR = "test"


def _create(conn, tenant_id, tier="pro"):
    return lifecycle.create(conn, CreateRequest.parse(
        {"tenant_id": tenant_id, "tier": tier, "admin_email": "admin@example.com", "company_name": "Ex"}),
        actor=ACTOR)


def _role(conn, role):
    return conn.execute("SELECT rolcanlogin, rolconnlimit, rolconfig FROM pg_roles WHERE rolname = %s",
                        (role,)).fetchone()


def test_create_builds_an_opaque_schema_and_role_with_the_common_connection_limit(db, tenant_ids):
    tenant_id = tenant_ids()
    with db.connection() as conn:
        result = _create(conn, tenant_id)
        data = result.to_dict()
        assert data["created"] is True and data["status"] == "active" and data["tier"] == "pro"
        assert data["schema"].startswith("t_") and tenant_id not in data["schema"]
        assert data["schema_version"] == migrations.latest_version("tenant") and data["duration_ms"] > 0
        can_login, limit, config = _role(conn, data["role"])
        assert can_login and limit == load_tiers().role_connection_limit == 50  # business's, whatever the tier
        assert config == [f"search_path={data['schema']}"]
        owner = conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
                             (data["schema"],)).fetchone()[0]
        assert owner == db.provisioner_role
        assert [e["action"] for e in audit.entries(conn, tenant_id)] == ["tenant.created"]


def test_create_is_idempotent_and_refuses_another_tier(db, tenant_ids):
    tenant_id = tenant_ids()
    with db.connection() as conn:
        first = _create(conn, tenant_id)
        again = _create(conn, tenant_id)
        assert again.created is False and again.tenant.schema_name == first.tenant.schema_name
        with pytest.raises(TenantConflict, match="already exists with tier 'pro'"):
            _create(conn, tenant_id, tier="business")
        assert len(audit.entries(conn, tenant_id, action="tenant.created")) == 1


def test_suspend_disables_login_and_ends_sessions_then_resume(tenant_db, db, tenant_ids):
    """Login is the password alone (every tenant role is LOGIN): suspended, the role has none, so
    password login (all RDS offers) fails; test_hostile_tenant.py logs in with passwords."""
    tenant_id = tenant_ids()
    with db.connection() as conn:
        tenant = _create(conn, tenant_id).tenant
        schema.set_password(conn, tenant.role_name, "the-password")
    stored = tenant_db.verifier(tenant.role_name)
    assert stored is not None
    session = psycopg.connect(tenant_db.login_url(tenant.role_name), autocommit=True)
    with db.connection() as conn:
        suspended = lifecycle.suspend(conn, tenant_id, reason="payment failed", actor=ACTOR)
        assert suspended.state == "suspended" and suspended.suspended_reason == "payment failed"
        assert _role(conn, tenant.role_name)[0] is True  # as every tenant role: pg_roles tells nothing
        lifecycle.suspend(conn, tenant_id, reason="again", actor=ACTOR)  # no-op, no second entry
        assert len(audit.entries(conn, tenant_id, action="tenant.suspended")) == 1
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    assert tenant_db.verifier(tenant.role_name) is None
    with db.connection() as conn:
        resumed = lifecycle.resume(conn, tenant_id, actor=ACTOR)
        assert resumed.state == "active" and resumed.suspended_reason is None
    assert tenant_db.verifier(tenant.role_name) == stored
    with psycopg.connect(tenant_db.login_url(tenant.role_name)) as again:
        assert again.execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_change_tier_leaves_the_role_as_every_other(db, tenant_ids):
    """The tier's connection count moves in the pools and the reaper (test_hostile_tenant.py), not
    in the role, whose CONNECTION LIMIT would tell every tenant the tier."""
    tenant_id = tenant_ids()
    with db.connection() as conn:
        tenant = _create(conn, tenant_id, tier="starter").tenant
        before = _role(conn, tenant.role_name)
        changed = lifecycle.change_tier(conn, tenant_id, "business", actor=ACTOR)
        assert changed.tier == "business" and _role(conn, tenant.role_name) == before
        detail = audit.entries(conn, tenant_id, action="tenant.tier_changed")[0]["detail"]
        assert detail == {"from": "starter", "to": "business", "origin": "platform"}
        with pytest.raises(InvalidInput, match="unknown tier"):
            lifecycle.change_tier(conn, tenant_id, "platinum", actor=ACTOR)


def test_get_list_and_unknown_tenants(db, tenant_ids):
    tenant_id = tenant_ids("listed")
    with db.connection() as conn:
        _create(conn, tenant_id)
        assert records.require(conn, tenant_id).tenant_id == tenant_id
        assert tenant_id in [t.tenant_id for t in records.all_tenants(conn, state="active")]
        with pytest.raises(TenantNotFound):
            records.require(conn, "no-such-tenant")
        with pytest.raises(TenantNotFound):
            lifecycle.suspend(conn, "no-such-tenant", reason="x", actor=ACTOR)
        with pytest.raises(InvalidInput):
            records.all_tenants(conn, state="sleeping")


def test_offboard_exports_every_table_then_drops_schema_and_role(tenant_db, db, tenant_ids, tmp_path):
    tenant_id = tenant_ids()
    with db.connection() as conn:
        tenant = _create(conn, tenant_id).tenant
    with psycopg.connect(tenant_db.login_url(tenant.role_name), autocommit=True) as app:
        app.execute("INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com')")
    with db.connection() as conn:
        result = lifecycle.offboard(conn, tenant_id, actor=ACTOR, export_to=str(tmp_path))
        assert result.tenant.state == "offboarded" and result.rows["users"] == 2
        folder = tmp_path / result.tenant.export_location.split("/")[-1]
        assert (folder / "users.csv").read_text().splitlines()[0].startswith("id,email")
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["rows"]["users"] == 2 and set(manifest["rows"]) >= {"projects", "ai_usage_records"}
        gone = conn.execute("SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = %s)"
                            " + (SELECT count(*) FROM pg_roles WHERE rolname = %s)",
                            (tenant.schema_name, tenant.role_name)).fetchone()[0]
        assert gone == 0
        again = lifecycle.offboard(conn, tenant_id, actor=ACTOR, export_to=str(tmp_path))
        assert again.tenant.state == "offboarded"
        assert len(audit.entries(conn, tenant_id, action="tenant.offboarded")) == 1
        with pytest.raises(TenantConflict, match="offboarded"):
            _create(conn, tenant_id)
        with pytest.raises(TenantConflict):
            lifecycle.resume(conn, tenant_id, actor=ACTOR)


def test_offboard_to_s3_and_a_legacy_secret_is_scheduled_for_deletion(db, tenant_ids):
    """Provisioning writes no secret any more; one written by an earlier version still goes."""
    import boto3
    from moto import mock_aws

    from tenant_provisioner.secrets import AwsSecretStore

    tenant_id = tenant_ids("s3")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="exports")
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        store = AwsSecretStore("/saas/test", client=secrets)
        with db.connection() as conn:
            stored = compose.lifecycle(secret_store=store)
            stored.create(conn, CreateRequest.parse({"tenant_id": tenant_id, "tier": "pro",
                                                     "admin_email": "a@example.com"}), actor=ACTOR)
            assert secrets.list_secrets()["SecretList"] == []
            secrets.create_secret(Name=store.name_for(tenant_id), SecretString="{}")  # an earlier version's
            result = stored.offboard(conn, tenant_id, actor=ACTOR, export_to="s3://exports/gone")
        assert result.tenant.export_location.startswith(f"s3://exports/gone/{tenant_id}-")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="exports")["Contents"]]
        assert any(k.endswith("/users.csv") for k in keys) and any(k.endswith("/manifest.json") for k in keys)
        assert "DeletedDate" in secrets.describe_secret(SecretId=store.name_for(tenant_id))


def test_after_listeners_run_once_committed_and_cannot_undo_the_change(db, tenant_ids):
    calls = []

    class Recorder(LifecycleListener):
        def after_suspend(self, conn, tenant):
            calls.append(("suspend", tenant.state))
            raise RuntimeError("redis down")

        def after_resume(self, conn, tenant):
            calls.append(("resume", tenant.state))

    listening = Lifecycle(events=TenantEvents([Recorder()]))
    tenant_id = tenant_ids()
    with db.connection() as conn:
        _create(conn, tenant_id)
        assert listening.suspend(conn, tenant_id, reason="hooked", actor=ACTOR).state == "suspended"
        listening.resume(conn, tenant_id, actor=ACTOR)
    assert calls == [("suspend", "suspended"), ("resume", "active")]


def test_offboard_with_retention_keeps_the_schema_until_a_later_call(tenant_db, db, tenant_ids, tmp_path):
    tenant_id = tenant_ids("kept")
    with db.connection() as conn:
        tenant = _create(conn, tenant_id).tenant
        schema.set_password(conn, tenant.role_name, "the-password")
        first = lifecycle.offboard(conn, tenant_id, actor=ACTOR, export_to=str(tmp_path), retention_days=3)
        assert first.tenant.state == "offboarding" and first.rows["users"] == 0
        assert (first.tenant.drop_after - first.tenant.updated_at).days == 3
        assert tenant_db.verifier(tenant.role_name) is None  # kept, but nobody can log in
        again = lifecycle.offboard(conn, tenant_id, actor=ACTOR, export_to=str(tmp_path), retention_days=3)
        assert again.tenant.state == "offboarding" and again.rows == {}
        assert len(audit.entries(conn, tenant_id, action="tenant.exported")) == 1
        conn.execute("UPDATE control.tenants SET drop_after = now() - interval '1 second' WHERE tenant_id = %s",
                     (tenant_id,))  # the retention period has passed
        done = lifecycle.offboard(conn, tenant_id, actor=ACTOR, export_to=str(tmp_path))
        assert done.tenant.state == "offboarded" and done.tenant.export_location == first.tenant.export_location
        assert _role(conn, tenant.role_name) is None
        with pytest.raises(InvalidInput):
            lifecycle.offboard(conn, tenant_id, actor=ACTOR, export_to=str(tmp_path), retention_days=-1)
