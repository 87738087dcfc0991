"""The warm pool: pre-built schemas are unreachable, claimed once each, and replaced when stale."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tenant_provisioner import migrations
from tenant_provisioner.tenants import warm_pool
from tenant_provisioner.runtime import compose
from tenant_provisioner.errors import InvalidInput
from tenant_provisioner.tenants.provisioning import CreateRequest

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later


def _request(tenant_id):
    return CreateRequest.parse({"tenant_id": tenant_id, "tier": "starter", "admin_email": "a@example.com"})


def _pool(conn):
    return [r[0] for r in conn.execute("SELECT schema_name FROM control.warm_schemas ORDER BY created_at")]


def test_signups_claim_prebuilt_schemas_and_fall_back_when_empty(fresh_tenant_db):
    with fresh_tenant_db.database(max_size=6) as db:
        with db.connection() as conn:
            assert warm_pool.refill(conn, 3).to_dict() == {"built": 3, "dropped_stale": 0, "size": 3, "ran": True}
            assert warm_pool.refill(conn, 3).built == 0
            pooled = set(_pool(conn))
            acl = conn.execute("SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a"
                               " WHERE n.nspname = ANY(%s) AND a.grantee <> n.nspowner", (list(pooled),)).fetchone()
            assert acl == (0,)  # nobody but the provisioner can use a pool schema

        barrier = threading.Barrier(5)

        def signup(i):
            barrier.wait()
            with db.connection() as conn:
                return lifecycle.create(conn, _request(f"pool-{i}"), actor="t").tenant

        with ThreadPoolExecutor(5) as threads:
            made = list(threads.map(signup, range(5)))
        schemas = [t.schema_name for t in made]
        assert len(set(schemas)) == 5 and len(pooled & set(schemas)) == 3  # 3 claimed, 2 built inline
        with db.connection() as conn:
            assert _pool(conn) == []
    with psycopg.connect(fresh_tenant_db.login_url(made[0].role_name)) as app:
        app.execute("INSERT INTO users (email) VALUES ('x@pool.example')")


def test_refill_drops_schemas_of_an_older_version(fresh_tenant_db):
    with fresh_tenant_db.database() as db, db.connection() as conn:
        warm_pool.refill(conn, 2)
        old = _pool(conn)
        conn.execute("UPDATE control.warm_schemas SET schema_version = schema_version - 1")
        assert warm_pool.claim(conn, migrations.latest_version("tenant")) is None
        result = warm_pool.refill(conn, 2)
        assert result.dropped_stale == 2 and result.built == 2 and not set(old) & set(_pool(conn))
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = ANY(%s)", (old,)).fetchone()
        assert left == (0,)
        with pytest.raises(InvalidInput):
            warm_pool.refill(conn, -1)
