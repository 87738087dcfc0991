"""The in-process fallback on a simulated clock: stricter than the tier, never open."""

from __future__ import annotations

from hypothesis import given, settings
import pytest
from hypothesis import strategies as st

from services.settings import ServiceSettings
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.limits.degraded import DegradedAlert, DegradedLimiter, degraded_share
from tests.limits.conftest import make_tier


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=200)
@given(replicas=st.integers(1, 8), gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=200))
def test_admits_at_most_its_share_of_rate_and_burst(replicas, gaps):
    clock = Clock()
    limiter = DegradedLimiter(share=degraded_share(replicas), alert=DegradedAlert(interval_s=1e9), clock=clock)
    tier = make_tier(rate=20, burst=40)
    rate, burst = limiter.limits_for(tier)
    start, admitted = clock.now, 0
    for gap in gaps:
        clock.now += gap
        reason, retry_after, _ = limiter.decide("acme-co", tier, 1)
        admitted += reason == "ok"
        assert reason in ("ok", "rate_limited") and (reason == "ok") == (retry_after == 0)
    assert rate <= tier.rate_per_second / 2 and burst <= tier.burst / 2
    assert admitted <= burst + rate * (clock.now - start) + 1e-9


def test_remembered_refusals_hold_while_redis_is_away():
    clock = Clock()
    limiter = DegradedLimiter(share=0.5, alert=DegradedAlert(interval_s=1e9), clock=clock)
    tier = make_tier()
    limiter.remember("out-tenant", "suspended", 0)
    limiter.remember("full-tenant", "quota_exceeded", 60)
    clock.now += 10_000
    assert limiter.decide("out-tenant", tier, 1)[0] == "suspended"
    assert limiter.decide("full-tenant", tier, 1)[0] == "ok"  # its period ended meanwhile
    limiter.remember("full-tenant", "quota_exceeded", 60)
    reason, retry_after, _ = limiter.decide("full-tenant", tier, 1)
    assert reason == "quota_exceeded" and 0 < retry_after <= 60
    limiter.remember("out-tenant", "ok", 0)  # Redis said it is back
    assert limiter.decide("out-tenant", tier, 1)[0] == "ok"


SERVICE_ENV = {"DATABASE_URL": "postgresql://app@db:5432/app", "REDIS_URL": "redis://cache:6379/0"}


def test_replicas_come_from_the_service_settings():
    assert ServiceSettings.from_env(SERVICE_ENV).rate_limit_replicas == 1
    replicas = ServiceSettings.from_env({**SERVICE_ENV, "RATE_LIMIT_REPLICAS": "4"}).rate_limit_replicas
    assert degraded_share(replicas) == 0.125
    assert DegradedLimiter().share == degraded_share(1)  # unset: one replica, as before
    with pytest.raises(ConfigError, match="RATE_LIMIT_REPLICAS must be >= 1"):
        ServiceSettings.from_env({**SERVICE_ENV, "RATE_LIMIT_REPLICAS": "0"})
    with pytest.raises(ConfigError, match="RATE_LIMIT_REPLICAS must be a whole number"):
        ServiceSettings.from_env({**SERVICE_ENV, "RATE_LIMIT_REPLICAS": "two"})
    with pytest.raises(ConfigError, match="RATE_LIMIT_REPLICAS must be >= 1"):
        degraded_share(0)
