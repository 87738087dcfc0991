"""Per-tenant rate limit + billing-period quota + breaker state, decided in one Redis round trip.

The logic is the Redis Function library in ``ratelimit.lua`` (``FCALL tp_acquire``), so services
in any language call the same code (docs/ratelimit-fcall.md). It is loaded idempotently
(``FUNCTION LOAD REPLACE``) and reloaded transparently when the server lost it (failover to a
fresh replica, ``FUNCTION FLUSH``); where Functions are unavailable the same Lua runs via
EVALSHA (redis-py's Script reloads on NOSCRIPT).

No exceptions: there is no allow-list and no bypass. If Redis cannot answer, the decision comes
from a stricter in-process limiter (`DegradedLimiter`) and an alert metric is emitted; the caller
never sees a Redis error and the limiter never fails open. What it admits meanwhile is kept in a
bounded per-tenant backlog and metered (``FCALL tp_meter``) with the next call Redis answers, so
usage served while degraded is billed too.

Retries: a decision is not idempotent (it counts), so the clients built here never retry a
command on a timeout; a failed call is decided in degraded mode instead. For the same reason a
call that timed out is not added to the backlog (Redis may have counted it already), nor is a
metering batch that timed out sent again.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Callable, Mapping, Sequence

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tenant_provisioner import validation
from tenant_provisioner.errors import InvalidInput
from tenant_provisioner.limits.degraded import DegradedLimiter
from tenant_provisioner.limits.headers import (BURST_POLICY, MONTHLY_POLICY, PolicyState,
                                               delta_seconds, ratelimit_fields)
from tenant_provisioner.tiers import Tier, TierCatalog, load_tiers

log = logging.getLogger(__name__)

FUNCTION_NAME = "tp_acquire"
METER_FUNCTION = "tp_meter"
_PREFIX = re.compile(r"^[A-Za-z0-9:_.-]*$")
# After a failed call, skip Redis for this long (seconds) instead of paying a timeout per request.
REDIS_RETRY_AFTER_FAILURE_S = 1.0
DEFAULT_SOCKET_TIMEOUT_S = 0.05
# Tenants with admitted-but-unmetered degraded units one process keeps (beyond: logged, dropped).
MAX_BACKLOG_TENANTS = 100_000


class Reason(str, enum.Enum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    SUSPENDED = "suspended"


_CODES = {0: Reason.OK, 1: Reason.RATE_LIMITED, 2: Reason.QUOTA_EXCEEDED, 3: Reason.SUSPENDED}


def _library_source() -> str:
    return resources.files("tenant_provisioner.limits").joinpath("ratelimit.lua").read_text()


LIBRARY_SOURCE = _library_source()
# The same Lua as plain scripts for EVAL: no shebang, no registration, called with KEYS/ARGV.
_EVAL_BODY = LIBRARY_SOURCE.split("\n", 1)[1].split("--@register", 1)[0]
EVAL_SOURCE = _EVAL_BODY + "return acquire(KEYS, ARGV)\n"
METER_EVAL_SOURCE = _EVAL_BODY + "return meter(KEYS, ARGV)\n"


@dataclass(frozen=True)
class Decision:
    """The answer to one `acquire`: whether to serve the request and the fields to send back."""

    allowed: bool
    reason: Reason
    retry_after: float            # seconds; 0 when allowed or suspended (no retry will help)
    headers: Mapping[str, str]
    tenant_id: str
    tier: str
    used: int | None = None       # admitted this period (None in degraded mode)
    attempted: int | None = None  # asked for this period, refused included (None in degraded mode)
    period: int | None = None     # billing period as yyyymm
    degraded: bool = False


@dataclass(frozen=True)
class TenantKeys:
    """All of a tenant's limiter keys: one hash slot thanks to the shared ``{t:<id>}`` tag."""

    gcra: str
    quota: str
    state: str

    @classmethod
    def of(cls, tenant_id: str, prefix: str = "") -> "TenantKeys":
        return _tenant_keys(tenant_id, prefix)

    def as_list(self) -> list[str]:
        return [self.gcra, self.quota, self.state]


