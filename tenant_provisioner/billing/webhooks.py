"""Stripe webhook events → tenant state, each applied exactly once.

`handle` verifies the ``Stripe-Signature`` header with the `stripe` library (HMAC of the raw body
with the endpoint's signing secret, 5-minute tolerance) before reading anything: a missing or bad
signature is a 400 and changes nothing. The event id is recorded in
``control.stripe_webhook_events`` in the same transaction as its effect, so a replayed or
re-delivered event is acknowledged (200) and ignored. Events about customers we do not know, or
of types we do not act on, are recorded and acknowledged too, so Stripe stops retrying them.

| event | effect |
| --- | --- |
| ``invoice.payment_failed`` | invoice remembered as unpaid; payment grace (configured days), then suspension by the enforcer |
| ``invoice.paid``, ``invoice.voided`` | that invoice settled; once no failed invoice is open: grace ended, resumed if suspended for non-payment |
| ``customer.subscription.updated`` | tenant moved to the tier of its flat price; ``incomplete_expired`` as deleted |
| ``customer.subscription.deleted`` | service stopped, offboarding scheduled |
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import psycopg
import stripe

from tenant_provisioner import audit
from tenant_provisioner.tenants import records
from tenant_provisioner.tenants.events import Origin
from tenant_provisioner.tenants.lifecycle import Lifecycle
from tenant_provisioner.billing import payments
from tenant_provisioner.billing.accounts import BillingAccount, account_for_customer
from tenant_provisioner.billing.catalog import FLAT
from tenant_provisioner.billing.settings import BillingSettings
from tenant_provisioner.errors import InvalidInput, TenantConflict
from tenant_provisioner.tiers import load_tiers

logger = logging.getLogger(__name__)
ACTOR = "stripe:webhook"
SIGNATURE_TOLERANCE_SECONDS = 300
# Stripe re-sends an event for at most 3 days automatically and 30 days by hand: ids older than
# this can never come back, so they need not be remembered.
EVENT_MEMORY = timedelta(days=35)


@dataclass(frozen=True)
class WebhookResult:
    status: int
    event_id: str | None
    outcome: str

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "outcome": self.outcome}


def verify(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event, if `signature` is Stripe's for `payload`; InvalidInput otherwise."""
    if not signature:
        raise InvalidInput("Stripe-Signature", "header missing")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS)
        event = json.loads(text)
    except stripe.SignatureVerificationError:
        raise InvalidInput("Stripe-Signature", "signature does not match the payload") from None
    except ValueError:  # not UTF-8, not JSON
        raise InvalidInput("body", "not a JSON Stripe event") from None
    data = event.get("data") if isinstance(event, dict) else None
    if (not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(data, dict)
            or not isinstance(data.get("object"), dict) or not isinstance(event.get("type"), str)):
        raise InvalidInput("body", "not a Stripe event (a JSON object with id, type and data.object)")
    return event


def _customer_of(obj: dict[str, Any]) -> str | None:
    customer = obj.get("customer")
    return customer.get("id") if isinstance(customer, dict) else customer


def _tier_of(subscription: dict[str, Any]) -> str | None:
    """The tier named by the subscription's flat price (our catalog puts it in price metadata)."""
    for item in subscription.get("items", {}).get("data", []):
        metadata = (item.get("price") or {}).get("metadata") or {}
        if metadata.get("kind") == FLAT and metadata.get("tier"):
            return metadata["tier"]
    return None


