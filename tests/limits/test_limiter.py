"""The Redis limiter on a real Redis: GCRA bounds, exact quotas, state, reloads, fallbacks."""

from __future__ import annotations

import asyncio
import calendar
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import given, settings
from redis.backoff import NoBackoff
from redis.retry import Retry
from hypothesis import strategies as st

from tenant_provisioner.errors import InvalidInput
from tenant_provisioner.limits import AsyncRateLimiter, RateLimiter, Reason, TenantKeys
from tenant_provisioner.limits.limiter import EVAL_SOURCE, METER_EVAL_SOURCE, TierPlan
from tests.limits.conftest import make_tier
from tests.limits.sfv import parse_list


def _server_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def test_burst_then_refusal_with_headers(limiter):
    tier = make_tier(rate=5, burst=20)
    decisions = [limiter.acquire("acme-co", tier) for _ in range(21)]
    assert all(d.allowed and d.reason is Reason.OK for d in decisions[:20])
    refused = decisions[20]
    assert not refused.allowed and refused.reason is Reason.RATE_LIMITED
    assert 0 < refused.retry_after <= 0.2
    assert refused.used == 20 and refused.attempted == 21
    assert refused.headers["Retry-After"] == "1"
    # first call: 19 left, bucket full again after one emission interval
    assert parse_list(decisions[0].headers["RateLimit"]) == [("burst", {"r": 19, "t": 1})]


def test_header_syntax_is_structured_fields(limiter):
    tier = make_tier(rate=5, burst=20, hard_limit=1000)
    decision = limiter.acquire("acme-co", tier)
    policies = dict(parse_list(decision.headers["RateLimit-Policy"]))
    assert policies["burst"] == {"q": 20, "w": 4}
    assert policies["monthly"]["q"] == 1000 and 28 * 86400 <= policies["monthly"]["w"] <= 31 * 86400
    (name, params), = parse_list(decision.headers["RateLimit"])
    assert name in policies and set(params) == {"r", "t"} and params["r"] >= 0
    assert "Retry-After" not in decision.headers


def test_concurrent_hammering_never_exceeds_rate_times_time_plus_burst(redis_client, redis_prefix):
    """Six threads on one tenant while the function library is flushed (as after a failover)
    three times: never more than burst + rate x elapsed, never a degraded decision."""
    tier = make_tier(rate=40, burst=10)
    limiter = RateLimiter(redis_client, key_prefix=redis_prefix)
    admitted = degraded = 0
    lock = threading.Lock()
    start = _server_time(redis_client)
    stop_at = start + 1.5

    def hammer() -> None:
        nonlocal admitted, degraded
        while _server_time(redis_client) < stop_at:
            decision = limiter.acquire("hot-tenant", tier)
            with lock:
                admitted += decision.allowed
                degraded += decision.degraded

    def flush_library() -> None:
        for _ in range(3):
            time.sleep(0.3)
            redis_client.function_flush()

    with ThreadPoolExecutor(max_workers=7) as pool:
        for future in [pool.submit(hammer) for _ in range(6)] + [pool.submit(flush_library)]:
            future.result()
    elapsed = _server_time(redis_client) - start
    assert admitted <= tier.burst + tier.rate_per_second * elapsed
    assert admitted >= tier.burst + tier.rate_per_second * 1.0  # and it did admit at the rate
    assert degraded == 0


