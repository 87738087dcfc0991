"""Billing's post-cycle reporters for the limits enforcer (found by `limits.enforcer.registered_reporters`).

After each enforcement cycle (every 5 minutes) billing suspends tenants whose payment grace has
ended (and forgets webhook event ids Stripe can no longer re-send) and sends the API-request usage the cycle just measured to Stripe. A failure is raised, so
the enforcer records it in the cycle's errors; the usage stays pending and goes with the next cycle.
"""

from __future__ import annotations

from typing import Any, Sequence

import psycopg

from tenant_provisioner.billing import payments, webhooks
from tenant_provisioner.billing.settings import BillingSettings, skipped_notice, stripe_client
from tenant_provisioner.billing.usage import report_usage
from tenant_provisioner.errors import TransientError


def enforce_grace(result: Any, conn: psycopg.Connection) -> None:
    payments.enforce_payment_grace(conn, actor="enforcer:billing")
    webhooks.forget_old_events(conn)


def send_usage(result: Any, conn: psycopg.Connection) -> None:
    settings = BillingSettings.from_env()
    client = stripe_client(settings)
    if client is None:
        skipped_notice("usage report")
        return
    outcome = report_usage(conn, client, settings)
    if outcome.stripe_unavailable or outcome.failed:
        raise TransientError(f"usage report incomplete: {outcome.to_dict()}")


def post_cycle_reporters() -> Sequence[Any]:
    return [enforce_grace, send_usage]
