"""API-request usage → Stripe meter events, exactly once.

The limits enforcer keeps each tenant's admitted API requests per billing period in
``control.tenant_usage`` (a running total). This module reports the growth of that total since
the last report, per tenant and period, through ``control.billing_usage_cursor``:

1. in one transaction for all tenants, freeze each next interval ``[reported, admitted)`` as
   *pending* and commit (the identifier ``<tenant>:<period>:<quantity>:<from>-<to>`` and the
   event time are frozen too);
2. send each as one meter event with that identifier (a few at a time, in threads);
3. when Stripe accepted it (or says it already has that identifier), advance ``reported`` to the
   pending end — compare-and-set on the identifier, so only one of two racing runs advances.

A crash between 1 and 3, an overlapping run, or Stripe being down only ever re-sends the same
frozen interval under the same identifier (Stripe dedupes identifiers for at least 24 hours), so
nothing is counted twice; the cursor never moves before Stripe accepted, so nothing is lost. The
event time is the measurement time, kept inside the period, so usage lands in the right invoice.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg
import stripe
from psycopg.rows import dict_row

from tenant_provisioner import audit
from tenant_provisioner.billing.errors import StripeRejected
from tenant_provisioner.billing.settings import BillingSettings, is_transient
from tenant_provisioner.errors import InvalidInput

logger = logging.getLogger(__name__)

QUANTITY = "api_requests"
# Stripe refuses meter events older than 35 days; stop a little earlier to leave room for clocks.
MAX_EVENT_AGE = timedelta(days=34)

# Step 1 for every tenant (or one) at once, in one transaction: a cursor row for every usage row
# of a billed tenant, then the next interval frozen wherever none is pending. Two runs at once:
# the second UPDATE waits for the first's row locks and then finds the rows already pending.
_ENSURE_CURSORS = """
INSERT INTO control.billing_usage_cursor (tenant_id, period_start, quantity)
SELECT u.tenant_id, u.period_start, u.quantity
FROM control.tenant_usage u
JOIN control.billing_accounts a ON a.tenant_id = u.tenant_id AND a.stripe_customer_id IS NOT NULL
WHERE u.quantity = %(quantity)s AND u.admitted > 0 AND (%(tenant_id)s::text IS NULL OR u.tenant_id = %(tenant_id)s)
ORDER BY u.tenant_id, u.period_start
ON CONFLICT DO NOTHING
"""

# Row locks in one fixed order, so two runs at once queue instead of deadlocking.
_LOCK = """
SELECT 1 FROM control.billing_usage_cursor
WHERE quantity = %(quantity)s AND pending_to IS NULL AND failed_at IS NULL
  AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s)
ORDER BY tenant_id, period_start
FOR UPDATE
"""

_FREEZE = """
UPDATE control.billing_usage_cursor c
SET pending_to = u.admitted,
    pending_identifier = format('%%s:%%s:%%s:%%s-%%s', c.tenant_id, c.period_start, c.quantity, c.reported, u.admitted),
    pending_timestamp = LEAST(GREATEST(u.measured_at, c.period_start::timestamptz),
                              (c.period_start + interval '1 month')::timestamptz - interval '1 second', now())
FROM control.tenant_usage u
WHERE u.tenant_id = c.tenant_id AND u.period_start = c.period_start AND u.quantity = c.quantity
  AND c.quantity = %(quantity)s AND c.pending_to IS NULL AND c.failed_at IS NULL AND u.admitted > c.reported
  AND (%(tenant_id)s::text IS NULL OR c.tenant_id = %(tenant_id)s)
"""

_PENDING = """
SELECT c.tenant_id, c.period_start, c.reported, c.pending_to, c.pending_identifier, c.pending_timestamp,
       a.stripe_customer_id
FROM control.billing_usage_cursor c
JOIN control.billing_accounts a ON a.tenant_id = c.tenant_id AND a.stripe_customer_id IS NOT NULL
WHERE c.quantity = %(quantity)s AND c.pending_to IS NOT NULL AND c.failed_at IS NULL
  AND (%(tenant_id)s::text IS NULL OR c.tenant_id = %(tenant_id)s)
