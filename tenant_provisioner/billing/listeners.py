"""Lifecycle hooks (`pipeline.run_hooks`): the Stripe subscription follows tier changes and offboarding.

Both run before the tenant's database change, inside its transaction: if Stripe refuses or is
down, the tier change or offboarding fails as a whole and can be retried. A tenant that never
reached Stripe (created without a key) is left alone; without a key the hooks say so loudly.
"""

from __future__ import annotations

import psycopg

from tenant_provisioner.billing.accounts import Accounts, load_account
from tenant_provisioner.billing.settings import BillingSettings, skipped_notice, stripe_client
from tenant_provisioner.tenants.records import Tenant
from tenant_provisioner.tiers import Tier


def _accounts(conn: psycopg.Connection, tenant: Tenant, what: str, *, tier: Tier | None = None) -> Accounts | None:
    """Accounts to act with, or None when there is nothing to do in Stripe."""
    account = load_account(conn, tenant.tenant_id)
    if account is None or not account.stripe_subscription_id:
        return None
    if tier is not None and account.tier == tier.name:
        return None  # the subscription is already there (e.g. the change came from Stripe's webhook)
    settings = BillingSettings.from_env()
    client = stripe_client(settings)
    if client is None:
        skipped_notice(f"{what} of {tenant.tenant_id}: its Stripe subscription was NOT changed")
        return None
    return Accounts(client, settings)


def on_change_tier(conn: psycopg.Connection, tenant: Tenant, tier: Tier) -> None:
    accounts = _accounts(conn, tenant, "tier change", tier=tier)
    if accounts is not None:
        accounts.change_tier(conn, tenant.tenant_id, tier)


def on_offboard(conn: psycopg.Connection, tenant: Tenant) -> None:
    accounts = _accounts(conn, tenant, "offboarding")
    if accounts is not None:
        accounts.cancel(conn, tenant.tenant_id)
