"""The per-instance tenant connection total is derived from the database's max_connections and
always fits it; a tenant's per-instance cap is its share of its tier's db_connections
(docs/request-path.md, "Connection budget")."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.app import Runtime, create_app
from services.settings import (RDS_PROXY_CONNECTION_SHARE, RDS_RESERVED_CONNECTIONS, ServiceSettings,
                               tenant_pool_budget)
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.gateway.sessions import (WORKER_CONNECTIONS_PER_TENANT, PoolExhausted, TenantPools,
                                                 tenant_cap)
from tenant_provisioner.tiers import load_tiers

BASE_ENV = {"DATABASE_URL": "postgresql://svc@127.0.0.1:5432/app", "REDIS_URL": "redis://127.0.0.1:6379/0"}


def test_default_total_is_the_documented_arithmetic():
    settings = ServiceSettings.from_env(BASE_ENV)
    # (1,000 - 500 for the RDS Proxy - 3 reserved) // (3 API instances + 1 worker) - 4 control = 120
    assert (settings.database_max_connections, settings.replicas, settings.pool_total) == (1000, 3, 120)


@given(max_connections=st.integers(50, 5000), replicas=st.integers(1, 20), workers=st.integers(1, 10),
       control=st.integers(1, 8))
def test_the_whole_database_fits_max_connections(max_connections, replicas, workers, control):
    budget = tenant_pool_budget(max_connections=max_connections, replicas=replicas, worker_replicas=workers,
                                control_pool_size=control)
    if budget < 1:
        return
    proxy = int(max_connections * RDS_PROXY_CONNECTION_SHARE)
    services = (replicas + workers) * (budget + control)  # API instances and workers, tenant + control pools
    assert services + proxy + RDS_RESERVED_CONNECTIONS <= max_connections


def test_a_total_above_the_budget_is_refused_with_the_numbers():
    with pytest.raises(ConfigError, match="TENANT_POOL_TOTAL 121 exceeds the connection budget 120"):
        ServiceSettings.from_env({**BASE_ENV, "TENANT_POOL_TOTAL": "121"})
    assert ServiceSettings.from_env({**BASE_ENV, "TENANT_POOL_TOTAL": "40"}).pool_total == 40


def test_a_database_too_small_for_the_replicas_is_refused():
    with pytest.raises(ConfigError, match="leaves no tenant connections"):
        ServiceSettings.from_env({**BASE_ENV, "DATABASE_MAX_CONNECTIONS": "40", "SERVICE_REPLICAS": "10"})


# -- per-tenant caps: the tier's db_connections, shared by the replicas ----------------------------
@given(tier_limit=st.integers(1, 500), replicas=st.integers(1, 30), per_tenant=st.none() | st.integers(1, 64))
def test_instances_and_the_worker_stay_within_the_tiers_connections(tier_limit, replicas, per_tenant):
    cap = tenant_cap(tier_limit=tier_limit, replicas=replicas, held_elsewhere=WORKER_CONNECTIONS_PER_TENANT,
                     per_tenant=per_tenant)
    assert cap >= 1 and (per_tenant is None or cap <= per_tenant)
    if tier_limit - WORKER_CONNECTIONS_PER_TENANT >= replicas:  # else the session reaper ends the excess (503s)
        assert replicas * cap + WORKER_CONNECTIONS_PER_TENANT <= tier_limit


def test_default_caps_are_each_tiers_share_not_a_fixed_four():
    assert ServiceSettings.from_env(BASE_ENV).pool_per_tenant is None
    pools = TenantPools(BASE_ENV["DATABASE_URL"], catalog=load_tiers(), deriver=None, replicas=3,
                        held_elsewhere=WORKER_CONNECTIONS_PER_TENANT)
    # (tier's db_connections 5 / 20 / 50 - the worker's 1) // 3 API instances
    assert {tier: pools.cap_for(tier) for tier in ("starter", "pro", "business")} == \
        {"starter": 1, "pro": 6, "business": 16}
    capped = ServiceSettings.from_env({**BASE_ENV, "TENANT_POOL_PER_TENANT": "4"}).pool_per_tenant
    assert TenantPools(BASE_ENV["DATABASE_URL"], catalog=load_tiers(), deriver=None, replicas=3,
                       per_tenant=capped).cap_for("business") == 4


@pytest.fixture(scope="module")
def business(platform):
    platform.tenant("wide-co", "business")
    return platform


def test_a_business_tenant_holds_its_tiers_cap_of_connections_at_once(business):
    """16 concurrent sessions on one instance of three (the old fixed cap stopped at 4), the 17th waits."""
    settings = business.settings(SERVICE_REPLICAS=3, TENANT_POOL_WAIT_SECONDS=0)

    async def body():
        runtime = Runtime(settings)
        await runtime.control.open()
        try:
            tenant = await runtime.resolver.resolve(business.api_keys["wide-co"])
            async with AsyncExitStack() as held:
                for _ in range(16):
                    conn = await held.enter_async_context(runtime.pools.session(tenant))
                    await conn.execute("SELECT 1")
                with pytest.raises(PoolExhausted, match="16/16 for the tenant"):
                    await held.enter_async_context(runtime.pools.session(tenant))
            return runtime.pools.stats()
        finally:
            await runtime.stop()

    stats = asyncio.run(body())
    assert stats["connects"] == 16 and stats["exhausted"] == 1


def test_the_tenant_connection_is_back_in_the_pool_before_the_response_is_sent(business):
    """A connection is held while the route runs, not while the client reads the response."""
    app = create_app(business.settings())
    runtime = app.runtime
    at_response_start: list[dict[str, int]] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/v1/projects", "raw_path": b"/v1/projects", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"test"), (b"authorization", f"Bearer {business.api_keys['wide-co']}".encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
            at_response_start.append(runtime.pools.stats())

    async def body():
        await runtime.start()
        try:
            await app(scope, receive, send)
        finally:
            await runtime.stop()

    asyncio.run(body())
    assert [(s["open"], s["idle"]) for s in at_response_start] == [(1, 1)]


def test_a_burst_of_concurrent_limiter_calls_waits_for_redis_connections_instead_of_degrading(business):
    """300 decisions at once on one process (a loaded pod): all answered by Redis, none degraded."""
    runtime = Runtime(business.settings())

    async def body():
        await runtime.limiter.load()
        try:
            return await asyncio.gather(*(runtime.limiter.acquire("wide-co", "business") for _ in range(300)))
        finally:
            await runtime.redis.aclose()

    decisions = asyncio.run(body())
    assert [d for d in decisions if d.degraded] == []
    assert sum(d.allowed for d in decisions) == 300  # within the business burst of 500
