"""An operator's suspend/resume reaches the limiter at once, not at the next enforcer cycle."""

from __future__ import annotations

import pytest

from tenant_provisioner.tenants import lifecycle
from tenant_provisioner.limits import RateLimiter, Reason
from tenant_provisioner.tenants.provisioning import CreateRequest

ACTOR = "test:hooks"


def test_suspend_and_resume_reach_the_limiter_at_once(db, tenant_ids, redis_client, redis_prefix,
                                                       redis_server_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_server_url)
    monkeypatch.setenv("LIMITER_KEY_PREFIX", redis_prefix)
    tenant_id = tenant_ids("hooked")
    limiter = RateLimiter(redis_client, key_prefix=redis_prefix)
    with db.connection() as conn:
        lifecycle.create(conn, CreateRequest.parse({"tenant_id": tenant_id, "tier": "pro",
                                                    "admin_email": "admin@acme.test"}), actor=ACTOR)
    assert limiter.acquire(tenant_id, "pro").reason is Reason.OK

    with db.connection() as conn:
        lifecycle.suspend(conn, tenant_id, reason="abuse report", actor=ACTOR)
    assert limiter.acquire(tenant_id, "pro").reason is Reason.SUSPENDED

    with db.connection() as conn:
        lifecycle.resume(conn, tenant_id, actor=ACTOR)
    assert limiter.acquire(tenant_id, "pro").reason is Reason.OK


@pytest.mark.parametrize(("redis_url", "logged"), [
    (None, "next enforcer cycle"),                      # no Redis configured here (local CLI)
    ("redis://127.0.0.1:1/0", "after_suspend hook"),    # configured, but nothing listens
])
def test_the_suspension_stands_whatever_redis_does(db, tenant_ids, monkeypatch, caplog, redis_url, logged):
    monkeypatch.delenv("REDIS_HOST", raising=False)
    if redis_url:
        monkeypatch.setenv("REDIS_URL", redis_url)
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
    tenant_id = tenant_ids("noredis")
    with db.connection() as conn:
        lifecycle.create(conn, CreateRequest.parse({"tenant_id": tenant_id, "tier": "starter",
                                                    "admin_email": "admin@acme.test"}), actor=ACTOR)
        tenant = lifecycle.suspend(conn, tenant_id, reason="abuse report", actor=ACTOR)
    assert tenant.state == "suspended"
    assert logged in caplog.text
