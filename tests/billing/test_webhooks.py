"""Webhook events signed with Stripe's scheme → tenant state; bad signatures and replays change nothing."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from tenant_provisioner import audit
from tenant_provisioner.tenants import records
from tenant_provisioner.runtime import compose
from tenant_provisioner.billing import payments, webhooks
from tenant_provisioner.billing.accounts import Accounts, load_account
from tenant_provisioner.tiers import load_tiers
from tests.billing.support import WEBHOOK_SECRET, create_tenant
from tests.billing.stripe_server import sign_webhook

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later


@pytest.fixture()
def tenant(conn, client, settings, synced, fake_stripe):
    create_tenant(conn, client, settings)
    account = load_account(conn, "acme-corp")
    return account


def deliver(conn, settings, event, *, secret=WEBHOOK_SECRET, signature=None, timestamp=None):
    payload = json.dumps(event).encode()
    header = signature if signature is not None else sign_webhook(payload, secret, timestamp=timestamp)
    return webhooks.handle(conn, payload, header, secret=WEBHOOK_SECRET, settings=settings,
                           lifecycle=lifecycle)


def state(conn):
    tenant = records.require(conn, "acme-corp")
    return tenant.state, tenant.tier, tenant.suspended_reason


def actions(conn):
    return [e["action"] for e in audit.entries(conn, "acme-corp") if e["action"].startswith("billing.")]


def failed_invoice(fake, account, *, created=None, invoice=None):
    invoice = invoice or fake.invoice(account.stripe_customer_id, account.stripe_subscription_id, status="open")
    return fake.event("invoice.payment_failed", invoice, created=created)


def paid_invoice(fake, account, *, created=None, of=None, event_type="invoice.paid"):
    """`of`: the failed-payment event whose invoice is now paid; None: some other invoice."""
    invoice = (dict(of["data"]["object"], status="paid") if of is not None
               else fake.invoice(account.stripe_customer_id, account.stripe_subscription_id, status="paid"))
    return fake.event(event_type, invoice, created=created)


def test_payment_failed_starts_grace_then_the_enforcer_suspends(fake_stripe, conn, settings, tenant):
    result = deliver(conn, settings, failed_invoice(fake_stripe, tenant))
    assert result.status == 200 and result.outcome.startswith("grace until")
    assert state(conn) == ("active", "pro", None)  # still served during grace
    row = conn.execute("SELECT payment_state, grace_until FROM control.billing_accounts").fetchone()
    assert row[0] == "grace"
    assert payments.enforce_payment_grace(conn, lifecycle, now=row[1] - timedelta(seconds=1)).suspended == ()
    assert payments.enforce_payment_grace(conn, lifecycle, now=row[1]).suspended == ("acme-corp",)
    assert state(conn) == ("suspended", "pro", payments.NON_PAYMENT_REASON)
    assert payments.enforce_payment_grace(conn, lifecycle, now=row[1] + timedelta(days=1)).suspended == ()  # once
    assert actions(conn) == ["billing.payment_failed", "billing.suspended_for_non_payment"]


def test_grace_is_not_extended_by_stripe_retrying_the_same_debt(fake_stripe, conn, settings, tenant):
    now = int(time.time())
    deliver(conn, settings, failed_invoice(fake_stripe, tenant, created=now - 3 * 86400))
    first = conn.execute("SELECT grace_until FROM control.billing_accounts").fetchone()[0]
    deliver(conn, settings, failed_invoice(fake_stripe, tenant, created=now))
    assert conn.execute("SELECT grace_until FROM control.billing_accounts").fetchone()[0] == first
    assert first == datetime.fromtimestamp(now - 3 * 86400, timezone.utc) + timedelta(days=7)


def test_paid_invoice_resumes_a_tenant_suspended_for_non_payment(fake_stripe, conn, settings, tenant):
    failed = failed_invoice(fake_stripe, tenant, created=int(time.time()) - 10)
    deliver(conn, settings, failed)
    payments.enforce_payment_grace(conn, lifecycle, now=datetime.now(timezone.utc) + timedelta(days=8))
    result = deliver(conn, settings, paid_invoice(fake_stripe, tenant, of=failed))
    assert result.outcome == "payment recovered; tenant resumed"
    assert state(conn) == ("active", "pro", None)
    assert conn.execute("SELECT payment_state, grace_until FROM control.billing_accounts").fetchone() == ("ok", None)
    assert actions(conn)[-1] == "billing.payment_recovered"


def test_an_unrelated_paid_invoice_does_not_lift_a_non_payment_suspension(fake_stripe, conn, settings, tenant):
    """Issue 10: any signed invoice.paid (even an unrelated $0 one) used to resume the tenant."""
    first = failed_invoice(fake_stripe, tenant, created=int(time.time()) - 20)
    second = failed_invoice(fake_stripe, tenant, created=int(time.time()) - 15)
    deliver(conn, settings, first)
    deliver(conn, settings, second)
    payments.enforce_payment_grace(conn, lifecycle, now=datetime.now(timezone.utc) + timedelta(days=8))
    zero = fake_stripe.invoice(tenant.stripe_customer_id, tenant.stripe_subscription_id, status="paid", amount_due=0)
    result = deliver(conn, settings, fake_stripe.event("invoice.paid", zero, created=int(time.time()) - 10))
    assert "still unpaid" in result.outcome
    assert state(conn) == ("suspended", "pro", payments.NON_PAYMENT_REASON)
    deliver(conn, settings, paid_invoice(fake_stripe, tenant, of=first, created=int(time.time()) - 5))
    assert state(conn) == ("suspended", "pro", payments.NON_PAYMENT_REASON)  # the second is still unpaid
    result = deliver(conn, settings, paid_invoice(fake_stripe, tenant, of=second, event_type="invoice.voided"))
    assert result.outcome == "payment recovered; tenant resumed"
    assert state(conn) == ("active", "pro", None)


@pytest.mark.parametrize("body", [b"[]", b"null", b'"evt"', b"42", b'{"id": "evt_1", "type": "x", "data": []}',
                                  b"\xff\xfe"])
def test_a_validly_signed_body_that_is_not_an_event_object_is_400(fake_stripe, conn, settings, tenant, body):
    result = webhooks.handle(conn, body, sign_webhook(body, WEBHOOK_SECRET), secret=WEBHOOK_SECRET, settings=settings,
                             lifecycle=lifecycle)
    assert result.status == 400 and "Stripe event" in result.outcome


def test_paid_invoice_does_not_lift_another_suspension(fake_stripe, conn, settings, tenant):
    failed = failed_invoice(fake_stripe, tenant, created=int(time.time()) - 10)
    deliver(conn, settings, failed)
    lifecycle.suspend(conn, "acme-corp", reason="breaker: API requests at 200 %", actor="enforcer")
    deliver(conn, settings, paid_invoice(fake_stripe, tenant, of=failed))
    assert state(conn) == ("suspended", "pro", "breaker: API requests at 200 %")


def test_an_old_failure_arriving_after_the_payment_is_ignored(fake_stripe, conn, settings, tenant):
    now = int(time.time())
    deliver(conn, settings, paid_invoice(fake_stripe, tenant, created=now))
    result = deliver(conn, settings, failed_invoice(fake_stripe, tenant, created=now - 60))
    assert result.outcome.startswith("ignored: older")
    assert conn.execute("SELECT payment_state FROM control.billing_accounts").fetchone()[0] == "ok"


def test_subscription_updated_changes_the_tier(fake_stripe, conn, client, settings, synced, tenant, capsys,
                                              monkeypatch):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)  # the webhook Lambda has no API key, needs none
    # The customer moved to business in Stripe (portal); Stripe sends the updated subscription.
    sub = fake_stripe.state.subscriptions[tenant.stripe_subscription_id]
    flat = next(i for i in sub["items"]["data"] if i["price"]["metadata"]["kind"] == "flat")
    client.v1.subscriptions.update(sub["id"], params={"items": [{"id": flat["id"],
                                                                  "price": synced.prices["business"].flat}]})
    result = deliver(conn, settings, fake_stripe.event("customer.subscription.updated", sub))
    assert result.outcome == "tier changed pro -> business"
    assert state(conn)[1] == "business" and load_account(conn, "acme-corp").tier == "business"
    assert "billing.tier_changed" in actions(conn)
    assert "BILLING SKIPPED" not in capsys.readouterr().err
    assert fake_stripe.count_requests("POST", "^/v1/subscriptions/") == 1  # only the customer's own change
    # Our own tier change echoes back from Stripe as an update: it must be a no-op, not a loop.
    Accounts(client, settings).change_tier(conn, "acme-corp", load_tiers().get("business"))
    echo = deliver(conn, settings, fake_stripe.event("customer.subscription.updated", sub))
    assert echo.outcome.startswith("no change")


def test_subscription_deleted_stops_service_and_schedules_offboarding(fake_stripe, conn, client, settings, tenant):
    client.v1.subscriptions.cancel(tenant.stripe_subscription_id)  # by the customer, in Stripe
    sub = fake_stripe.state.subscriptions[tenant.stripe_subscription_id]
    result = deliver(conn, settings, fake_stripe.event("customer.subscription.deleted", sub))
    assert result.outcome.startswith("offboarding scheduled")
    assert state(conn) == ("suspended", "pro", payments.SUBSCRIPTION_ENDED_REASON)
    assert payments.due_offboardings(conn) == []
    assert payments.due_offboardings(conn, now=datetime.now(timezone.utc) + timedelta(days=31)) == ["acme-corp"]
    assert actions(conn) == ["billing.offboarding_scheduled"]


def test_replayed_event_is_acknowledged_and_ignored(fake_stripe, conn, settings, tenant):
    event = failed_invoice(fake_stripe, tenant)
    deliver(conn, settings, event)
    again = deliver(conn, settings, event)
    assert (again.status, again.outcome) == (200, "ignored: event already processed")
    assert actions(conn) == ["billing.payment_failed"]


@pytest.mark.parametrize("signature", ["", "t=1,v1=deadbeef", "garbage"])
def test_missing_or_bad_signature_is_400_and_changes_nothing(fake_stripe, conn, settings, tenant, signature):
    result = deliver(conn, settings, failed_invoice(fake_stripe, tenant), signature=signature)
    assert result.status == 400
    assert conn.execute("SELECT count(*) FROM control.stripe_webhook_events").fetchone()[0] == 0
    assert conn.execute("SELECT payment_state FROM control.billing_accounts").fetchone()[0] == "ok"


def test_wrong_secret_and_stale_timestamp_are_rejected(fake_stripe, conn, settings, tenant):
    event = failed_invoice(fake_stripe, tenant)
    assert deliver(conn, settings, event, secret="whsec_someone_else").status == 400
    assert deliver(conn, settings, event, timestamp=int(time.time()) - 600).status == 400
    assert actions(conn) == []


def test_events_for_strangers_and_unhandled_types_are_acknowledged(fake_stripe, conn, settings, tenant):
    stranger = fake_stripe.event("invoice.payment_failed", fake_stripe.invoice("cus_stranger", None, status="open"))
    assert deliver(conn, settings, stranger).outcome.startswith("ignored: customer")
    other = fake_stripe.event("charge.refunded",
                              {"id": "ch_1", "object": "charge", "customer": tenant.stripe_customer_id})
    assert deliver(conn, settings, other).outcome == "ignored: event type not handled"
    assert actions(conn) == []


def test_an_old_subscription_update_arriving_after_the_deletion_changes_nothing(fake_stripe, conn, client, settings,
                                                                               synced, tenant):
    sub = fake_stripe.state.subscriptions[tenant.stripe_subscription_id]
    older = json.loads(json.dumps(sub))
    flat = next(i for i in older["items"]["data"] if i["price"]["metadata"]["kind"] == "flat")
    flat["price"] = fake_stripe.state.prices[synced.prices["business"].flat]  # an upgrade, delivered late
    now = int(time.time())
    client.v1.subscriptions.cancel(sub["id"])
    deliver(conn, settings, fake_stripe.event("customer.subscription.deleted", sub, created=now))
    late = deliver(conn, settings, fake_stripe.event("customer.subscription.updated", older, created=now - 60))
    assert late.outcome == "ignored: older than the last subscription event applied"
    assert state(conn)[1] == "pro"


def test_first_invoice_never_paid_ends_like_a_deletion(fake_stripe, conn, settings, tenant):
    sub = dict(fake_stripe.state.subscriptions[tenant.stripe_subscription_id], status="incomplete_expired")
    result = deliver(conn, settings, fake_stripe.event("customer.subscription.updated", sub))
    assert result.outcome.startswith("offboarding scheduled")
    assert state(conn) == ("suspended", "pro", payments.SUBSCRIPTION_ENDED_REASON)


def test_event_ids_are_remembered_as_long_as_stripe_can_resend_them(fake_stripe, conn, settings, tenant):
    event = failed_invoice(fake_stripe, tenant)
    deliver(conn, settings, event)
    now = datetime.now(timezone.utc)
    assert webhooks.forget_old_events(conn, now=now + timedelta(days=30)) == 0
    assert webhooks.forget_old_events(conn, now=now + timedelta(days=36)) == 1
