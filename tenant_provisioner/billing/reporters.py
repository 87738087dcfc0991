"""Billing's post-cycle reporters for the limits enforcer (the composition root passes them in).

After each enforcement cycle (every 5 minutes) billing suspends tenants whose payment grace has
ended (and forgets webhook event ids Stripe can no longer re-send), then sends the API-request
usage the cycle just measured to Stripe. A failure is raised, so the enforcer records it in the
cycle's errors; the usage stays pending and goes with the next cycle.
"""

from __future__ import annotations

from typing import Any

import psycopg
import stripe

from tenant_provisioner.billing import payments, webhooks
from tenant_provisioner.billing.settings import BillingSettings, skipped_notice
from tenant_provisioner.billing.usage import report_usage
from tenant_provisioner.errors import TransientError
from tenant_provisioner.tenants.lifecycle import Lifecycle

ACTOR = "enforcer:billing"


class PaymentGrace:
    """Suspend tenants whose payment grace ended; forget old webhook event ids."""

    name = "payment_grace"

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle

    def __call__(self, result: Any, conn: psycopg.Connection) -> None:
        payments.enforce_payment_grace(conn, self.lifecycle, actor=ACTOR)
        webhooks.forget_old_events(conn)


class UsageReport:
    """Send the measured API-request usage to Stripe (skipped loudly without a key)."""

    name = "usage_report"

    def __init__(self, client: stripe.StripeClient | None, settings: BillingSettings) -> None:
        self.client = client
        self.settings = settings

    def __call__(self, result: Any, conn: psycopg.Connection) -> None:
        if self.client is None:
            skipped_notice("usage report")
            return
        outcome = report_usage(conn, self.client, self.settings)
        if outcome.stripe_unavailable or outcome.failed:
            raise TransientError(f"usage report incomplete: {outcome.to_dict()}")