@functools.lru_cache(maxsize=65536)
def _tenant_keys(tenant_id: str, prefix: str) -> TenantKeys:
    validation.tenant_id(tenant_id)  # a slug cannot break the {t:<id>} hash tag
    base = f"{prefix}{{t:{tenant_id}}}"
    return TenantKeys(gcra=f"{base}:gcra", quota=f"{base}:quota", state=f"{base}:state")


def billing_month(now: float | None = None) -> tuple[str, str, str]:
    """The UTC month containing `now` as (yyyymm, start, end) epoch seconds."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    start = datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)
    end = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=timezone.utc)
    return str(moment.year * 100 + moment.month), str(int(start.timestamp())), str(int(end.timestamp()))


def check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise InvalidInput("key_prefix", "may hold only letters, digits and : _ . - (no hash-tag braces)")
    return prefix


@dataclass(frozen=True)
class TierPlan:
    """A tier translated into the function's arguments and the advertised policies."""

    tier: Tier
    emission_us: float
    tolerance_us: float
    burst_window_s: int

    @classmethod
    def of(cls, tier: Tier) -> "TierPlan":
        emission = 1_000_000.0 / tier.rate_per_second
        return cls(tier=tier, emission_us=emission, tolerance_us=emission * tier.burst,
                   burst_window_s=max(1, delta_seconds(tier.burst / tier.rate_per_second)))

    def args(self, cost: int) -> list[str]:
        return [repr(self.emission_us), repr(self.tolerance_us), str(cost), str(self.tier.api_requests.hard_limit)]

    def decide(self, tenant_id: str, reply: Sequence[Any]) -> Decision:
        code, retry_ms, remaining, reset_ms, used, attempted, period_ms, period, period_len = (int(v) for v in reply)
        reason = _CODES[code]
        hard = self.tier.api_requests.hard_limit
        policies = [
            PolicyState(BURST_POLICY, self.tier.burst, self.burst_window_s, remaining, delta_seconds(reset_ms / 1000)),
            PolicyState(MONTHLY_POLICY, hard, period_len, max(0, hard - used), delta_seconds(period_ms / 1000)),
        ]
        retry_after = retry_ms / 1000 if reason in (Reason.RATE_LIMITED, Reason.QUOTA_EXCEEDED) else 0.0
        headers = ratelimit_fields(policies, retry_after if retry_after else None)
        return Decision(allowed=reason is Reason.OK, reason=reason, retry_after=retry_after, headers=headers,
                        tenant_id=tenant_id, tier=self.tier.name, used=used, attempted=attempted, period=period)


def _is_missing_function(exc: redis.ResponseError) -> bool:
    text = str(exc).lower()
    return "function not found" in text or "no such function" in text


def _functions_unsupported(exc: redis.ResponseError) -> bool:
    """FUNCTION/FCALL refused: an old server, a managed service or an ACL without them."""
    text = str(exc).lower()
    return isinstance(exc, redis.exceptions.NoPermissionError) or "unknown command" in text


