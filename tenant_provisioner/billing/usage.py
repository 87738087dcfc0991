"""API-request usage → Stripe meter events, exactly once.

The limits enforcer keeps each tenant's admitted API requests per billing period in
``control.tenant_usage`` (a running total). This module reports the growth of that total since
the last report, per tenant and period, through ``control.billing_usage_cursor``:

1. under a row lock, freeze the next interval ``[reported, admitted)`` as *pending* and commit
   (the identifier ``<tenant>:<period>:<quantity>:<from>-<to>`` and the event time are frozen too);
2. send it as one meter event with that identifier;
3. when Stripe accepted it (or says it already has that identifier), advance ``reported`` to the
   pending end — compare-and-set on the identifier, so only one of two racing runs advances.

A crash between 1 and 3, an overlapping run, or Stripe being down only ever re-sends the same
frozen interval under the same identifier (Stripe dedupes identifiers for at least 24 hours), so
nothing is counted twice; the cursor never moves before Stripe accepted, so nothing is lost. The
event time is the measurement time, kept inside the period, so usage lands in the right invoice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg
import stripe
from psycopg.rows import dict_row

from tenant_provisioner.billing.errors import StripeRejected
from tenant_provisioner.billing.settings import BillingSettings, is_transient

logger = logging.getLogger(__name__)

QUANTITY = "api_requests"
# Stripe refuses meter events older than 35 days; stop a little earlier to leave room for clocks.
MAX_EVENT_AGE = timedelta(days=34)

_CANDIDATES = """
SELECT u.tenant_id, u.period_start, a.stripe_customer_id
FROM control.tenant_usage u
JOIN control.billing_accounts a ON a.tenant_id = u.tenant_id AND a.stripe_customer_id IS NOT NULL
LEFT JOIN control.billing_usage_cursor c
       ON c.tenant_id = u.tenant_id AND c.period_start = u.period_start AND c.quantity = u.quantity
WHERE u.quantity = %(quantity)s
  AND (u.admitted > COALESCE(c.reported, 0) OR c.pending_to IS NOT NULL)
  AND (%(tenant_id)s::text IS NULL OR u.tenant_id = %(tenant_id)s)
ORDER BY u.period_start, u.tenant_id
"""

_FREEZE = """
UPDATE control.billing_usage_cursor c
SET pending_to = u.admitted,
    pending_identifier = format('%%s:%%s:%%s:%%s-%%s', c.tenant_id, c.period_start, c.quantity, c.reported, u.admitted),
    pending_timestamp = LEAST(GREATEST(u.measured_at, c.period_start::timestamptz),
                              (c.period_start + interval '1 month')::timestamptz - interval '1 second', now())
FROM control.tenant_usage u
WHERE c.tenant_id = %s AND c.period_start = %s AND c.quantity = %s AND c.pending_to IS NULL
  AND u.tenant_id = c.tenant_id AND u.period_start = c.period_start AND u.quantity = c.quantity
  AND u.admitted > c.reported