def test_quota_counters_exact_under_concurrency(redis_client, redis_prefix):
    tier = make_tier(rate=1_000_000, burst=1_000_000, hard_limit=150)
    limiter = RateLimiter(redis_client, key_prefix=redis_prefix)

    def burst_of_calls(_: int) -> list[bool]:
        return [limiter.acquire("busy-tenant", tier).allowed for _ in range(50)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [ok for batch in pool.map(burst_of_calls, range(8)) for ok in batch]
    assert results.count(True) == 150
    final = limiter.acquire("busy-tenant", tier, cost=0)
    assert (final.used, final.attempted) == (150, 400)
    assert final.reason is Reason.QUOTA_EXCEEDED


def test_quota_exceeded_retry_after_is_period_end(limiter):
    tier = make_tier(rate=1000, burst=1000, hard_limit=3)
    for _ in range(3):
        assert limiter.acquire("acme-co", tier).allowed
    refused = limiter.acquire("acme-co", tier)
    assert refused.reason is Reason.QUOTA_EXCEEDED
    assert refused.retry_after >= 1
    assert parse_list(refused.headers["RateLimit"])[0] == ("monthly", {"r": 0, "t": int(refused.headers["Retry-After"])})


def test_cost_zero_peeks_without_counting(limiter):
    tier = make_tier()
    limiter.acquire("acme-co", tier, cost=3)
    for _ in range(3):
        peek = limiter.acquire("acme-co", tier, cost=0)
        assert peek.allowed and (peek.used, peek.attempted) == (3, 3)


def test_suspended_tenant_refused_without_counting(limiter, redis_client):
    tier = make_tier()
    keys = TenantKeys.of("acme-co", limiter.key_prefix)
    redis_client.hset(keys.state, mapping={"state": "suspended"})
    decision = limiter.acquire("acme-co", tier)
    assert decision.reason is Reason.SUSPENDED and not decision.allowed
    assert decision.retry_after == 0 and "Retry-After" not in decision.headers
    assert (decision.used, decision.attempted) == (0, 0)


def test_hard_limit_state_refuses_only_in_its_period(limiter, redis_client):
    tier = make_tier()
    keys = TenantKeys.of("acme-co", limiter.key_prefix)
    period = limiter.acquire("acme-co", tier, cost=0).period
    redis_client.hset(keys.state, mapping={"state": "hard_limit", "period": period})
    assert limiter.acquire("acme-co", tier).reason is Reason.QUOTA_EXCEEDED
    redis_client.hset(keys.state, mapping={"period": period - 1})  # last period's breaker: reset
    assert limiter.acquire("acme-co", tier).allowed


def test_new_period_resets_counters_and_keeps_the_previous_totals(limiter, redis_client):
    tier = make_tier()
    keys = TenantKeys.of("acme-co", limiter.key_prefix)
    redis_client.hset(keys.quota, mapping={"p": 190001, "u": 77, "a": 99})
    decision = limiter.acquire("acme-co", tier)
    assert (decision.used, decision.attempted) == (1, 1)
    assert redis_client.hmget(keys.quota, "pp", "pu", "pa") == [b"190001", b"77", b"99"]
    ttl_ms = redis_client.pttl(keys.quota)
    assert ttl_ms > 35 * 86400 * 1000  # TTL set at creation: period end + a month of slack
    limiter.acquire("acme-co", tier)
    assert redis_client.pttl(keys.quota) <= ttl_ms  # ... and not pushed out by later calls


def test_function_flush_is_reloaded_transparently(limiter, redis_client):
    tier = make_tier()
    assert limiter.acquire("acme-co", tier).allowed
    redis_client.function_flush()
    decision = limiter.acquire("acme-co", tier)
    assert decision.allowed and not decision.degraded and decision.used == 2


def test_eval_fallback_when_functions_are_forbidden(redis_server_url, redis_client, redis_prefix):
    user, password = f"nofn-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    redis_client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                             commands=["+@all", "-function"])
    try:
        restricted = redis.Redis.from_url(redis_server_url, username=user, password=password)
        limiter = RateLimiter(restricted, key_prefix=redis_prefix)
        assert limiter.load() is False
        tier = make_tier()
        assert limiter.acquire("acme-co", tier).allowed
        redis_client.script_flush()  # NOSCRIPT after a failover: redis-py's Script reloads
        decision = limiter.acquire("acme-co", tier)
        assert decision.allowed and not decision.degraded and decision.used == 2
        restricted.close()
    finally:
        redis_client.acl_deluser(user)


def test_redis_stopped_gives_stricter_degraded_decisions_and_cached_refusals(redis_process):
    tier = make_tier(rate=5, burst=20)
    limiter = RateLimiter.from_url(redis_process.url, retry_redis_after_s=0.2)
    limiter.load()
    client = redis.Redis.from_url(redis_process.url)
    client.hset(TenantKeys.of("gone-tenant").state, mapping={"state": "suspended"})
    assert limiter.acquire("gone-tenant", tier).reason is Reason.SUSPENDED
    redis_process.stop()

    assert limiter.load() is True  # a start-up load with Redis away logs instead of raising
    decisions = [limiter.acquire("live-tenant", tier) for _ in range(30)]
    assert all(d.degraded for d in decisions)
    rate, burst = limiter.degraded.limits_for(tier)
    assert rate < tier.rate_per_second and burst < tier.burst
    assert sum(d.allowed for d in decisions) == burst  # stricter than the tier's burst of 20
    assert decisions[-1].reason is Reason.RATE_LIMITED and "Retry-After" in decisions[-1].headers
    assert limiter.acquire("gone-tenant", tier).reason is Reason.SUSPENDED  # remembered
    assert limiter.degraded.alert.total >= 31

    redis_process.start()
    time.sleep(0.2)  # the back-off before Redis is tried again
    back = limiter.acquire("live-tenant", tier)
    assert not back.degraded and back.allowed  # fresh server, function reloaded


def test_bad_input_is_refused_before_anything_is_counted(limiter):
    with pytest.raises(InvalidInput):
        limiter.acquire("Not A Tenant", "starter")
    with pytest.raises(InvalidInput):
        limiter.acquire("bad-{slot}", "starter")
    with pytest.raises(InvalidInput):
        limiter.acquire("acme-co", "platinum")
    with pytest.raises(InvalidInput):
        limiter.acquire("acme-co", "starter", cost=-1)
    with pytest.raises(InvalidInput, match="burst"):
        limiter.acquire("acme-co", make_tier(burst=5), cost=6)  # could never be admitted
    with pytest.raises(InvalidInput):
        RateLimiter(redis.Redis(), key_prefix="x{y}")


def test_tenant_keys_share_one_hash_slot():
    from redis.crc import key_slot

    keys = TenantKeys.of("acme-co", "prefix:")
    assert len({key_slot(k.encode()) for k in keys.as_list()}) == 1


def _month_script() -> str:
    body = EVAL_SOURCE.split("local function acquire", 1)[0]
    return body + "local p, s, e = month_of(tonumber(ARGV[1])) return {p, s, e}"


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=calendar.timegm((2199, 12, 31, 23, 59, 59))))
def test_lua_billing_month_matches_python(redis_server_url, now_s):
    client = redis.Redis.from_url(redis_server_url)
    period, start_s, end_s = client.eval(_month_script(), 0, now_s)
    now = datetime.fromtimestamp(now_s, timezone.utc)
    start = datetime(now.year, now.month, 1, tzinfo=timezone.utc)
    nxt = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=timezone.utc)
    assert (period, start_s, end_s) == (now.year * 100 + now.month, int(start.timestamp()), int(nxt.timestamp()))


