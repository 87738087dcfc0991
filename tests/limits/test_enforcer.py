"""The enforcer end to end on real PostgreSQL + Redis (AWS through moto), with tiny tiers:
warning -> hard limit -> suspension -> DB login disabled -> resume, each notified exactly once."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import date

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from tenant_provisioner import audit
from tenant_provisioner.tenants import records, schema
from tenant_provisioner.runtime import compose
from tenant_provisioner.limits import RateLimiter, Reason, TenantKeys
from tenant_provisioner.limits.breakers import Level
from tenant_provisioner.limits.enforcer import Notice, run_cycle
from tenant_provisioner.limits.notify import AwsNotifier, describe
from tenant_provisioner.tenants.provisioning import CreateRequest
from tenant_provisioner.tiers import load_tiers

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later

ACTOR = "test:limits"
SENDER = "limits@example.com"


@pytest.fixture()
def aws(ops_topic):
    ses = boto3.client("sesv2", region_name="us-east-1")
    ses.create_email_identity(EmailIdentity=SENDER)

    class Aws:
        notifier = AwsNotifier(sender=SENDER, ops_topic_arn=ops_topic.arn, ses=ses, sns=ops_topic.sns)
        ops_messages = staticmethod(ops_topic.messages)

        @staticmethod
        def emails() -> list:
            return ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages

    return Aws


def _create(db, tenant_id: str, tier: str = "starter"):
    with db.connection() as conn:
        request = CreateRequest.parse({"tenant_id": tenant_id, "tier": tier, "admin_email": "admin@acme.test"})
        return lifecycle.create(conn, request, actor=ACTOR).tenant


def _cycle(db, redis_client, redis_prefix, aws):
    return run_cycle(db, redis_client, notifier=aws.notifier, lifecycle=lifecycle, key_prefix=redis_prefix,
                     actor=ACTOR)


def _actions(db, tenant_id: str) -> list[str]:
    with db.connection() as conn:
        return [e["action"] for e in audit.entries(conn, tenant_id) if e["action"].startswith("breaker.")]


def test_warning_hard_limit_suspension_login_disabled_resume(tiny_tiers, tenant_db, db, tenant_ids, redis_client,
                                                            redis_prefix, aws):
    tenant_id = tenant_ids("quota")
    tenant = _create(db, tenant_id)
    with db.connection() as conn:
        schema.set_password(conn, tenant.role_name, "the-password")
    stored = tenant_db.verifier(tenant.role_name)
    starter = load_tiers().get("starter")
    assert starter.api_requests.hard_limit == 100  # tiny tiers
    # The quota is what is under test here; lift the per-second rate so the test need not wait.
    unthrottled = dataclasses.replace(starter, rate_per_second=1e6, burst=10**6)
    limiter = RateLimiter(redis_client, key_prefix=redis_prefix)

    def calls(n: int) -> list[Reason]:
        return [limiter.acquire(tenant_id, unthrottled).reason for _ in range(n)]

    assert set(calls(89)) == {Reason.OK}
    assert _cycle(db, redis_client, redis_prefix, aws).transitions == []

    calls(1)  # 90 of 100: warning, and two enforcers racing notify once
    results = []
    racers = [threading.Thread(target=lambda: results.append(_cycle(db, redis_client, redis_prefix, aws)))
              for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(len(r.transitions) for r in results) == [0, 1]
    assert _actions(db, tenant_id) == ["breaker.warning"]
    assert len(aws.emails()) == 1 and aws.emails()[0].destinations["ToAddresses"] == ["admin@acme.test"]

    assert set(calls(10)) == {Reason.OK}
    assert calls(1) == [Reason.QUOTA_EXCEEDED]  # the limiter refuses at 100 % before any cycle
    result = _cycle(db, redis_client, redis_prefix, aws)
    assert [t["action"] for t in result.transitions] == ["breaker.hard_limit"]
    assert redis_client.hget(TenantKeys.of(tenant_id, redis_prefix).state, "state") == b"hard_limit"

    assert set(calls(98)) == {Reason.QUOTA_EXCEEDED}  # attempted: 199 of the 200 that suspend
    assert _cycle(db, redis_client, redis_prefix, aws).transitions == []
    calls(1)
    result = _cycle(db, redis_client, redis_prefix, aws)
    assert [t["action"] for t in result.transitions] == ["breaker.suspension"] and not result.errors
    assert calls(1) == [Reason.SUSPENDED]
    with db.connection() as conn:
        assert records.require(conn, tenant_id).state == "suspended"
    assert tenant_db.verifier(tenant.role_name) is None  # password login (all RDS offers) fails
    pages = [m for m in aws.ops_messages() if m["MessageAttributes"]["severity"]["Value"] == "page"]
    assert [json.loads(m["Message"])["level"] for m in pages] == ["suspended"]
    assert len(aws.emails()) == 3

    with db.connection() as conn:
        lifecycle.resume(conn, tenant_id, actor=ACTOR)
    result = _cycle(db, redis_client, redis_prefix, aws)
    assert [(t["cause"], t["to"]) for t in result.transitions] == [("resumed", "hard_limit")]
    assert calls(1) == [Reason.QUOTA_EXCEEDED]  # back, but the period's quota is still used up
    assert tenant_db.verifier(tenant.role_name) == stored is not None
    assert _actions(db, tenant_id) == ["breaker.warning", "breaker.hard_limit", "breaker.suspension",
                                       "breaker.reset"]
    assert len(aws.emails()) == 3  # a resume is not re-notified as a new breach
    with db.connection() as conn:
        usage = dict(conn.execute("SELECT quantity, admitted FROM control.tenant_usage WHERE tenant_id = %s",
                                  (tenant_id,)).fetchall())
    assert usage["api_requests"] == 100 and usage["storage_bytes"] > 0 and usage["seats"] == 0


def test_reporters_get_the_measured_usage_and_cannot_break_the_cycle(tiny_tiers, db, tenant_ids, redis_client,
                                                                     redis_prefix, aws):
    tenant_id = tenant_ids("report")
    _create(db, tenant_id, tier="pro")
    with db.connection() as conn:  # the limits provisioning step gave it breakers at ok
        levels = conn.execute("SELECT quantity, level, tier FROM control.tenant_breakers WHERE tenant_id = %s"
                              " ORDER BY quantity", (tenant_id,)).fetchall()
    assert levels == [("api_requests", "ok", "pro"), ("seats", "ok", "pro"), ("storage_bytes", "ok", "pro")]
    RateLimiter(redis_client, key_prefix=redis_prefix).acquire(tenant_id, "pro", cost=3)
    seen = []

    def broken(_result, _conn):
        raise RuntimeError("stripe is down")

    def billing(result, conn):
        rows = conn.execute("SELECT admitted FROM control.tenant_usage WHERE tenant_id = %s AND quantity = %s",
                            (tenant_id, "api_requests")).fetchall()
        seen.append((result, rows))

    def payment_grace_over(_result, conn):  # billing suspends a tenant from its reporter
        lifecycle.suspend(conn, tenant_id, reason="payment failed", actor=ACTOR)

    result = run_cycle(db, redis_client, notifier=aws.notifier, lifecycle=lifecycle, key_prefix=redis_prefix,
                       actor=ACTOR, tenant_ids=[tenant_id], reporters=[broken, billing, payment_grace_over])
    assert seen == [(result, [(3,)])]  # the cycle's usage is committed before reporters run
    # ... and the limiter learns of a reporter's suspension in the same cycle
    assert RateLimiter(redis_client, key_prefix=redis_prefix).acquire(tenant_id, "pro").reason is Reason.SUSPENDED
    (usage,) = result.usage
    assert usage.usage["api_requests"].admitted == 3
    assert len(result.errors) == 1 and "stripe is down" in result.errors[0]


def test_notice_text_fits_the_quantity():
    def notice(quantity: str, level: Level) -> Notice:
        return Notice(transition_id=1, tenant_id="acme-co", quantity=quantity, period_start=date(2026, 11, 1),
                      level=level, admitted=100, attempted=200, hard_limit=100, admin_email="a@acme.test",
                      company_name="Acme", tier="starter")

    subject, body = describe(notice("api_requests", Level.HARD_LIMIT))
    assert "429" in body and len(subject) <= 100 and "November 2026" in body
    assert "users" in describe(notice("seats", Level.HARD_LIMIT))[1]
    assert "suspended" in describe(notice("api_requests", Level.SUSPENDED))[1]


def test_a_suspension_subject_quotes_the_share_its_body_explains():
    suspended = Notice(transition_id=1, tenant_id="delta-co", quantity="api_requests", period_start=date(2026, 11, 1),
                       level=Level.SUSPENDED, admitted=100, attempted=213, hard_limit=100, admin_email="a@d.test",
                       company_name="Delta", tier="starter")
    subject, body = describe(suspended)
    assert subject.startswith("[delta-co] API requests: suspended (213% attempted of starter limit)")
    assert "213%" in body and "100%" not in subject
    assert "password" not in body.lower()


def test_a_tenant_on_an_unknown_tier_does_not_stop_the_others(tiny_tiers, db, tenant_ids, redis_client, redis_prefix,
                                                              aws):
    stray, fine = tenant_ids("stray"), tenant_ids("fine")
    _create(db, stray)
    _create(db, fine)
    with db.connection() as conn:  # a tier removed from the tiers file while a tenant is still on it
        conn.execute("UPDATE control.tenants SET tier = 'retired' WHERE tenant_id = %s", (stray,))
    result = run_cycle(db, redis_client, notifier=aws.notifier, lifecycle=lifecycle, key_prefix=redis_prefix,
                       actor=ACTOR, tenant_ids=[stray, fine])
    assert [u.tenant_id for u in result.usage] == [fine]
    assert len(result.errors) == 1 and stray in result.errors[0] and "retired" in result.errors[0]


def test_a_new_period_resets_last_periods_breakers_once(tiny_tiers, db, tenant_ids, redis_client, redis_prefix, aws):
    tenant_id = tenant_ids("rollover")
    _create(db, tenant_id)
    with db.connection() as conn:  # last period ended at the hard limit
        conn.execute("UPDATE control.tenant_breakers SET level = 'hard_limit',"
                     " period_start = (period_start - interval '1 month')::date"
                     " WHERE tenant_id = %s AND quantity = 'api_requests'", (tenant_id,))
    first = _cycle(db, redis_client, redis_prefix, aws)
    assert [(t["cause"], t["to"], t["action"]) for t in first.transitions if t["tenant_id"] == tenant_id] == [
        ("new_period", "ok", "breaker.reset")]
    again = _cycle(db, redis_client, redis_prefix, aws)
    assert [t for t in again.transitions if t["tenant_id"] == tenant_id] == []
    assert _actions(db, tenant_id) == ["breaker.reset"]
    assert redis_client.hget(TenantKeys.of(tenant_id, redis_prefix).state, "state") == b"ok"
    assert not aws.emails()  # a reset is recorded, not mailed