"""


@dataclass
class ReportResult:
    """What one reporting run did; `deferred` intervals stay pending for the next run."""

    sent: int = 0
    duplicates: int = 0
    units: int = 0
    deferred: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    stripe_unavailable: bool = False

    def to_dict(self) -> dict:
        return {"sent": self.sent, "duplicates": self.duplicates, "units": self.units,
                "deferred": self.deferred, "failed": self.failed, "stripe_unavailable": self.stripe_unavailable}


@dataclass(frozen=True)
class _Pending:
    tenant_id: str
    period_start: date
    reported: int
    pending_to: int
    identifier: str
    timestamp: datetime


def _freeze(conn: psycopg.Connection, tenant_id: str, period_start: date) -> _Pending | None:
    """Step 1: the interval to send (an already-frozen one first), committed before any network call."""
    key = (tenant_id, period_start, QUANTITY)
    with conn.transaction():
        conn.execute("INSERT INTO control.billing_usage_cursor (tenant_id, period_start, quantity)"
                     " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", key)
        conn.execute("SELECT 1 FROM control.billing_usage_cursor WHERE tenant_id = %s AND period_start = %s"
                     " AND quantity = %s FOR UPDATE", key)
        conn.execute(_FREEZE, key)
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT reported, pending_to, pending_identifier, pending_timestamp FROM control.billing_usage_cursor"
                " WHERE tenant_id = %s AND period_start = %s AND quantity = %s AND pending_to IS NOT NULL",
                key).fetchone()
    if row is None:
        return None
    return _Pending(tenant_id, period_start, row["reported"], row["pending_to"], row["pending_identifier"],
                    row["pending_timestamp"])


def _advance(conn: psycopg.Connection, pending: _Pending) -> bool:
    """Step 3: move the cursor to the end of the interval Stripe accepted (once, whoever is first)."""
    with conn.transaction():
        moved = conn.execute(
            "UPDATE control.billing_usage_cursor SET reported = pending_to, pending_to = NULL,"
            " pending_identifier = NULL, pending_timestamp = NULL, reported_at = now()"
            " WHERE tenant_id = %s AND period_start = %s AND quantity = %s AND pending_identifier = %s",
            (pending.tenant_id, pending.period_start, QUANTITY, pending.identifier)).rowcount
    return moved == 1


def _send(client: stripe.StripeClient, settings: BillingSettings, customer_id: str, pending: _Pending,
          now: datetime) -> str:
    """Step 2: "sent", "duplicate" (Stripe already has it), "unavailable" (retry later) or "failed"."""
    if pending.timestamp < now - MAX_EVENT_AGE:
        logger.error("usage %s is older than Stripe accepts (35 days); bill it by hand", pending.identifier)
        return "failed"
    try:
        client.v1.billing.meter_events.create(params={
            "event_name": settings.meter_event_name, "identifier": pending.identifier,
            "timestamp": int(pending.timestamp.timestamp()),
            "payload": {"stripe_customer_id": customer_id, "value": str(pending.pending_to - pending.reported)},
        })  # no explicit idempotency key: the identifier is Stripe's dedupe key for meter events
        return "sent"
    except stripe.InvalidRequestError as exc:
        if exc.param == "identifier" and exc.code == "resource_already_exists":
            return "duplicate"  # accepted by an earlier (crashed or racing) run
        logger.error("Stripe refused usage %s: %s", pending.identifier, exc.user_message)
        return "failed"
    except stripe.StripeError as exc:
        if is_transient(exc):
            logger.warning("Stripe unavailable; usage %s stays pending for the next run: %s", pending.identifier, exc)
            return "unavailable"
        logger.error("Stripe refused usage %s: %s", pending.identifier, exc.user_message)
        return "failed"


def report_usage(conn: psycopg.Connection, client: stripe.StripeClient, settings: BillingSettings, *,
                 tenant_id: str | None = None, now: datetime | None = None) -> ReportResult:
    """Send every unreported interval (of one tenant, or all); stops early while Stripe is down."""
    result = ReportResult()
    now = now or datetime.now(timezone.utc)
    with conn.cursor(row_factory=dict_row) as cur:
        candidates = cur.execute(_CANDIDATES, {"quantity": QUANTITY, "tenant_id": tenant_id}).fetchall()
    for row in candidates:
        while (pending := _freeze(conn, row["tenant_id"], row["period_start"])) is not None:
            outcome = _send(client, settings, row["stripe_customer_id"], pending, now)
            if outcome == "failed":
                result.failed.append(pending.identifier)
                break
            if outcome == "unavailable":
                result.stripe_unavailable = True
                result.deferred.append(pending.identifier)
                return result
            result.sent += outcome == "sent"
            result.duplicates += outcome == "duplicate"
            if _advance(conn, pending):
                result.units += pending.pending_to - pending.reported
    return result



@dataclass(frozen=True)
class Reconciliation:
    """Our count of reported usage next to Stripe's meter summary for one tenant and period."""

    tenant_id: str
    period_start: date
    measured: int
    reported: int
    pending: int
    stripe: int

    @property
    def matches(self) -> bool:
        return self.stripe == self.reported

    def to_dict(self) -> dict:
        return {"tenant_id": self.tenant_id, "period_start": self.period_start.isoformat(),
                "measured": self.measured, "reported": self.reported, "pending": self.pending,
                "stripe": self.stripe, "matches": self.matches}


def reconcile(conn: psycopg.Connection, client: stripe.StripeClient, settings: BillingSettings, *,
              period_start: date, tenant_id: str | None = None, now: datetime | None = None) -> list[Reconciliation]:
    """Compare what we reported with Stripe's meter event summaries (eventually consistent:
    events of the last minutes may not be counted by Stripe yet)."""
    now = now or datetime.now(timezone.utc)
    meter = next((m for m in client.v1.billing.meters.list(params={"status": "active", "limit": 100})
                  .auto_paging_iter() if m.event_name == settings.meter_event_name), None)
    if meter is None:
        raise StripeRejected(f"no active Stripe meter {settings.meter_event_name!r}; run billing sync-catalog")
    start = datetime.combine(period_start, datetime.min.time(), timezone.utc)
    next_month = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    end = min(next_month, now.replace(second=0, microsecond=0) + timedelta(minutes=1))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT a.tenant_id, a.stripe_customer_id, COALESCE(u.admitted, 0) AS measured,"
            " COALESCE(c.reported, 0) AS reported, COALESCE(c.pending_to - c.reported, 0) AS pending"
            " FROM control.billing_accounts a"
            " LEFT JOIN control.tenant_usage u ON u.tenant_id = a.tenant_id AND u.period_start = %(p)s"
            "  AND u.quantity = %(q)s"
            " LEFT JOIN control.billing_usage_cursor c ON c.tenant_id = a.tenant_id AND c.period_start = %(p)s"
            "  AND c.quantity = %(q)s"
            " WHERE a.stripe_customer_id IS NOT NULL AND (%(t)s::text IS NULL OR a.tenant_id = %(t)s)"
            " ORDER BY a.tenant_id", {"p": period_start, "q": QUANTITY, "t": tenant_id}).fetchall()
    result = []
    for row in rows:
        summaries = client.v1.billing.meters.event_summaries.list(meter.id, params={
            "customer": row["stripe_customer_id"], "start_time": int(start.timestamp()),
            "end_time": int(end.timestamp())})
        total = sum(s.aggregated_value for s in summaries.auto_paging_iter())
        result.append(Reconciliation(row["tenant_id"], period_start, row["measured"], row["reported"],
                                     row["pending"], int(total)))
    return result