def test_a_caller_supplied_period_gets_no_fresh_quota(limiter, redis_client):
    """Issue 10: the function once took the caller's period id if its window contained now, so a
    made-up period got a fresh monthly quota, counted under a period nobody bills."""
    from tenant_provisioner.limits.limiter import FUNCTION_NAME, TierPlan, billing_month

    tier = make_tier(hard_limit=3)
    for _ in range(3):
        assert limiter.acquire("acme-co", tier).allowed
    assert limiter.acquire("acme-co", tier).reason is Reason.QUOTA_EXCEEDED
    keys = TenantKeys.of("acme-co", limiter.key_prefix).as_list()
    forged = ("209912", "0", str(2 ** 40))  # a period whose window contains now
    reply = redis_client.fcall(FUNCTION_NAME, 3, *keys, *TierPlan.of(tier).args(1), *forged)
    server_now = redis_client.time()[0]
    assert reply[0] == 2 and reply[7] == int(billing_month(server_now)[0])  # refused, in the real period
    assert redis_client.hget(keys[1], "p") == billing_month(server_now)[0].encode()


def test_set_suspended_blocks_and_unblocks_at_once(limiter, redis_client):
    from tenant_provisioner.limits.state import set_suspended

    tier = make_tier()
    set_suspended(redis_client, "acme-co", True, key_prefix=limiter.key_prefix)
    assert limiter.acquire("acme-co", tier).reason is Reason.SUSPENDED
    assert redis_client.ttl(TenantKeys.of("acme-co", limiter.key_prefix).state) == -1  # no TTL while suspended
    set_suspended(redis_client, "acme-co", False, key_prefix=limiter.key_prefix)
    assert limiter.acquire("acme-co", tier).allowed


@settings(max_examples=25, deadline=None)
@given(hard=st.integers(min_value=1, max_value=40), costs=st.lists(st.integers(1, 5), min_size=1, max_size=60))
def test_quota_refuses_exactly_when_used_plus_cost_exceeds_the_hard_limit(redis_server_url, hard, costs):
    client = redis.Redis.from_url(redis_server_url)
    limiter = RateLimiter(client, key_prefix=f"test:{uuid.uuid4().hex[:10]}:")
    tier = make_tier(rate=1_000_000, burst=1_000_000, hard_limit=hard)
    used = attempted = 0
    try:
        for cost in costs:
            decision = limiter.acquire("acme-co", tier, cost=cost)
            attempted += cost
            assert decision.allowed == (used + cost <= hard)
            used += cost if decision.allowed else 0
            assert (decision.used, decision.attempted) == (used, attempted)
    finally:
        client.delete(*TenantKeys.of("acme-co", limiter.key_prefix).as_list())
        client.close()