@dataclass
class _Core:
    """What the sync and async limiters share: plans, keys, degraded mode and its bookkeeping."""

    key_prefix: str = ""
    catalog: TierCatalog | None = None
    degraded: DegradedLimiter = field(default_factory=DegradedLimiter)
    use_functions: bool = True
    redis_down_until: float = 0.0
    retry_redis_after_s: float = REDIS_RETRY_AFTER_FAILURE_S
    max_backlog_tenants: int = MAX_BACKLOG_TENANTS
    # tenant id -> units admitted in degraded mode that Redis has not counted yet, and their tier
    backlog: dict[str, tuple[int, TierPlan]] = field(default_factory=dict)
    unmetered: int = 0  # units given up on: backlog full, or a metering batch that failed
    _plans: dict[str, TierPlan] = field(default_factory=dict)

    def prepare(self, tenant_id: str, tier: str | Tier, cost: int) -> tuple[TenantKeys, TierPlan]:
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
            raise InvalidInput("cost", f"must be a whole number >= 0, got {cost!r}")
        keys = TenantKeys.of(tenant_id, self.key_prefix)
        tier_obj = tier if isinstance(tier, Tier) else (self.catalog or load_tiers()).get(tier)
        if cost > tier_obj.burst:
            raise InvalidInput("cost", f"{cost} exceeds the {tier_obj.name} burst of {tier_obj.burst}: "
                                       "such a request could never be admitted")
        plan = self._plans.get(tier_obj.name)
        if plan is None or plan.tier != tier_obj:
            plan = self._plans[tier_obj.name] = TierPlan.of(tier_obj)
        return keys, plan

    def redis_usable(self) -> bool:
        return time.monotonic() >= self.redis_down_until

    def after_success(self, decision: Decision) -> Decision:
        self.redis_down_until = 0.0
        self.degraded.remember(decision.tenant_id, decision.reason, decision.retry_after)
        return decision

    def after_failure(self, tenant_id: str, plan: TierPlan, cost: int, exc: BaseException | None) -> Decision:
        if exc is not None:
            self.redis_down_until = time.monotonic() + self.retry_redis_after_s
            log.warning("rate limiter: Redis unavailable (%s: %s); deciding in degraded mode",
                        type(exc).__name__, exc)
        raw_reason, retry_after, policy = self.degraded.decide(tenant_id, plan.tier, cost)
        reason = Reason(raw_reason)
        if reason is Reason.OK and cost and not _may_have_counted(exc):
            self._owe(tenant_id, cost, plan)
        headers = ratelimit_fields([policy], retry_after if reason in (Reason.RATE_LIMITED, Reason.QUOTA_EXCEEDED)
                                   else None)
        return Decision(allowed=reason is Reason.OK, reason=reason, retry_after=retry_after,
                        headers=headers, tenant_id=tenant_id, tier=plan.tier.name, degraded=True)


    def _owe(self, tenant_id: str, units: int, plan: TierPlan) -> None:
        if tenant_id in self.backlog or len(self.backlog) < self.max_backlog_tenants:
            self.backlog[tenant_id] = (self.backlog.get(tenant_id, (0, plan))[0] + units, plan)
            return
        self.unmetered += units
        log.error("rate limiter: degraded backlog full (%d tenants); %d unit(s) of %s will not be billed",
                  len(self.backlog), units, tenant_id)

    def take_backlog(self) -> list[tuple[str, int, TierPlan]]:
        """The backlog as (tenant id, units, plan), emptied: the caller meters it or gives it back."""
        pending, self.backlog = self.backlog, {}
        return [(tenant_id, units, plan) for tenant_id, (units, plan) in pending.items()]

    def after_metering(self, batch: list[tuple[str, int, TierPlan]], results: Sequence[Any] | BaseException) -> None:
        """Give a batch back when Redis surely did not count it; otherwise it is done (or lost)."""
        if isinstance(results, BaseException):
            results = [results] * len(batch)
        for (tenant_id, units, plan), result in zip(batch, results):
            if not isinstance(result, BaseException):
                continue
            if _may_have_counted(result) or isinstance(result, redis.ResponseError):
                self.unmetered += units
                log.error("rate limiter: metering %d degraded unit(s) of %s failed (%s: %s); not retried, "
                          "Redis may have counted them", units, tenant_id, type(result).__name__, result)
            else:
                self._owe(tenant_id, units, plan)


def _may_have_counted(exc: BaseException | None) -> bool:
    """A call that timed out may have run on the server: never count it again."""
    return isinstance(exc, (redis.TimeoutError, TimeoutError))


