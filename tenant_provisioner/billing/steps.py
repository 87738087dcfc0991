"""The provisioning step that gives a new tenant its Stripe customer and subscription.

The composition root puts it among the lifecycle's extension steps. Without a Stripe key the
step does nothing but say so loudly (and puts ``billing: skipped`` into the create result).
"""

from __future__ import annotations

from tenant_provisioner.billing.accounts import Accounts
from tenant_provisioner.billing.settings import skipped_notice
from tenant_provisioner.tenants.provisioning import ProvisionContext


class StripeStep:
    name = "stripe"

    def __init__(self, accounts: Accounts | None) -> None:
        self.accounts = accounts   # None: no Stripe key configured

    def apply(self, ctx: ProvisionContext) -> None:
        if self.accounts is None:
            skipped_notice(f"signup of {ctx.request.tenant_id}")
            ctx.outputs["billing"] = "skipped"
            return
        account = self.accounts.ensure(ctx.conn, tenant_id=ctx.request.tenant_id, tier=ctx.tier,
                                       admin_email=ctx.request.admin_email, company_name=ctx.request.company_name)
        ctx.outputs["billing"] = {"stripe_customer_id": account.stripe_customer_id,
                                  "stripe_subscription_id": account.stripe_subscription_id}

    def undo(self, ctx: ProvisionContext) -> None:
        if self.accounts is not None:
            self.accounts.discard(ctx.conn, ctx.request.tenant_id)

