"""The breaker state the limiter reads from Redis, and the usage counters it leaves there.

The enforcer (and anything that suspends or resumes a tenant) calls `push_state` so the limiter
acts at once: ``suspended`` refuses everything with 403 and has no TTL; ``hard_limit`` refuses
metered calls for the period it names; other levels are informative.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import redis

from tenant_provisioner.limits.breakers import Level
from tenant_provisioner.limits.limiter import TenantKeys, billing_month

STATE_SLACK_S = 35 * 86400


def period_id(period_start: date) -> int:
    return period_start.year * 100 + period_start.month


def period_start_of(period: int) -> date:
    return date(period // 100, period % 100, 1)


def server_period(client: redis.Redis) -> date:
    """The billing period by the Redis server's clock: the same clock the limiter counts with."""
    seconds, _ = client.time()
    return period_start_of(int(billing_month(seconds)[0]))


def push_state(client: redis.Redis, tenant_id: str, *, suspended: bool, level: Level, period_start: date,
               key_prefix: str = "") -> None:
    """Write the tenant's limiter state (one MULTI, one slot)."""
    key = TenantKeys.of(tenant_id, key_prefix).state
    label = "suspended" if suspended else level.label
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping={"state": label, "period": period_id(period_start)})
    if suspended:
        pipe.persist(key)
    else:
        pipe.expire(key, STATE_SLACK_S)
    pipe.execute()


@dataclass(frozen=True)
class Counters:
    """Admitted/attempted API requests of the current and the previous period from Redis."""

    current: tuple[int, int]
    previous: tuple[int, int] | None  # None when Redis holds nothing for the previous period


def read_counters(client: redis.Redis, tenant_ids: list[str], period_start: date,
                  key_prefix: str = "") -> dict[str, Counters]:
    """Counters of many tenants in one pipelined round trip."""
    current = period_id(period_start)
    previous = period_id(date(period_start.year - (period_start.month == 1), (period_start.month - 2) % 12 + 1, 1))
    pipe = client.pipeline(transaction=False)
    for tenant_id in tenant_ids:
        pipe.hmget(TenantKeys.of(tenant_id, key_prefix).quota, "p", "u", "a", "pp", "pu", "pa")
    result: dict[str, Counters] = {}
    for tenant_id, (p, u, a, pp, pu, pa) in zip(tenant_ids, pipe.execute()):
        now = (int(u), int(a)) if p is not None and int(p) == current else (0, 0)
        if p is not None and int(p) == previous:
            prev: tuple[int, int] | None = (int(u), int(a))
        elif pp is not None and int(pp) == previous:
            prev = (int(pu), int(pa))
        else:
            prev = None
        result[tenant_id] = Counters(current=now, previous=prev)
    return result


def set_suspended(client: redis.Redis, tenant_id: str, suspended: bool, *, key_prefix: str = "") -> None:
    """For `lifecycle.suspend` / `resume` (any cause): make the limiter refuse (403) or serve the
    tenant at once instead of at the next enforcer cycle, which then restores the exact level."""
    push_state(client, tenant_id, suspended=suspended, level=Level.OK, period_start=server_period(client),
               key_prefix=key_prefix)
