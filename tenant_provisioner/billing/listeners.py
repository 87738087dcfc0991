"""The Stripe subscription follows the tenant lifecycle: tier changes and offboarding.

Both run before the tenant's database change, inside its transaction: if Stripe refuses or is
down, the tier change or offboarding fails as a whole and can be retried. A tenant that never
reached Stripe (created without a key) is left alone; without a key the listener says so loudly.
A tier change that came from Stripe (`Origin.STRIPE`, the webhook) is not sent back to it.
"""

from __future__ import annotations

import psycopg

from tenant_provisioner.billing.accounts import Accounts, load_account
from tenant_provisioner.billing.settings import skipped_notice
from tenant_provisioner.tenants.events import LifecycleListener, Origin
from tenant_provisioner.tenants.records import Tenant
from tenant_provisioner.tiers import Tier


class StripeSubscriptionListener(LifecycleListener):
    def __init__(self, accounts: Accounts | None) -> None:
        self.accounts = accounts   # None: no Stripe key configured

    def _accounts_for(self, conn: psycopg.Connection, tenant: Tenant, what: str, *,
                      tier: Tier | None = None) -> Accounts | None:
        """Accounts to act with, or None when there is nothing to do in Stripe."""
        account = load_account(conn, tenant.tenant_id)
        if account is None or not account.stripe_subscription_id:
            return None
        if tier is not None and account.tier == tier.name:
            return None  # the subscription is already there (a retried change)
        if self.accounts is None:
            skipped_notice(f"{what} of {tenant.tenant_id}: its Stripe subscription was NOT changed")
        return self.accounts

    def before_tier_change(self, conn: psycopg.Connection, tenant: Tenant, tier: Tier, *, origin: Origin) -> None:
        if origin is Origin.STRIPE:
            return  # Stripe moved the subscription itself
        accounts = self._accounts_for(conn, tenant, "tier change", tier=tier)
        if accounts is not None:
            accounts.change_tier(conn, tenant.tenant_id, tier)

    def before_offboard(self, conn: psycopg.Connection, tenant: Tenant) -> None:
        accounts = self._accounts_for(conn, tenant, "offboarding")
        if accounts is not None:
            accounts.cancel(conn, tenant.tenant_id)