ORDER BY c.period_start, c.tenant_id
"""

# Step 3, compare-and-set on the identifier: only the run that finds the interval still pending moves it.
_ADVANCE = """
WITH accepted AS (
    SELECT tenant_id, period_start, quantity, pending_identifier FROM control.billing_usage_cursor
    WHERE quantity = %s AND pending_identifier = ANY(%s)
    ORDER BY tenant_id, period_start FOR UPDATE
)
UPDATE control.billing_usage_cursor c
SET reported = c.pending_to, pending_to = NULL, pending_identifier = NULL, pending_timestamp = NULL,
    reported_at = now()
FROM accepted a
WHERE c.tenant_id = a.tenant_id AND c.period_start = a.period_start AND c.quantity = a.quantity
  AND c.pending_identifier = a.pending_identifier
RETURNING a.pending_identifier
"""
MAX_PASSES = 3


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
    customer_id: str

    @property
    def units(self) -> int:
        return self.pending_to - self.reported


def _freeze(conn: psycopg.Connection, tenant_id: str | None) -> list[_Pending]:
    """Step 1: every interval to send (already-frozen ones included), committed before any network call."""
    params = {"quantity": QUANTITY, "tenant_id": tenant_id}
    with conn.transaction():
        conn.execute(_ENSURE_CURSORS, params)
        conn.execute(_LOCK, params)
        conn.execute(_FREEZE, params)
        rows = conn.execute(_PENDING, params).fetchall()
    return [_Pending(*row) for row in rows]


def _advance(conn: psycopg.Connection, accepted: list[_Pending]) -> set[str]:
    """Step 3: move the cursors Stripe accepted; returns the identifiers this run moved."""
    if not accepted:
        return set()
    with conn.transaction():
        rows = conn.execute(_ADVANCE, (QUANTITY, [p.identifier for p in accepted])).fetchall()
    return {row[0] for row in rows}


def _already_received(exc: stripe.InvalidRequestError) -> bool:
    """Stripe's refusal of a reused identifier: HTTP 400 "An event already exists with identifier …"
    (code and param are not documented, so the message decides). Our identifiers are deterministic,
    so Stripe holding one is proof the interval was delivered."""
    message = exc.user_message or str(exc)
    return exc.http_status == 400 and "already exists with identifier" in message


def _send(client: stripe.StripeClient, settings: BillingSettings, pending: _Pending,
          now: datetime) -> tuple[str, str | None]:
    """Step 2: ("sent" | "duplicate" (Stripe already has it) | "unavailable" (retry later) | "failed", why)."""
    if pending.timestamp < now - MAX_EVENT_AGE:
        return "failed", "older than Stripe accepts (35 days): bill it by hand, then mark-billed"
    try:
        client.v1.billing.meter_events.create(params={
            "event_name": settings.meter_event_name, "identifier": pending.identifier,
            "timestamp": int(pending.timestamp.timestamp()),
            "payload": {"stripe_customer_id": pending.customer_id, "value": str(pending.units)},
        })  # no explicit idempotency key: the identifier is Stripe's dedupe key for meter events
        return "sent", None
    except stripe.InvalidRequestError as exc:
        if _already_received(exc):
            return "duplicate", None  # accepted by an earlier (crashed or racing) run
        return "failed", f"Stripe refused it: {exc.user_message}"
    except stripe.StripeError as exc:
        if is_transient(exc):
            logger.warning("Stripe unavailable; usage %s stays pending for the next run: %s", pending.identifier, exc)
            return "unavailable", str(exc)
        return "failed", f"Stripe refused it: {exc.user_message}"


def _send_all(client: stripe.StripeClient, settings: BillingSettings, pending: list[_Pending],
              now: datetime) -> dict[str, list[tuple[_Pending, str | None]]]:
    """Step 2 for many intervals, `settings.report_concurrency` at a time; stops early once Stripe is down."""
    outcomes: dict[str, list[tuple[_Pending, str | None]]] = {
        "sent": [], "duplicate": [], "unavailable": [], "failed": []}
    with ThreadPoolExecutor(max_workers=settings.report_concurrency, thread_name_prefix="meter-events") as pool:
        futures = {pool.submit(_send, client, settings, p, now): p for p in pending}
        for future in as_completed(futures):
            outcome, why = future.result()
            outcomes[outcome].append((futures[future], why))
            if outcome == "unavailable":
                for other in futures:
                    other.cancel()
    tried = {id(p) for group in outcomes.values() for p, _ in group}
    outcomes["unavailable"] += [(p, "not tried: Stripe unavailable") for p in pending if id(p) not in tried]
    return outcomes


def _park(conn: psycopg.Connection, failed: list[tuple[_Pending, str | None]]) -> None:
    """Set aside intervals Stripe refused for good, so later cycles do not fail on them again."""
    for pending, why in failed:
        logger.error("usage %s parked: %s", pending.identifier, why)
        conn.execute("UPDATE control.billing_usage_cursor SET failed_at = now(), failed_reason = %s"
                     " WHERE quantity = %s AND pending_identifier = %s", (why, QUANTITY, pending.identifier))


def report_usage(conn: psycopg.Connection, client: stripe.StripeClient, settings: BillingSettings, *,
                 tenant_id: str | None = None, now: datetime | None = None) -> ReportResult:
    """Send every unreported interval (of one tenant, or all). A second pass sends what grew while
    a left-over frozen interval went first; a pass that hits a failure ends the run."""
    result = ReportResult()
    now = now or datetime.now(timezone.utc)
    for _ in range(MAX_PASSES):
        pending = _freeze(conn, tenant_id)
        if not pending:
            break
        outcomes = _send_all(client, settings, pending, now)
        accepted = [p for p, _ in outcomes["sent"] + outcomes["duplicate"]]
        moved = _advance(conn, accepted)
        _park(conn, outcomes["failed"])
        result.sent += len(outcomes["sent"])
        result.duplicates += len(outcomes["duplicate"])
        result.units += sum(p.units for p in accepted if p.identifier in moved)
        result.failed += [p.identifier for p, _ in outcomes["failed"]]
        result.deferred += [p.identifier for p, _ in outcomes["unavailable"]]
        if outcomes["unavailable"] or outcomes["failed"]:
            result.stripe_unavailable = bool(outcomes["unavailable"])
            break
    return result


def parked(conn: psycopg.Connection, tenant_id: str | None = None) -> list[dict]:
    """Intervals Stripe refused for good, waiting for an operator."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT tenant_id, period_start, pending_identifier AS identifier, pending_to - reported AS units,"
            " failed_at, failed_reason FROM control.billing_usage_cursor"
            " WHERE failed_at IS NOT NULL AND (%s::text IS NULL OR tenant_id = %s) ORDER BY failed_at",
            (tenant_id, tenant_id)).fetchall()


