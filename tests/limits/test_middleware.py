"""The ASGI middleware with the async limiter on real Redis."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from tenant_provisioner.limits import AsyncRateLimiter, TenantKeys
from tenant_provisioner.limits.middleware import Principal, RateLimitMiddleware
from tests.limits.conftest import make_tier
from tests.limits.sfv import parse_list

TIER = make_tier(rate=5, burst=3)


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def _scope(principal=None, headers=()):
    return {"type": "http", "method": "GET", "path": "/v1/things", "headers": list(headers),
            "state": {"principal": principal} if principal else {}}


async def _call(mw, scope):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await mw(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, body


def _run(redis_url, prefix, scenario):
    async def main():
        client = aioredis.Redis.from_url(redis_url)
        limiter = AsyncRateLimiter(client, key_prefix=prefix, catalog=None)
        await limiter.load()
        try:
            return await scenario(RateLimitMiddleware(_app, limiter=limiter), client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_allowed_requests_carry_ratelimit_fields(redis_server_url, redis_client, redis_prefix):
    async def scenario(mw, _client):
        return await _call(mw, _scope(Principal("acme-co", TIER)))

    status, headers, body = _run(redis_server_url, redis_prefix, scenario)
    assert (status, body) == (200, b"hello")
    assert parse_list(headers["ratelimit"]) == [("burst", {"r": 2, "t": 1})]
    assert dict(parse_list(headers["ratelimit-policy"]))["burst"] == {"q": 3, "w": 1}


def test_rate_limited_is_429_problem_json(redis_server_url, redis_client, redis_prefix):
    async def scenario(mw, _client):
        return [await _call(mw, _scope(Principal("acme-co", TIER))) for _ in range(4)]

    results = _run(redis_server_url, redis_prefix, scenario)
    assert [r[0] for r in results] == [200, 200, 200, 429]
    status, headers, body = results[-1]
    problem = json.loads(body)
    assert headers["content-type"] == "application/problem+json"
    assert problem["status"] == 429 and problem["type"].endswith("rate-limited")
    assert problem["violated-policies"] == ["burst"]
    assert int(headers["retry-after"]) >= 1


def test_suspended_tenant_gets_403_without_retry_after(redis_server_url, redis_client, redis_prefix):
    redis_client.hset(TenantKeys.of("acme-co", redis_prefix).state, mapping={"state": "suspended"})

    async def scenario(mw, _client):
        return await _call(mw, _scope(Principal("acme-co", TIER)))

    status, headers, body = _run(redis_server_url, redis_prefix, scenario)
    assert status == 403 and json.loads(body)["type"].endswith("tenant-suspended")
    assert "retry-after" not in headers


def test_client_headers_never_choose_the_tenant(redis_server_url, redis_client, redis_prefix):
    forged = [(b"x-tenant-id", b"acme-co"), (b"x-tier", b"business")]

    async def scenario(mw, _client):
        return await _call(mw, _scope(None, forged))

    status, _, body = _run(redis_server_url, redis_prefix, scenario)
    assert status == 401 and json.loads(body)["type"].endswith("unauthenticated")


def test_redis_unreachable_still_limits_without_raising(redis_prefix):
    async def main():
        limiter = AsyncRateLimiter.from_url("redis://127.0.0.1:1/0", key_prefix=redis_prefix)
        mw = RateLimitMiddleware(_app, limiter=limiter)
        return [await _call(mw, _scope(Principal("acme-co", make_tier(rate=5, burst=4)))) for _ in range(4)]

    statuses = [r[0] for r in asyncio.run(main())]
    assert statuses == [200, 200, 429, 429]  # degraded: half the burst of 4 on one pod


def test_websocket_of_a_suspended_tenant_is_closed_and_lifespan_passes(redis_server_url, redis_client, redis_prefix):
    redis_client.hset(TenantKeys.of("acme-co", redis_prefix).state, mapping={"state": "suspended"})
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    async def scenario(_mw, _client):
        mw = RateLimitMiddleware(app, limiter=_mw.limiter)
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "websocket.connect"}

        await mw({"type": "websocket", "state": {"principal": Principal("acme-co", TIER)}}, receive, send)
        await mw({"type": "lifespan"}, receive, send)
        return sent

    sent = _run(redis_server_url, redis_prefix, scenario)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "Tenant suspended"}]
    assert seen == ["lifespan"]
