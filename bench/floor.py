"""The load test's floor: the API's own routes on ONE shared pool, without keys, tenancy or
limiter (``python -m bench.floor --schema <schema>``: the pool's search_path).

What the tenant path adds on top of this is exactly the request path of issue 12: key lookup,
the limiter FCALL, per-tenant pools logged in as the tenant role, the job enqueue per usage
write. Same server, same request logging, same handlers and SQL."""

from __future__ import annotations

import argparse
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from services.api import problems, routes
from services.serving import serve_uvicorn
from services.settings import load_for_process
from tenant_provisioner.gateway.middleware import RequestContext


class _NoJobs:
    async def after_usage(self, tenant: Any) -> None:
        return None


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

    async def shared_db() -> AsyncIterator[Any]:
        async with pool.connection() as conn:
            yield conn

    api = FastAPI(title="floor", lifespan=lifespan)
    problems.install(api)
    api.include_router(routes.router)
    api.dependency_overrides[routes.tenant_db] = shared_db
    api.state.jobs = _NoJobs()

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def no_tenant(scope: dict, receive: Any, send: Any) -> None:
        scope.setdefault("state", {})["tenant"] = None
        await api(scope, receive, send)

    return RequestContext(no_tenant)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schema", required=True, help="schema holding the floor's tables")
    settings = load_for_process()
    serve_uvicorn(create_floor_app(settings.database_url, parser.parse_args().schema, settings.pool_total), settings)
