"""The API's composition: settings → clients → middleware → routes (`create_app`).

Middleware, outermost first: `RequestContext` (request id, JSON log line) →
`TenantAuthMiddleware` (key → tenant, 401/403) → `RateLimitMiddleware` (one FCALL, 429/403,
RateLimit fields; its admitted-request counters are what the enforcer meters for billing) →
FastAPI. Probes and /openapi.json are outside ``/v1/`` and need no key.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Coroutine

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.responses import JSONResponse, Response

from services.api import problems, routes
from services.settings import ServiceSettings
from tenant_provisioner.gateway.jobs import JobQueue
from tenant_provisioner.gateway.middleware import PROBLEM_BASE, KeyResolver, RequestContext, TenantAuthMiddleware
from tenant_provisioner.gateway.sessions import WORKER_CONNECTIONS_PER_TENANT, ControlPlane, TenantPools
from tenant_provisioner.limits.degraded import DegradedLimiter, degraded_share
from tenant_provisioner.limits.limiter import AsyncRateLimiter
from tenant_provisioner.limits.middleware import RateLimitMiddleware
from tenant_provisioner.tiers import load_tiers

log = logging.getLogger("saas.api")
REDIS_POOL_SIZE = 64  # limiter calls in flight per process; more wait up to REDIS_TIMEOUT_SECONDS


class Runtime:
    """The clients one API process holds, built once from settings."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.catalog = load_tiers(settings.tiers_file)
        self.control = ControlPlane(settings.database_url, provisioner_role=settings.provisioner_role,
                                    max_size=settings.control_pool_size)
        self.pools = TenantPools(settings.database_url, catalog=self.catalog, deriver=settings.password_deriver,
                                 total=settings.pool_total, per_tenant=settings.pool_per_tenant,
                                 replicas=settings.replicas,
                                 held_elsewhere=settings.worker_replicas * WORKER_CONNECTIONS_PER_TENANT,
                                 idle_seconds=settings.pool_idle_seconds,
                                 wait_seconds=settings.pool_wait_seconds)
        # A bounded pool that WAITS for a free connection (within the limiter's timeout): redis-py's
        # default pool raises at once past 100 calls in flight, which sent a loaded pod's requests to
        # the degraded limiter although Redis was fine.
        self.redis = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=REDIS_POOL_SIZE, timeout=settings.redis_timeout_seconds,
            socket_timeout=settings.redis_timeout_seconds, socket_connect_timeout=settings.redis_timeout_seconds,
            retry=Retry(NoBackoff(), 0), health_check_interval=0))
        degraded = DegradedLimiter(share=degraded_share(settings.rate_limit_replicas))
        self.limiter = AsyncRateLimiter(self.redis, key_prefix=settings.redis_key_prefix, catalog=self.catalog,
                                        degraded=degraded)
        self.resolver = KeyResolver(self.control, ttl=settings.key_cache_seconds)
        self.jobs = JobQueue(self.control)
        self.draining = False
        self._abandoned_checks: set[asyncio.Future[list[str]]] = set()   # timed-out readiness checks, ending

    async def start(self) -> None:
        await self.control.open()
        self.pools.start()
        await self.limiter.load()

    async def stop(self) -> None:
        await self.jobs.flush()
        await self.limiter.flush()  # usage admitted while Redis was away, if it answers now
        if self.limiter.backlog_units:
            log.error("stopping with %d request(s) admitted while the limiter's Redis was away and not "
                      "metered: they will not be billed", self.limiter.backlog_units)
        await self.pools.close()
        await self.control.close()
        await self.redis.aclose()

    async def unready_reasons(self) -> list[str]:
        if self.draining:
            return ["shutting down"]
        checks = await asyncio.gather(self._within_timeout("PostgreSQL", self.control.unready_reasons()),
                                      self._within_timeout("Redis", self._redis_unready_reasons()))
        return [reason for reasons in checks for reason in reasons]

    async def _redis_unready_reasons(self) -> list[str]:
        await self.redis.ping()
        return []

    async def _within_timeout(self, name: str, check: Coroutine[Any, Any, list[str]]) -> list[str]:
        """The check's reasons, or one saying it did not answer within READINESS_TIMEOUT_SECONDS: a hung
        dependency makes /readyz a quick 503, never a probe timeout. Not ``asyncio.wait_for``: that waits
        for the cancelled check to end, and psycopg spends up to 10 s cancelling a query on a hung server;
        the check is cancelled and left to end on its own."""
        task = asyncio.ensure_future(check)
        done, _ = await asyncio.wait({task}, timeout=self.settings.readiness_timeout_seconds)
        if not done:
            task.cancel()
            self._abandoned_checks.add(task)
            task.add_done_callback(self._forget)
            return [f"{name}: no answer within {self.settings.readiness_timeout_seconds:g} s"]
        try:
            return task.result()
        except Exception as exc:  # any failure means not ready; the reason is reported
            return [f"{name}: {type(exc).__name__}: {exc}"]

    def _forget(self, task: asyncio.Future[list[str]]) -> None:
        self._abandoned_checks.discard(task)
        if not task.cancelled():
            task.exception()   # retrieved: a late failure of an abandoned check is not logged as unhandled


def create_app(settings: ServiceSettings | None = None, *, runtime: Runtime | None = None) -> Any:
    """The ASGI application (FastAPI wrapped in the tenant middleware)."""
    runtime = runtime or Runtime(settings or ServiceSettings.from_env())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    api = FastAPI(title="AI cost API", version="1.0.0", lifespan=lifespan,
                  description="Tenant API of the AI-cost-optimization SaaS. Authenticate with "
                              "`Authorization: Bearer <api key>`; errors are RFC 9457 problem+json.")
    api.state.runtime = runtime
    api.state.pools = runtime.pools
    api.state.jobs = runtime.jobs
    problems.install(api)
    api.include_router(routes.router)

    @api.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves requests (no dependency is checked)."""
        return {"status": "ok"}

    @api.get("/readyz", tags=["probes"], responses={503: problems.PROBLEM_RESPONSES[503]})
    async def readyz(request: Request) -> Response:
        """Readiness: PostgreSQL and Redis answer, migrations at head, not shutting down."""
        reasons = await request.app.state.runtime.unready_reasons()
        if reasons:
            return problems.problem(503, "not-ready", "Not ready", "; ".join(reasons), {"Retry-After": "5"})
        return JSONResponse({"status": "ready"})

    limited = RateLimitMiddleware(api, limiter=runtime.limiter, problem_base=PROBLEM_BASE)
    app = RequestContext(TenantAuthMiddleware(_only_v1(limited, api), resolver=runtime.resolver))
    app.api = api  # type: ignore[attr-defined]  # tests and the load-test floor reach the FastAPI app
    app.runtime = runtime  # type: ignore[attr-defined]
    return app


def _only_v1(limited: Any, api: FastAPI) -> Any:
    """Tenant requests (with a principal) go through the limiter; probes, docs and lifespan do not."""

    async def route(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await limited(scope, receive, send)
        else:
            await api(scope, receive, send)

    return route