class _LimiterBase:
    """Construction and state shared by the sync and async limiters (they differ only in I/O)."""

    _client_class: Callable[..., Any] = redis.Redis

    def __init__(self, client: Any, *, key_prefix: str = "", catalog: TierCatalog | None = None,
                 degraded: DegradedLimiter | None = None,
                 retry_redis_after_s: float = REDIS_RETRY_AFTER_FAILURE_S,
                 max_backlog_tenants: int = MAX_BACKLOG_TENANTS) -> None:
        self._client = client
        self._core = _Core(key_prefix=check_prefix(key_prefix), catalog=catalog,
                           degraded=degraded or DegradedLimiter(), retry_redis_after_s=retry_redis_after_s,
                           max_backlog_tenants=max_backlog_tenants)
        self._script = client.register_script(EVAL_SOURCE)
        self._meter_script = client.register_script(METER_EVAL_SOURCE)

    @classmethod
    def from_url(cls, url: str, *, socket_timeout: float = DEFAULT_SOCKET_TIMEOUT_S, **kwargs: Any) -> Any:
        """A limiter on its own client: short timeouts, no automatic retry (a retry double-counts)."""
        return cls(cls._client_class.from_url(url, socket_timeout=socket_timeout,
                                              socket_connect_timeout=socket_timeout, retry=Retry(NoBackoff(), 0),
                                              health_check_interval=0), **kwargs)

    @property
    def key_prefix(self) -> str:
        return self._core.key_prefix

    @property
    def degraded(self) -> DegradedLimiter:
        return self._core.degraded

    @property
    def backlog_units(self) -> int:
        """Units admitted in degraded mode that Redis has not counted yet."""
        return sum(units for units, _ in self._core.backlog.values())

    @property
    def unmetered_units(self) -> int:
        """Units admitted in degraded mode given up on (backlog full, or metering failed)."""
        return self._core.unmetered

    def _metering(self) -> tuple[list[tuple[str, int, TierPlan]], Any]:
        """The backlog, taken, and a pipeline holding one ``tp_meter`` per tenant of it."""
        batch = self._core.take_backlog()
        pipe = self._client.pipeline(transaction=False)
        for tenant_id, units, plan in batch:
            keys = TenantKeys.of(tenant_id, self._core.key_prefix)
            args = [units, repr(plan.emission_us), repr(plan.tolerance_us)]
            if self._core.use_functions:
                pipe.fcall(METER_FUNCTION, 2, keys.gcra, keys.quota, *args)
            else:
                self._meter_script(keys=[keys.gcra, keys.quota], args=args, client=pipe)
        return batch, pipe

    def _loaded(self, exc: redis.ResponseError | None) -> bool:
        """Record the outcome of FUNCTION LOAD: True = Functions, False = EVAL fallback."""
        if exc is not None and not _functions_unsupported(exc):
            raise exc
        if exc is not None:
            log.warning("rate limiter: Redis Functions unavailable (%s); using EVALSHA", exc)
        self._core.use_functions = exc is None
        return self._core.use_functions

    def _unreachable(self, exc: BaseException) -> bool:
        log.warning("rate limiter: could not load the function library now (%s: %s); the first "
                    "decision will", type(exc).__name__, exc)
        return self._core.use_functions

    def _begin(self, tenant_id: str, tier: str | Tier, cost: int) -> tuple[TenantKeys, TierPlan, list[str]]:
        keys, plan = self._core.prepare(tenant_id, tier, cost)
        return keys, plan, plan.args(cost)


def _reload_needed(exc: redis.ResponseError) -> bool:
    return _is_missing_function(exc) or _functions_unsupported(exc)


