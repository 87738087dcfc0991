"""A tenant's Stripe customer and subscription: created at signup, moved on a tier change,
cancelled at offboarding, and removed again when a signup fails after this step.

Decision (tested): a signup that fails *later* in the pipeline cleans up — the subscription is
cancelled without proration and the customer deleted — because a live subscription of a tenant
that does not exist would bill someone for nothing. A signup that is *killed* (no undo runs)
leaves them in place and the retry reuses them: the ids are saved in ``control.billing_accounts``
(its own committed write, outside the pipeline's rollback) and every create carries an
idempotency key ``<prefix>:<tenant>:<attempt>:customer|subscription``, so even a response lost on
the network is replayed by Stripe rather than repeated. ``attempt`` grows when the customer is
deleted (clean-up) or the subscription ends (offboarding), so a later signup of the same id gets
fresh objects instead of Stripe replaying the dead ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import stripe
from psycopg import sql
from psycopg.rows import dict_row

from tenant_provisioner.billing.catalog import METERED, TierPrices, tier_prices
from tenant_provisioner.billing.errors import StripeRejected
from tenant_provisioner.billing.settings import BillingSettings, translate, unless_missing
from tenant_provisioner import audit
from tenant_provisioner.errors import TenantConflict
from tenant_provisioner.tenants.records import Tenant
from tenant_provisioner.tiers import Tier

_DEAD_SUBSCRIPTION = ("canceled", "incomplete_expired")


@dataclass(frozen=True)
class BillingAccount:
    tenant_id: str
    attempt: int
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    tier: str | None
    payment_state: str


def load_account(conn: psycopg.Connection, tenant_id: str, *, for_update: bool = False) -> BillingAccount | None:
    query = ("SELECT tenant_id, attempt, stripe_customer_id, stripe_subscription_id, tier, payment_state"
             " FROM control.billing_accounts WHERE tenant_id = %s" + (" FOR UPDATE" if for_update else ""))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (tenant_id,)).fetchone()
    return BillingAccount(**row) if row else None


def account_for_customer(conn: psycopg.Connection, customer_id: str) -> BillingAccount | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT tenant_id FROM control.billing_accounts WHERE stripe_customer_id = %s",
                          (customer_id,)).fetchone()
    return load_account(conn, row["tenant_id"]) if row else None


def _ensure_row(conn: psycopg.Connection, tenant_id: str) -> BillingAccount:
    with conn.transaction():
        conn.execute("INSERT INTO control.billing_accounts (tenant_id) VALUES (%s) ON CONFLICT DO NOTHING",
                     (tenant_id,))
    account = load_account(conn, tenant_id)
    assert account is not None
    return account


def _save(conn: psycopg.Connection, tenant_id: str, attempt: int, **columns: Any) -> None:
    """Update columns only if no one moved to another attempt meanwhile (compare-and-set)."""
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in columns)
    with conn.transaction():
        conn.execute(sql.SQL("UPDATE control.billing_accounts SET {}, updated_at = now()"
                             " WHERE tenant_id = %s AND attempt = %s").format(assignments),
                     (*columns.values(), tenant_id, attempt))


def _next_attempt(conn: psycopg.Connection, tenant_id: str, attempt: int, *, keep_customer: bool) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE control.billing_accounts SET attempt = attempt + 1, stripe_subscription_id = NULL,"
            " stripe_customer_id = CASE WHEN %s THEN stripe_customer_id END, updated_at = now()"
            " WHERE tenant_id = %s AND attempt = %s", (keep_customer, tenant_id, attempt))


def _items_for(prices: TierPrices) -> list[dict[str, str]]:
    items = [{"price": prices.flat}]
    if prices.metered:
        items.append({"price": prices.metered})
    return items


def _price_kind(item: Any) -> str | None:
    metadata = item.price.metadata.to_dict() if item.price.metadata else {}
    return metadata.get("kind")


class Accounts:
    """Stripe operations for one tenant at a time; `conn` is autocommit (each write commits)."""

    def __init__(self, client: stripe.StripeClient, settings: BillingSettings) -> None:
        self.client = client
        self.settings = settings

    def _key(self, tenant_id: str, attempt: int, what: str) -> str:
        return f"{self.settings.catalog_prefix}:{tenant_id}:{attempt}:{what}"

    def _call(self, doing: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except stripe.IdempotencyError as exc:
            raise TenantConflict(f"{doing}: an earlier attempt used other details (Stripe: {exc.user_message}); "
                                 "retry with the original details or offboard first") from exc
        except stripe.StripeError as exc:
            raise translate(exc, doing) from exc

    # ------------------------------------------------------------------------------------- signup
    def ensure(self, conn: psycopg.Connection, *, tenant_id: str, tier: Tier, admin_email: str,
               company_name: str | None) -> BillingAccount:
        """The tenant's customer and a live subscription to `tier` (creating what is missing)."""
        prices = tier_prices(self.client, self.settings, tier)  # first: an unsynced catalog creates nothing
        account = _ensure_row(conn, tenant_id)
        customer_id = self._ensure_customer(conn, account, admin_email, company_name)
        account = _ensure_row(conn, tenant_id)
        if account.stripe_subscription_id:
            sub = unless_missing("reading the subscription",
                                 lambda: self.client.v1.subscriptions.retrieve(account.stripe_subscription_id))
            if sub is not None and sub.status not in _DEAD_SUBSCRIPTION:
                self._move(conn, account, sub, tier, prices, proration_behavior="none")
                return _ensure_row(conn, tenant_id)
            _next_attempt(conn, tenant_id, account.attempt, keep_customer=True)
            account = _ensure_row(conn, tenant_id)
        self._subscribe(conn, account, customer_id, tier, prices)
        return _ensure_row(conn, tenant_id)

    def _subscribe(self, conn: psycopg.Connection, account: BillingAccount, customer_id: str, tier: Tier,
                   prices: TierPrices) -> None:
        """A new subscription for this attempt. Without a payment method on file Stripe makes it
        `incomplete` (allow_incomplete): the tenant works while the first invoice waits to be paid."""
        tenant_id = account.tenant_id
        sub = self._call(f"creating the subscription of {tenant_id}", self.client.v1.subscriptions.create, params={
            "customer": customer_id, "items": _items_for(prices),
            "metadata": {"tenant_id": tenant_id, "tier": tier.name},
            # Align Stripe's periods to calendar months (midnight UTC), the periods the enforcer measures
            # in; an unset hour/minute/second would be taken from the moment of signup.
            "billing_cycle_anchor_config": {"day_of_month": 1, "hour": 0, "minute": 0, "second": 0},
            "proration_behavior": "create_prorations",
            "collection_method": "charge_automatically", "payment_behavior": "allow_incomplete",
        }, options={"idempotency_key": self._key(tenant_id, account.attempt, "subscription")})
        _save(conn, tenant_id, account.attempt, stripe_subscription_id=sub.id, tier=tier.name)

    def _ensure_customer(self, conn: psycopg.Connection, account: BillingAccount, admin_email: str,
                         company_name: str | None) -> str:
        if account.stripe_customer_id:
            customer = unless_missing("reading the customer",
                                      lambda: self.client.v1.customers.retrieve(account.stripe_customer_id))
            if customer is not None and not getattr(customer, "deleted", False):
                return customer.id
            _next_attempt(conn, account.tenant_id, account.attempt, keep_customer=False)
            account = _ensure_row(conn, account.tenant_id)
        customer = self._call(f"creating the customer of {account.tenant_id}", self.client.v1.customers.create,
                              params={"email": admin_email, "name": company_name or account.tenant_id,
                                      "metadata": {"tenant_id": account.tenant_id, "admin_email": admin_email}},
                              options={"idempotency_key": self._key(account.tenant_id, account.attempt, "customer")})
        _save(conn, account.tenant_id, account.attempt, stripe_customer_id=customer.id)
        return customer.id

    def discard(self, conn: psycopg.Connection, tenant_id: str) -> None:
        """Undo a failed signup: cancel the subscription (no proration), delete the customer."""
        account = load_account(conn, tenant_id)
        if account is None or not account.stripe_customer_id:
            return
        if account.stripe_subscription_id:
            self._end_subscription(account.stripe_subscription_id, invoice_now=False)
        unless_missing("deleting the customer", lambda: self.client.v1.customers.delete(account.stripe_customer_id))
        _next_attempt(conn, tenant_id, account.attempt, keep_customer=False)

    def attach(self, conn: psycopg.Connection, tenant: Tenant, tier: Tier, *, actor: str) -> tuple[BillingAccount, bool]:
        """Bill a tenant created while billing was skipped (no Stripe key then): the customer and
        subscription its signup would have made. Idempotent: (account, False) when it already was billed."""
        if tenant.state not in ("active", "suspended"):
            raise TenantConflict(f"tenant {tenant.tenant_id!r} is {tenant.state}; only active or suspended "
                                 "tenants can be attached to billing")
        before = load_account(conn, tenant.tenant_id)
        account = self.ensure(conn, tenant_id=tenant.tenant_id, tier=tier, admin_email=tenant.admin_email,
                              company_name=tenant.company_name)
        attached = before is None or before.stripe_subscription_id != account.stripe_subscription_id
        if attached:
            audit.record(conn, tenant_id=tenant.tenant_id, action="billing.attached", actor=actor,
                         detail={"stripe_customer_id": account.stripe_customer_id,
                                 "stripe_subscription_id": account.stripe_subscription_id})
        return account, attached

    # --------------------------------------------------------------------------- later in life
    def change_tier(self, conn: psycopg.Connection, tenant_id: str, tier: Tier) -> bool:
        """Move the subscription to `tier`'s prices with proration; False if it already was there."""
        account = load_account(conn, tenant_id)
        if account is None or not account.stripe_subscription_id:
            raise StripeRejected(f"tenant {tenant_id!r} has no Stripe subscription to change")
        sub = self._call("reading the subscription", self.client.v1.subscriptions.retrieve,
                         account.stripe_subscription_id)
        if sub.status in _DEAD_SUBSCRIPTION:
            raise StripeRejected(f"the subscription of {tenant_id!r} is {sub.status}; it cannot change tier")
        return self._move(conn, account, sub, tier, tier_prices(self.client, self.settings, tier),
                          proration_behavior="create_prorations")

    def _move(self, conn: psycopg.Connection, account: BillingAccount, sub: Any, tier: Tier, prices: TierPrices,
              *, proration_behavior: str) -> bool:
        current = {item.price.id for item in sub["items"].data}
        wanted = {prices.flat} | ({prices.metered} if prices.metered else set())
        if current == wanted:
            if account.tier != tier.name:
                _save(conn, account.tenant_id, account.attempt, tier=tier.name)
            return False
        if sub.status == "incomplete":
            # Stripe lets an unpaid new subscription change only metadata; nothing was paid or used up,
            # so it is replaced by one on the new tier (its deletion event is not the current one).
            self._end_subscription(sub.id, invoice_now=False)
            _next_attempt(conn, account.tenant_id, account.attempt, keep_customer=True)
            self._subscribe(conn, _ensure_row(conn, account.tenant_id), account.stripe_customer_id, tier, prices)
            return True
        items: list[dict[str, Any]] = []
        kept: set[str] = set()
        for item in sub["items"].data:
            kind = _price_kind(item) or "flat"
            target = prices.metered if kind == METERED else prices.flat
            if target and kind not in kept:
                items.append({"id": item.id, "price": target})
                kept.add(kind)
            else:
                items.append({"id": item.id, "deleted": True})
        if prices.metered and METERED not in kept:
            items.append({"price": prices.metered})
        # Update is set-to-target (naturally idempotent); the SDK's own idempotency key covers retries.
        self._call(f"moving the subscription of {account.tenant_id} to {tier.name}",
                   self.client.v1.subscriptions.update, sub.id, params={
                       "items": items, "proration_behavior": proration_behavior,
                       "metadata": {"tenant_id": account.tenant_id, "tier": tier.name}})
        _save(conn, account.tenant_id, account.attempt, tier=tier.name)
        return True

    def cancel(self, conn: psycopg.Connection, tenant_id: str) -> bool:
        """Offboarding: end the subscription now, invoicing unbilled usage; keep the customer."""
        account = load_account(conn, tenant_id)
        if account is None or not account.stripe_subscription_id:
            return False
        self._end_subscription(account.stripe_subscription_id, invoice_now=True)
        _next_attempt(conn, tenant_id, account.attempt, keep_customer=True)
        return True

    def _end_subscription(self, subscription_id: str, *, invoice_now: bool) -> None:
        sub = unless_missing("reading the subscription", lambda: self.client.v1.subscriptions.retrieve(subscription_id))
        if sub is None or sub.status in _DEAD_SUBSCRIPTION:
            return
        self._call("cancelling the subscription", self.client.v1.subscriptions.cancel, subscription_id,
                   params={"invoice_now": invoice_now, "prorate": False})
