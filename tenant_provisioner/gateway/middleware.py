"""ASGI tenant middleware: the reference request path for services in any language.

``Authorization: Bearer <api_key>`` → `KeyResolver` (one indexed lookup, cached at most
``ttl`` seconds so a revocation or suspension reaches every instance within it; hashes compared
in constant time) → ``scope["state"]["tenant"]`` (`TenantContext`) and the limiter's
``Principal`` → `RateLimitMiddleware` (one FCALL, RateLimit fields, 429/403) → the app, which
opens tenant sessions with `TenantPools` as the tenant's own role.

Only paths under ``protected_prefix`` (``/v1/``) are tenant requests; probes and the OpenAPI
document live outside it. Refusals are RFC 9457 problem+json: 401 missing/unknown/revoked key,
403 tenant not active. `RequestContext` (outermost) adds the request id and one JSON log line
per request carrying the tenant id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Mapping

from tenant_provisioner.errors import TransientError
from tenant_provisioner.gateway import keys
from tenant_provisioner.gateway.sessions import ControlPlane, KeyRecord, TenantContext
from tenant_provisioner.limits.middleware import ASGIApp, Message, Principal, Receive, Scope, Send

log = logging.getLogger("saas.request")

PROBLEM_BASE = "https://docs.example.com/problems/"
KEY_CACHE_SECONDS = 2.0
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def problem_body(status: int, slug: str, title: str, detail: str, **extra: Any) -> bytes:
    return json.dumps({"type": f"{PROBLEM_BASE}{slug}", "title": title, "status": status, "detail": detail,
                       **extra}).encode()


async def send_problem(send: Send, status: int, slug: str, title: str, detail: str,
                       headers: Mapping[str, str] | None = None) -> None:
    body = problem_body(status, slug, title, detail)
    raw = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Unauthenticated(Exception):
    """No usable key: missing, malformed, unknown or revoked (one answer for all: no oracle)."""


class KeyResolver:
    """API key → `TenantContext`, with a bounded per-instance cache of at most `ttl` seconds.

    Misses for the same key id share one lookup (a burst of a cold key costs one query)."""

    def __init__(self, control: ControlPlane, *, ttl: float = KEY_CACHE_SECONDS, max_entries: int = 20_000) -> None:
        self.control = control
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, KeyRecord | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[KeyRecord | None]] = {}

    async def _record(self, key_id: str) -> KeyRecord | None:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        pending = self._inflight.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyRecord | None] = asyncio.get_running_loop().create_future()
        self._inflight[key_id] = future
        try:
            record = await self.control.lookup(key_id)
            future.set_result(record)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            self._inflight.pop(key_id, None)
        self._cache[key_id] = (now + self.ttl, record)
        self._cache.move_to_end(key_id)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return record

    async def resolve(self, api_key: str) -> TenantContext:
        parsed = keys.parse(api_key)
        if parsed is None:
            raise Unauthenticated()
        record = await self._record(parsed.key_id)
        if record is None or not keys.matches(parsed, record.key_hash) or record.revoked:
            raise Unauthenticated()
        return record.tenant


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class TenantAuthMiddleware:
    """Resolves the caller's tenant; refuses 401/403 before anything is counted or opened."""

    def __init__(self, app: ASGIApp, *, resolver: KeyResolver, protected_prefix: str = "/v1/") -> None:
        self.app = app
        self.resolver = resolver
        self.protected_prefix = protected_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.protected_prefix):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        try:
            if token is None:
                raise Unauthenticated()
            tenant = await self.resolver.resolve(token)
        except Unauthenticated:
            await send_problem(send, 401, "unauthenticated", "Unauthenticated",
                               "Send a valid, unrevoked API key as `Authorization: Bearer <key>`.",
                               {"WWW-Authenticate": 'Bearer realm="api"'})
            return
        except TransientError:
            log.warning("key lookup failed", exc_info=True)
            await send_problem(send, 503, "temporarily-unavailable", "Service unavailable",
                               "The API cannot check keys right now; retry shortly.", {"Retry-After": "1"})
            return
        state = scope.setdefault("state", {})
        state["tenant"] = tenant
        if tenant.state != "active":
            await send_problem(send, 403, f"tenant-{tenant.state}", "Tenant not active",
                               f"This tenant is {tenant.state}; contact support.")
            return
        state["principal"] = Principal(tenant_id=tenant.tenant_id, tier=tenant.tier)
        await self.app(scope, receive, send)


class RequestContext:
    """Outermost: a request id (the caller's ``X-Request-Id`` if sane, else a new one) on the
    response, and one JSON log line per request with the tenant, status and duration."""

    def __init__(self, app: ASGIApp, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = next((v.decode("latin-1") for k, v in scope.get("headers") or () if k == b"x-request-id"), "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = self.clock()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            tenant: TenantContext | None = state.get("tenant")
            log.info("request", extra={"fields": {
                "request_id": request_id, "method": scope["method"], "path": scope["path"], "status": status,
                "duration_ms": round((self.clock() - started) * 1000, 2),
                "tenant_id": tenant.tenant_id if tenant else None,
                "key_prefix": tenant.key_prefix if tenant else None}})


