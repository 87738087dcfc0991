"""Payment state of a tenant: grace after a failed invoice, suspension when grace runs out,
resumption when the invoice is paid. Every change is written to the audit log.

Grace starts at the first failed payment and is not extended by Stripe's retries of the same
debt; `enforce_payment_grace` (run by the enforcer each cycle, or ``billing enforce-grace``)
suspends tenants whose grace ended. Every invoice whose payment failed is remembered
(``control.billing_unpaid_invoices``); grace ends, and a non-payment suspension is lifted, only
when all of them are paid (or voided) — any other paid invoice, even a $0 one, changes nothing.
Only a suspension *for non-payment* is lifted by a payment: a tenant suspended by the quota
breaker or an operator stays suspended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import sql

from tenant_provisioner import audit
from tenant_provisioner.tenants import records
from tenant_provisioner.tenants.lifecycle import Lifecycle
from tenant_provisioner.errors import TenantConflict

NON_PAYMENT_REASON = "non-payment: invoice unpaid after the grace period"
SUBSCRIPTION_ENDED_REASON = "subscription ended in Stripe; offboarding scheduled"


@dataclass(frozen=True)
class GraceResult:
    suspended: tuple[str, ...]
    skipped: tuple[str, ...]


def claim_newest(conn: psycopg.Connection, tenant_id: str, created: datetime, *,
                 column: str = "payment_event_at") -> bool:
    """Record `created` as the newest event of its kind for the tenant; False if a newer one was applied."""
    row = conn.execute(sql.SQL(
        "UPDATE control.billing_accounts SET {col} = %s, updated_at = now()"
        " WHERE tenant_id = %s AND ({col} IS NULL OR {col} <= %s) RETURNING 1").format(col=sql.Identifier(column)),
        (created, tenant_id, created)).fetchone()
    return row is not None


def payment_failed(conn: psycopg.Connection, tenant_id: str, *, invoice_id: str, created: datetime,
                   grace_days: int, actor: str, detail: dict[str, Any]) -> str:
    """Remember the unpaid invoice; start (or keep) the payment grace period."""
    if not claim_newest(conn, tenant_id, created):
        return "ignored: older than the last payment event applied"
    conn.execute("INSERT INTO control.billing_unpaid_invoices (invoice_id, tenant_id, failed_at) VALUES (%s, %s, %s)"
                 " ON CONFLICT (invoice_id) DO NOTHING", (invoice_id, tenant_id, created))
    row = conn.execute(
        "UPDATE control.billing_accounts SET"
        " payment_state = CASE WHEN payment_state = 'ok' THEN 'grace' ELSE payment_state END,"
        " grace_until = COALESCE(grace_until, %s::timestamptz + make_interval(days => %s))"
        " WHERE tenant_id = %s RETURNING grace_until", (created, grace_days, tenant_id)).fetchone()
    audit.record(conn, tenant_id=tenant_id, action="billing.payment_failed", actor=actor,
                 detail={**detail, "grace_until": row[0].isoformat()})
    return f"grace until {row[0].isoformat()}"


def invoice_settled(conn: psycopg.Connection, lifecycle: Lifecycle, tenant_id: str, *, invoice_id: str,
                    settled_by: str, created: datetime, actor: str, detail: dict[str, Any]) -> str:
    """An invoice was paid or voided. Only when no invoice whose payment failed stays open does the
    grace end and a non-payment suspension lift."""
    if not claim_newest(conn, tenant_id, created):
        return "ignored: older than the last payment event applied"
    settled = conn.execute("UPDATE control.billing_unpaid_invoices SET settled_at = %s, settled_by = %s"
                           " WHERE invoice_id = %s AND tenant_id = %s AND settled_at IS NULL RETURNING 1",
                           (created, settled_by, invoice_id, tenant_id)).fetchone() is not None
    previous = conn.execute("SELECT payment_state FROM control.billing_accounts WHERE tenant_id = %s",
                            (tenant_id,)).fetchone()
    if previous is None or previous[0] == "ok":
        return f"{settled_by} (account in good standing)"
    still_open = [r[0] for r in conn.execute(
        "SELECT invoice_id FROM control.billing_unpaid_invoices WHERE tenant_id = %s AND settled_at IS NULL"
        " ORDER BY failed_at", (tenant_id,))]
    if still_open:
        audit.record(conn, tenant_id=tenant_id, action="billing.payment_not_recovered", actor=actor,
                     detail={**detail, "settled_unpaid_invoice": settled, "still_unpaid": still_open})
        return (f"{settled_by} {invoice_id}; still unpaid: {', '.join(still_open)} "
                f"(account stays {previous[0]})")
    conn.execute("UPDATE control.billing_accounts SET payment_state = 'ok', grace_until = NULL WHERE tenant_id = %s",
                 (tenant_id,))
    tenant = records.find(conn, tenant_id)
    resumed = bool(tenant and tenant.state == "suspended" and tenant.suspended_reason == NON_PAYMENT_REASON)
    if resumed:
        lifecycle.resume(conn, tenant_id, actor=actor)
    audit.record(conn, tenant_id=tenant_id, action="billing.payment_recovered", actor=actor,
                 detail={**detail, "was": previous[0], "resumed": resumed})
    return "payment recovered" + ("; tenant resumed" if resumed else "")


def enforce_payment_grace(conn: psycopg.Connection, lifecycle: Lifecycle, *, actor: str = "billing:grace",
                          now: datetime | None = None) -> GraceResult:
    """Suspend every tenant whose payment grace has ended (idempotent; each in its own transaction)."""
    now = now or datetime.now(timezone.utc)
    due = [r[0] for r in conn.execute(
        "SELECT tenant_id FROM control.billing_accounts WHERE payment_state = 'grace' AND grace_until <= %s"
        " ORDER BY tenant_id", (now,))]
    suspended, skipped = [], []
    for tenant_id in due:
        with conn.transaction():
            locked = conn.execute("SELECT grace_until FROM control.billing_accounts WHERE tenant_id = %s"
                                  " AND payment_state = 'grace' AND grace_until <= %s FOR UPDATE",
                                  (tenant_id, now)).fetchone()
            if locked is None:
                continue  # paid meanwhile, or another run got here first
            tenant = records.find(conn, tenant_id)
            if tenant is None or tenant.state != "active":
                skipped.append(tenant_id)
                continue
            try:
                lifecycle.suspend(conn, tenant_id, reason=NON_PAYMENT_REASON, actor=actor)
            except TenantConflict:
                skipped.append(tenant_id)
                continue
            conn.execute("UPDATE control.billing_accounts SET payment_state = 'suspended', updated_at = now()"
                         " WHERE tenant_id = %s", (tenant_id,))
            audit.record(conn, tenant_id=tenant_id, action="billing.suspended_for_non_payment", actor=actor,
                         detail={"grace_until": locked[0].isoformat()})
            suspended.append(tenant_id)
    return GraceResult(tuple(suspended), tuple(skipped))


def schedule_offboarding(conn: psycopg.Connection, lifecycle: Lifecycle, tenant_id: str, *, after_days: int,
                         actor: str, detail: dict[str, Any]) -> str:
    """Stripe ended the subscription: stop service now, offboard (export, drop) after `after_days`."""
    row = conn.execute(
        "UPDATE control.billing_accounts"
        " SET offboard_after = COALESCE(offboard_after, now() + make_interval(days => %s)),"
        " updated_at = now() WHERE tenant_id = %s RETURNING offboard_after", (after_days, tenant_id)).fetchone()
    tenant = records.find(conn, tenant_id)
    if tenant is not None and tenant.state == "active":
        lifecycle.suspend(conn, tenant_id, reason=SUBSCRIPTION_ENDED_REASON, actor=actor)
    audit.record(conn, tenant_id=tenant_id, action="billing.offboarding_scheduled", actor=actor,
                 detail={**detail, "offboard_after": row[0].isoformat()})
    return f"offboarding scheduled after {row[0].isoformat()}"


def due_offboardings(conn: psycopg.Connection, *, now: datetime | None = None) -> list[str]:
    """Tenants whose scheduled offboarding time has come and that are not offboarded yet."""
    now = now or datetime.now(timezone.utc)
    return [r[0] for r in conn.execute(
        "SELECT a.tenant_id FROM control.billing_accounts a JOIN control.tenants t USING (tenant_id)"
        " WHERE a.offboard_after <= %s AND t.state <> 'offboarded' ORDER BY a.tenant_id", (now,))]

