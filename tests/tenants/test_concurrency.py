"""Concurrency: simultaneous signups of one id make one tenant; distinct ids all succeed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tenant_provisioner.runtime import compose
from tenant_provisioner.tenants.provisioning import CreateRequest

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later

# 50 callers share 20 connections: the server's max_connections is shared with the whole suite.
CALLERS, CONNECTIONS = 50, 20


def _race(db, requests):
    barrier = threading.Barrier(len(requests))

    def call(request):
        barrier.wait()
        with db.connection() as conn:
            return lifecycle.create(conn, request, actor="race")

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        futures = [pool.submit(call, r) for r in requests]
        return [f.exception() or f.result() for f in futures]


@pytest.mark.slow
def test_fifty_simultaneous_creates_of_one_id_make_one_tenant(tenant_db):
    request = CreateRequest.parse({"tenant_id": "rush-co", "tier": "pro", "admin_email": "a@example.com"})
    with tenant_db.database(max_size=CONNECTIONS) as db:
        outcomes = _race(db, [request] * CALLERS)
        assert [o for o in outcomes if isinstance(o, BaseException)] == []  # the rest: "exists", created false
        results = [o for o in outcomes if not isinstance(o, BaseException)]
        assert sum(r.created for r in results) == 1
        assert {r.tenant.schema_name for r in results} == {results[0].tenant.schema_name}
        with db.connection() as conn:
            assert conn.execute("SELECT count(*) FROM control.tenants WHERE tenant_id = 'rush-co'").fetchone() == (1,)
            schemas = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_%%'").fetchone()[0]
    assert schemas == 1


@pytest.mark.slow
def test_twenty_distinct_concurrent_creates_all_succeed(tenant_db):
    requests = [CreateRequest.parse({"tenant_id": f"crowd-{i:02d}", "tier": "starter", "admin_email": "a@example.com"})
                for i in range(20)]
    with tenant_db.database(max_size=10) as db:
        outcomes = _race(db, requests)
    assert [type(o).__name__ for o in outcomes if isinstance(o, BaseException)] == []
    assert all(o.created and o.tenant.state == "active" for o in outcomes)
    assert len({o.tenant.schema_name for o in outcomes}) == 20