class RateLimiter(_LimiterBase):
    """Synchronous limiter on redis-py (WSGI apps, workers, the CLI).

    ``acquire(tenant_id, tier, cost=1)`` never raises for Redis trouble; bad arguments (unknown
    tier, malformed tenant id, negative cost) raise `InvalidInput` before anything is counted.
    """

    def load(self) -> bool:
        """Load (or replace) the function library; False when only EVAL is available.

        Optional (the first decision loads it) and safe at start-up: if Redis is unreachable it
        logs and returns, and decisions run in degraded mode until Redis answers."""
        try:
            return self._load()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            return self._unreachable(exc)

    def _load(self) -> bool:
        try:
            self._client.function_load(LIBRARY_SOURCE, replace=True)
        except redis.ResponseError as exc:
            return self._loaded(exc)
        return self._loaded(None)

    def _invoke(self, keys: list[str], args: list[str]) -> Sequence[Any]:
        if self._core.use_functions:
            try:
                return self._client.fcall(FUNCTION_NAME, len(keys), *keys, *args)
            except redis.ResponseError as exc:
                if not _reload_needed(exc):
                    raise
                if self._load():
                    return self._client.fcall(FUNCTION_NAME, len(keys), *keys, *args)
        return self._script(keys=keys, args=args)

    def acquire(self, tenant_id: str, tier: str | Tier, cost: int = 1) -> Decision:
        """Decide one request of `cost` units for `tenant_id` on `tier` (cost 0 only reads)."""
        keys, plan, args = self._begin(tenant_id, tier, cost)
        if not self._core.redis_usable():
            return self._core.after_failure(tenant_id, plan, cost, None)
        try:
            reply = self._invoke(keys.as_list(), args)
        except (redis.RedisError, OSError) as exc:
            return self._core.after_failure(tenant_id, plan, cost, exc)
        if self._core.backlog:
            self.flush()
        return self._core.after_success(plan.decide(tenant_id, reply))

    def flush(self) -> None:
        """Meter the degraded backlog in one round trip (done by the first call Redis answers)."""
        batch, pipe = self._metering()
        try:
            self._core.after_metering(batch, pipe.execute(raise_on_error=False) if batch else [])
        except (redis.RedisError, OSError) as exc:
            self._core.after_metering(batch, exc)


class AsyncRateLimiter(_LimiterBase):
    """The same limiter on ``redis.asyncio`` for ASGI services (see `RateLimitMiddleware`)."""

    _client_class = aioredis.Redis

    async def load(self) -> bool:
        try:
            return await self._load()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            return self._unreachable(exc)

    async def _load(self) -> bool:
        try:
            await self._client.function_load(LIBRARY_SOURCE, replace=True)
        except redis.ResponseError as exc:
            return self._loaded(exc)
        return self._loaded(None)

    async def _invoke(self, keys: list[str], args: list[str]) -> Sequence[Any]:
        if self._core.use_functions:
            try:
                return await self._client.fcall(FUNCTION_NAME, len(keys), *keys, *args)
            except redis.ResponseError as exc:
                if not _reload_needed(exc):
                    raise
                if await self._load():
                    return await self._client.fcall(FUNCTION_NAME, len(keys), *keys, *args)
        return await self._script(keys=keys, args=args)

    async def acquire(self, tenant_id: str, tier: str | Tier, cost: int = 1) -> Decision:
        keys, plan, args = self._begin(tenant_id, tier, cost)
        if not self._core.redis_usable():
            return self._core.after_failure(tenant_id, plan, cost, None)
        try:
            reply = await self._invoke(keys.as_list(), args)
        except (redis.RedisError, OSError) as exc:
            return self._core.after_failure(tenant_id, plan, cost, exc)
        if self._core.backlog:
            await self.flush()
        return self._core.after_success(plan.decide(tenant_id, reply))

    async def flush(self) -> None:
        """Meter the degraded backlog in one round trip (done by the first call Redis answers)."""
        batch, pipe = self._metering()
        try:
            self._core.after_metering(batch, await pipe.execute(raise_on_error=False) if batch else [])
        except (redis.RedisError, OSError) as exc:
            self._core.after_metering(batch, exc)


__all__ = ["AsyncRateLimiter", "Decision", "RateLimiter", "Reason", "TenantKeys", "TierPlan"]
