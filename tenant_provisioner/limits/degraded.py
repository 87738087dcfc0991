"""Fail-conservative decisions for when Redis cannot answer: never open, always stricter.

Each pod keeps its own GCRA per tenant at ``share`` of the tier's rate and burst (``share`` is
the pod's fraction of the fleet, times a safety factor, so N pods together stay under the tier
rate), remembers the last refusals Redis gave (suspended: until Redis says otherwise;
quota exceeded: until the period ends) and emits the ``RateLimiterDegraded`` alert metric.
Quota counters cannot be kept exactly here; the limiter counts what this admits and meters it
when Redis answers again (`limiter._Core.backlog`, ``FCALL tp_meter``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from tenant_provisioner.errors import ConfigError
from tenant_provisioner.limits.headers import BURST_POLICY, PolicyState, delta_seconds
from tenant_provisioner.runtime.metrics import LimitsMetrics
from tenant_provisioner.tiers import Tier

log = logging.getLogger(__name__)

SAFETY_FACTOR = 0.5


def degraded_share(replicas: int) -> float:
    """This pod's share of a tier's rate in degraded mode: SAFETY_FACTOR / replicas.

    `replicas` is the number of pods sharing a tenant's rate while Redis is away (the services
    read it from ``RATE_LIMIT_REPLICAS`` in their settings class).
    """
    if replicas < 1:
        raise ConfigError(f"RATE_LIMIT_REPLICAS must be >= 1, got {replicas}")
    return SAFETY_FACTOR / replicas


class DegradedAlert:
    """Counts degraded decisions and emits one EMF metric per `interval_s` (not one per request)."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self.total = 0
        self._pending = 0
        self._last_emit = float("-inf")
        self._lock = threading.Lock()

    def record(self) -> None:
        with self._lock:
            self.total += 1
            self._pending += 1
            now = time.monotonic()
            if now - self._last_emit < self.interval_s:
                return
            count, self._pending, self._last_emit = self._pending, 0, now
        log.error("rate limiter degraded: %d decision(s) made without Redis", count)
        with single_metric(name=LimitsMetrics.RATE_LIMITER_DEGRADED, unit=MetricUnit.Count, value=count,
                           namespace=LimitsMetrics.NAMESPACE) as metric:
            metric.add_dimension(name="component", value="rate-limiter")


@dataclass
class _Cached:
    reason: str
    until: float  # on the limiter's clock; math.inf = until Redis says otherwise


@dataclass
class DegradedLimiter:
    """In-process GCRA plus the cache of refusals last seen from Redis."""

    share: float = SAFETY_FACTOR  # one replica: degraded_share(1)
    alert: DegradedAlert = field(default_factory=DegradedAlert)
    clock: Callable[[], float] = time.monotonic
    _tat: dict[str, float] = field(default_factory=dict)
    _refusals: dict[str, _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ConfigError(f"degraded share must be in (0, 1], got {self.share}")

    def remember(self, tenant_id: str, reason: str, retry_after: float) -> None:
        """Keep Redis' last refusal (or its lifting) for use while Redis is away."""
        with self._lock:
            if reason == "suspended":
                self._refusals[tenant_id] = _Cached(reason, math.inf)
            elif reason == "quota_exceeded":
                self._refusals[tenant_id] = _Cached(reason, self.clock() + retry_after)
            elif reason == "ok":
                self._refusals.pop(tenant_id, None)

    def limits_for(self, tier: Tier) -> tuple[float, int]:
        """(rate per second, burst) this pod allows a tenant of `tier` while degraded."""
        return tier.rate_per_second * self.share, max(1, math.floor(tier.burst * self.share))

    def decide(self, tenant_id: str, tier: Tier, cost: int) -> tuple[str, float, PolicyState]:
        """(reason, retry_after seconds, burst policy state) without Redis."""
        self.alert.record()
        rate, burst = self.limits_for(tier)
        emission = 1.0 / rate
        window = max(1, delta_seconds(burst / rate))
        now = self.clock()
        with self._lock:
            cached = self._refusals.get(tenant_id)
            tat = max(self._tat.get(tenant_id, now), now)
            if cached and cached.until > now:
                retry = 0.0 if cached.reason == "suspended" else cached.until - now
                return cached.reason, retry, self._policy(burst, window, now, tat, emission)
            new_tat = tat + emission * cost
            allow_at = new_tat - emission * burst
            if now < allow_at:
                return "rate_limited", allow_at - now, self._policy(burst, window, now, tat, emission)
            if cost:
                self._tat[tenant_id] = new_tat
            return "ok", 0.0, self._policy(burst, window, now, new_tat, emission)

    @staticmethod
    def _policy(burst: int, window: int, now: float, tat: float, emission: float) -> PolicyState:
        remaining = max(0, math.floor((now + emission * burst - tat) / emission + 1e-9))
        return PolicyState(BURST_POLICY, burst, window, remaining, delta_seconds(tat - now))