def retry_parked(conn: psycopg.Connection, *, actor: str, tenant_id: str | None = None) -> int:
    """Put parked intervals back in line (after the cause was fixed); the next run sends them as frozen."""
    with conn.transaction():
        rows = conn.execute(
            "UPDATE control.billing_usage_cursor SET failed_at = NULL, failed_reason = NULL"
            " WHERE failed_at IS NOT NULL AND (%s::text IS NULL OR tenant_id = %s)"
            " RETURNING tenant_id, pending_identifier", (tenant_id, tenant_id)).fetchall()
        for tenant, identifier in rows:
            audit.record(conn, tenant_id=tenant, action="billing.usage_retry", actor=actor,
                         detail={"identifier": identifier})
    return len(rows)


def mark_billed(conn: psycopg.Connection, identifier: str, *, actor: str) -> None:
    """An operator billed a parked interval by other means: advance the cursor past it, audited."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE control.billing_usage_cursor SET reported = pending_to, pending_to = NULL,"
            " pending_identifier = NULL, pending_timestamp = NULL, failed_at = NULL, failed_reason = NULL,"
            " reported_at = now() WHERE failed_at IS NOT NULL AND pending_identifier = %s"
            " RETURNING tenant_id, reported", (identifier,)).fetchone()
        if row is None:
            raise InvalidInput("identifier", f"no parked usage interval {identifier!r} (see `billing usage-failures`)")
        audit.record(conn, tenant_id=row[0], action="billing.usage_billed_by_hand", actor=actor,
                     detail={"identifier": identifier, "reported": row[1]})


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