def test_large_counters_stay_exact_integers(limiter, redis_client):
    tier = make_tier(hard_limit=10**16)
    keys = TenantKeys.of("acme-co", limiter.key_prefix)
    period = limiter.acquire("acme-co", tier, cost=0).period
    redis_client.hset(keys.quota, mapping={"p": period, "u": 10**15 - 1, "a": 10**15 - 1})
    decision = limiter.acquire("acme-co", tier)
    assert (decision.used, decision.attempted) == (10**15, 10**15)
    assert redis_client.hmget(keys.quota, "u", "a") == [b"1000000000000000", b"1000000000000000"]


# -- usage admitted while degraded is metered once Redis answers again ---------------------------
def _used(url: str, tenant_id: str) -> int:
    return int(redis.Redis.from_url(url).hget(TenantKeys.of(tenant_id).quota, "u") or 0)


def test_usage_admitted_while_redis_is_stopped_is_metered_when_it_is_back(redis_process):
    tier = make_tier(rate=5, burst=20)
    limiter = RateLimiter.from_url(redis_process.url, retry_redis_after_s=0.2)
    limiter.load()
    redis_process.stop()
    admitted = sum(limiter.acquire(tenant, tier).allowed for tenant in ("north-co", "south-co") * 15)
    assert admitted == 2 * limiter.degraded.limits_for(tier)[1]  # each tenant: the degraded burst
    assert limiter.backlog_units == admitted  # refused connections: Redis surely counted none

    redis_process.start()
    time.sleep(0.2)  # the back-off before Redis is tried again
    back = limiter.acquire("north-co", tier)
    assert not back.degraded and back.allowed
    assert limiter.backlog_units == 0 and limiter.unmetered_units == 0
    assert _used(redis_process.url, "north-co") + _used(redis_process.url, "south-co") == admitted + 1


def test_a_paused_redis_meters_every_admitted_request_once(redis_process):
    """SIGSTOP: the call in flight times out but runs when Redis resumes (so it is not owed again);
    the calls decided without Redis meanwhile are metered by the first call after the pause."""
    tier = make_tier(rate=50, burst=40)

    async def scenario() -> tuple[int, int, int]:
        client = aioredis.Redis.from_url(redis_process.url, socket_timeout=0.05, retry=Retry(NoBackoff(), 0))
        limiter = AsyncRateLimiter(client, retry_redis_after_s=0.3)
        await limiter.load()
        admitted = (await limiter.acquire("paused-co", tier)).allowed
        os.kill(redis_process.proc.pid, signal.SIGSTOP)
        try:
            decisions = [await limiter.acquire("paused-co", tier) for _ in range(12)]
        finally:
            os.kill(redis_process.proc.pid, signal.SIGCONT)
        assert all(d.degraded for d in decisions)
        admitted += sum(d.allowed for d in decisions)
        owed = limiter.backlog_units
        await asyncio.sleep(0.3)
        back = await limiter.acquire("paused-co", tier)
        assert not back.degraded and back.allowed
        await client.aclose()
        return admitted + 1, owed, limiter.backlog_units + limiter.unmetered_units

    admitted, owed, left = asyncio.run(scenario())
    assert owed == admitted - 3  # all but the first, the timed-out one and the last: decided without Redis
    assert left == 0
    assert _used(redis_process.url, "paused-co") == admitted


def test_the_backlog_is_bounded(redis_process):
    tier = make_tier(rate=5, burst=20)
    limiter = RateLimiter.from_url(redis_process.url, max_backlog_tenants=2)
    redis_process.stop()
    for tenant in ("one-co", "two-co", "three-co"):
        assert limiter.acquire(tenant, tier).allowed
    assert (limiter.backlog_units, limiter.unmetered_units) == (2, 1)


def test_metering_runs_as_a_plain_script_and_charges_the_rate_up_to_one_burst(redis_client, redis_prefix):
    """Servers without Functions meter through EVAL (the same Lua). Metered units use up the burst,
    never more: 25 units on a burst of 20 leave the tenant refused for one emission, not five."""
    tier = make_tier(rate=5, burst=20)
    plan, keys = TierPlan.of(tier), TenantKeys.of("script-co", redis_prefix)
    args = (repr(plan.emission_us), repr(plan.tolerance_us))
    used, attempted, period = redis_client.eval(METER_EVAL_SOURCE, 2, keys.gcra, keys.quota, 3, *args)
    assert (used, attempted) == (3, 3) and period == int(redis_client.hget(keys.quota, "p"))
    assert redis_client.eval(METER_EVAL_SOURCE, 2, keys.gcra, keys.quota, 22, *args)[:2] == [25, 25]
    limiter = RateLimiter(redis_client, key_prefix=redis_prefix)
    refused = limiter.acquire("script-co", tier)
    assert refused.reason is Reason.RATE_LIMITED and refused.retry_after <= 0.2
