"""ASGI middleware: one limiter decision per request, RateLimit fields on every response.

The tenant and tier come from the principal the authentication layer put in the scope
(``scope["state"]["principal"]`` by default, with ``tenant_id`` and ``tier``), never from a
header the client sends. There is no bypass: a request without a principal is refused (401), so
mount health checks outside this middleware rather than allow-listing paths inside it.
Refusals are RFC 9457 problem+json: 429 for rate or quota, 403 for a suspended tenant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, MutableMapping

from tenant_provisioner.limits.headers import BURST_POLICY, MONTHLY_POLICY
from tenant_provisioner.limits.limiter import AsyncRateLimiter, Decision, Reason
from tenant_provisioner.tiers import Tier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Principal:
    """Who is calling, as established by authentication (API key or token lookup)."""

    tenant_id: str
    tier: str | Tier  # a tier name from the tiers file, or the Tier itself


def principal_from_state(scope: Scope) -> Principal | None:
    """Default resolver: the authentication middleware stored a `Principal` in the scope state."""
    found = (scope.get("state") or {}).get("principal")
    return found if isinstance(found, Principal) else None


_PROBLEMS = {
    Reason.RATE_LIMITED: (429, "rate-limited", "Too many requests",
                          "The tier's request rate was exceeded; retry after the indicated delay.", BURST_POLICY),
    Reason.QUOTA_EXCEEDED: (429, "quota-exceeded", "Quota exceeded",
                            "The billing period's request quota is used up.", MONTHLY_POLICY),
    Reason.SUSPENDED: (403, "tenant-suspended", "Tenant suspended",
                       "This tenant is suspended; contact support.", None),
}


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limiter: AsyncRateLimiter,
                 principal: Callable[[Scope], Principal | None] = principal_from_state,
                 cost: Callable[[Scope], int] = lambda scope: 1,
                 problem_base: str = "https://docs.example.com/problems/") -> None:
        self.app = app
        self.limiter = limiter
        self.principal = principal
        self.cost = cost
        self.problem_base = problem_base

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        who = self.principal(scope)
        if who is None:
            await self._refuse(scope, send, 401, "unauthenticated", "Unauthenticated",
                               "Rate limiting needs an authenticated tenant.", {}, None)
            return
        decision = await self.limiter.acquire(who.tenant_id, who.tier, self.cost(scope))
        if not decision.allowed:
            status, slug, title, detail, policy = _PROBLEMS[decision.reason]
            await self._refuse(scope, send, status, slug, title, detail, decision.headers, policy)
            return
        await self.app(scope, receive, _with_headers(send, decision))

    async def _refuse(self, scope: Scope, send: Send, status: int, slug: str, title: str, detail: str,
                      headers: Mapping[str, str], policy: str | None) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": title})
            return
        problem: dict[str, Any] = {"type": f"{self.problem_base}{slug}", "title": title, "status": status,
                                   "detail": detail}
        if policy:
            problem["violated-policies"] = [policy]
        body = json.dumps(problem).encode()
        raw = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def _with_headers(send: Send, decision: Decision) -> Send:
    extra = [(k.lower().encode(), v.encode()) for k, v in decision.headers.items()]

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped
