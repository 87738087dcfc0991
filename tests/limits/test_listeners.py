"""An operator's suspend/resume reaches the limiter at once, not at the next enforcer cycle."""

from __future__ import annotations

import pytest
import redis

from tenant_provisioner.limits import RateLimiter, Reason
from tenant_provisioner.runtime import compose
from tenant_provisioner.tenants.provisioning import CreateRequest

ACTOR = "test:listeners"


def _create(conn, lifecycle, tenant_id: str, tier: str) -> None:
    lifecycle.create(conn, CreateRequest.parse({"tenant_id": tenant_id, "tier": tier,
                                                "admin_email": "admin@acme.test"}), actor=ACTOR)


def test_suspend_and_resume_reach_the_limiter_at_once(db, tenant_ids, redis_client, redis_prefix):
    lifecycle = compose.lifecycle(redis_client=redis_client, key_prefix=redis_prefix)
    tenant_id = tenant_ids("hooked")
    limiter = RateLimiter(redis_client, key_prefix=redis_prefix)
    with db.connection() as conn:
        _create(conn, lifecycle, tenant_id, "pro")
    assert limiter.acquire(tenant_id, "pro").reason is Reason.OK

    with db.connection() as conn:
        lifecycle.suspend(conn, tenant_id, reason="abuse report", actor=ACTOR)
    assert limiter.acquire(tenant_id, "pro").reason is Reason.SUSPENDED

    with db.connection() as conn:
        lifecycle.resume(conn, tenant_id, actor=ACTOR)
    assert limiter.acquire(tenant_id, "pro").reason is Reason.OK


@pytest.mark.parametrize(("redis_url", "logged"), [
    (None, "next enforcer cycle"),                          # no Redis in this process (e.g. the webhook)
    ("redis://127.0.0.1:1/0", "after_suspend listener"),    # configured, but nothing listens
])
def test_the_suspension_stands_whatever_redis_does(db, tenant_ids, caplog, redis_url, logged):
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1) if redis_url else None
    lifecycle = compose.lifecycle(redis_client=client)
    tenant_id = tenant_ids("noredis")
    with db.connection() as conn:
        _create(conn, lifecycle, tenant_id, "starter")
        tenant = lifecycle.suspend(conn, tenant_id, reason="abuse report", actor=ACTOR)
    assert tenant.state == "suspended"
    assert logged in caplog.text
