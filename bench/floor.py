"""The load test's floor: the API's own routes on ONE shared pool, without keys, tenancy or
limiter (``python -m bench.floor [--schema floor]``: the pool's search_path).

What the tenant path adds on top of this is exactly the request path of issue 12: key lookup,
the limiter FCALL, per-tenant pools logged in as the tenant role, the job enqueue per usage
write. Same server (``SERVER``: uvicorn or granian), same request logging, same handlers, the
same `routes.tenant_db` dependency (``app.state.pools.session``, here the shared pool) and SQL."""

from __future__ import annotations

import argparse
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.api import problems, routes
from services.serving import serve_granian, serve_uvicorn
from services.settings import load_for_process
from tenant_provisioner.gateway.middleware import RequestContext

FLOOR_SCHEMA = "floor"  # what bench/loadtest.py seeds


class _NoJobs:
    async def after_usage(self, tenant: Any) -> None:
        return None


class _SharedPool:
    """`TenantPools.session`'s interface on one shared pool: every request gets any connection."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def session(self, tenant: Any) -> AsyncIterator[AsyncConnection]:
        async with self.pool.connection() as conn:
            yield conn


def create_floor_app(url: str, schema: str, pool_size: int) -> Any:
    pool = AsyncConnectionPool(url, min_size=pool_size, max_size=pool_size, open=False, name="floor",
                               kwargs={"autocommit": True, "options": f"-c search_path={schema}"})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        try:
            yield
        finally:
            await pool.close()

    api = FastAPI(title="floor", lifespan=lifespan)
    problems.install(api)
    api.include_router(routes.router)
    api.state.pools = _SharedPool(pool)
    api.state.jobs = _NoJobs()

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def no_tenant(scope: dict, receive: Any, send: Any) -> None:
        scope.setdefault("state", {})["tenant"] = None
        await api(scope, receive, send)

    return RequestContext(no_tenant)


def build_floor_app() -> Any:
    """Factory for granian's worker process (the loadtest's schema)."""
    settings = load_for_process()
    return create_floor_app(settings.database_url, FLOOR_SCHEMA, settings.pool_total)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schema", default=FLOOR_SCHEMA, help="schema holding the floor's tables")
    schema = parser.parse_args().schema
    settings = load_for_process()
    if settings.server == "granian":
        if schema != FLOOR_SCHEMA:
            parser.error(f"granian serves the floor on schema {FLOOR_SCHEMA!r} only")
        serve_granian("bench.floor:build_floor_app", settings)
    else:
        serve_uvicorn(create_floor_app(settings.database_url, schema, settings.pool_total), settings)