class _Dispatcher:
    def __init__(self, conn: psycopg.Connection, settings: BillingSettings, lifecycle: Lifecycle,
                 event: dict[str, Any]) -> None:
        self.conn = conn
        self.settings = settings
        self.lifecycle = lifecycle
        self.event = event
        self.obj: dict[str, Any] = event["data"].get("object") or {}
        self.created = datetime.fromtimestamp(int(event.get("created", 0)), timezone.utc)
        self.handlers: dict[str, Callable[[BillingAccount], str]] = {
            "invoice.payment_failed": self.payment_failed,
            "invoice.paid": self.paid,
            "invoice.voided": self.voided,
            "customer.subscription.updated": self.subscription_updated,
            "customer.subscription.deleted": self.subscription_deleted,
        }

    def detail(self, **extra: Any) -> dict[str, Any]:
        return {"event_id": self.event["id"], "event_type": self.event.get("type"), "object": self.obj.get("id"),
                **extra}

    def run(self) -> tuple[str | None, str]:
        handler = self.handlers.get(self.event.get("type", ""))
        if handler is None:
            return None, "ignored: event type not handled"
        customer = _customer_of(self.obj)
        account = account_for_customer(self.conn, customer) if customer else None
        if account is None:
            return None, f"ignored: customer {customer!r} is not one of our tenants"
        if records.find(self.conn, account.tenant_id) is None:
            return account.tenant_id, "ignored: tenant no longer exists"
        return account.tenant_id, handler(account)

    def invoice_id(self) -> str:
        invoice_id = self.obj.get("id")
        if not isinstance(invoice_id, str) or not invoice_id:
            raise InvalidInput("data.object.id", "an invoice event without an invoice id")
        return invoice_id

    def payment_failed(self, account: BillingAccount) -> str:
        return payments.payment_failed(
            self.conn, account.tenant_id, invoice_id=self.invoice_id(), created=self.created,
            grace_days=self.settings.payment_grace_days, actor=ACTOR,
            detail=self.detail(amount_due=self.obj.get("amount_due"), attempt_count=self.obj.get("attempt_count")))

    def paid(self, account: BillingAccount) -> str:
        return payments.invoice_settled(self.conn, self.lifecycle, account.tenant_id, invoice_id=self.invoice_id(),
                                        settled_by="paid", created=self.created, actor=ACTOR,
                                        detail=self.detail(amount_paid=self.obj.get("amount_paid")))

    def voided(self, account: BillingAccount) -> str:
        return payments.invoice_settled(self.conn, self.lifecycle, account.tenant_id, invoice_id=self.invoice_id(),
                                        settled_by="voided", created=self.created, actor=ACTOR, detail=self.detail())

    def _stale_subscription_event(self, account: BillingAccount) -> str | None:
        """Why this subscription event must not be applied, if it must not."""
        if self.obj.get("id") != account.stripe_subscription_id:
            return "ignored: not the tenant's current subscription"
        if not payments.claim_newest(self.conn, account.tenant_id, self.created, column="subscription_event_at"):
            return "ignored: older than the last subscription event applied"
        return None

    def subscription_updated(self, account: BillingAccount) -> str:
        if stale := self._stale_subscription_event(account):
            return stale
        if self.obj.get("status") == "incomplete_expired":  # the first invoice was never paid: it is over
            return self._schedule_offboarding(account)
        tier = _tier_of(self.obj)
        if tier is None or tier not in load_tiers().tiers:
            audit.record(self.conn, tenant_id=account.tenant_id, action="billing.unknown_tier", actor=ACTOR,
                         detail=self.detail(tier=tier))
            return f"ignored: subscription's tier {tier!r} is not in the tiers file"
        tenant = records.require(self.conn, account.tenant_id)
        if tenant.tier == tier:
            return "no change: tenant already on that tier"
        # Stripe's subscription is on this tier, whatever the tenant's state allows below.
        self.conn.execute("UPDATE control.billing_accounts SET tier = %s, updated_at = now() WHERE tenant_id = %s",
                          (tier, account.tenant_id))
        try:
            with self.conn.transaction():
                self.lifecycle.change_tier(self.conn, account.tenant_id, tier, actor=ACTOR, origin=Origin.STRIPE)
        except TenantConflict as exc:
            return f"ignored: {exc}"
        audit.record(self.conn, tenant_id=account.tenant_id, action="billing.tier_changed", actor=ACTOR,
                     detail=self.detail(**{"from": tenant.tier, "to": tier}))
        return f"tier changed {tenant.tier} -> {tier}"

    def subscription_deleted(self, account: BillingAccount) -> str:
        if stale := self._stale_subscription_event(account):
            return stale
        return self._schedule_offboarding(account)

    def _schedule_offboarding(self, account: BillingAccount) -> str:
        return payments.schedule_offboarding(self.conn, self.lifecycle, account.tenant_id,
                                             after_days=self.settings.offboard_after_days, actor=ACTOR,
                                             detail=self.detail(status=self.obj.get("status")))


def apply(conn: psycopg.Connection, event: dict[str, Any], settings: BillingSettings,
          lifecycle: Lifecycle) -> WebhookResult:
    """Apply one verified event, once: its id and its effect commit together."""
    dispatcher = _Dispatcher(conn, settings, lifecycle, event)
    with conn.transaction():
        claimed = conn.execute(
            "INSERT INTO control.stripe_webhook_events (event_id, type, created, outcome)"
            " VALUES (%s, %s, %s, 'processing') ON CONFLICT (event_id) DO NOTHING RETURNING 1",
            (event["id"], event.get("type", ""), dispatcher.created)).fetchone()
        if claimed is None:
            return WebhookResult(200, event["id"], "ignored: event already processed")
        tenant_id, outcome = dispatcher.run()
        conn.execute("UPDATE control.stripe_webhook_events SET outcome = %s, tenant_id = %s WHERE event_id = %s",
                     (outcome, tenant_id, event["id"]))
    logger.info("stripe event %s (%s): %s", event["id"], event.get("type"), outcome)
    return WebhookResult(200, event["id"], outcome)


def rejected(exc: InvalidInput) -> WebhookResult:
    logger.warning("webhook rejected: %s", exc)
    return WebhookResult(400, None, str(exc))


def handle(conn: psycopg.Connection, payload: bytes, signature: str | None, *, secret: str,
           settings: BillingSettings, lifecycle: Lifecycle) -> WebhookResult:
    """Verify and apply one delivery; the result's status is the HTTP status to answer Stripe with."""
    try:
        return apply(conn, verify(payload, signature, secret), settings, lifecycle)
    except InvalidInput as exc:
        return rejected(exc)


def forget_old_events(conn: psycopg.Connection, *, now: datetime | None = None) -> int:
    """Drop processed-event ids Stripe can no longer re-send (the audit log keeps what they did)."""
    cutoff = (now or datetime.now(timezone.utc)) - EVENT_MEMORY
    return conn.execute("DELETE FROM control.stripe_webhook_events WHERE created < %s", (cutoff,)).rowcount
