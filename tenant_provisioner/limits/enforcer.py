"""One enforcement cycle: measure every tenant, apply breaker transitions, push state, notify.

``run_cycle(db, redis_client, notifier=..., lifecycle=...)`` (the Lambda every 5 minutes, ``limits enforce``):

1. the billing period comes from the Redis server clock, the clock the limiter counts with;
2. usage per tenant, each measured on its own: API requests admitted/attempted from Redis (one
   pipelined read; the previous period's totals are closed too), storage as
   ``pg_total_relation_size`` over the tenant's schema plus its large objects, seats as the active
   rows of its ``users`` table; never waiting on a lock the tenant holds (`measure_database`);
3. per tenant, one transaction holding the tenant's row lock: usage rows upserted (never
   lowered), `breakers.step` per quantity, each transition inserted under its unique key with
   its audit entry, and a suspension done through `Lifecycle.suspend` in the same transaction;
   the tenant's state then goes to Redis so the limiter acts at once;
0. the session reaper (limits/reaper.py) ends tenant sessions over its thresholds or beyond their
   tier's connection count and repairs role settings and passwords, so no tenant lock or open
   transaction outlives it;
4. notifications from the transition outbox (rows claimed with ``FOR UPDATE SKIP LOCKED`` and
   marked sent), so two cycles running at once never notify twice;
5. post-cycle reporters: callables ``reporter(result: CycleResult, conn)`` with a ``name``, run
   after the cycle committed, with a connection from the same pool. The composition root
   (`tenant_provisioner.runtime.compose`) passes billing's: payment grace, then the API-request
   usage now in ``control.tenant_usage`` / ``result.usage`` to Stripe. A reporter's failure is
   recorded in ``result.errors`` and never undoes enforcement. A tenant a reporter suspended or
   resumed (billing's payment grace) reaches the limiter in the same cycle.

One tenant failing (its transaction rolls back) does not stop the others; the errors are in
the result, and the Lambda fails the invocation afterwards so the retry/DLQ path sees it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable, Protocol, Sequence

import psycopg
import redis
from psycopg import sql
from psycopg.rows import dict_row

from tenant_provisioner import audit
from tenant_provisioner.tenants import records, schema
from tenant_provisioner.tenants.lifecycle import Lifecycle
from tenant_provisioner.db import Database
from tenant_provisioner.errors import InvalidInput, PlatformError
from tenant_provisioner.limits import state as redis_state
from tenant_provisioner.limits.reaper import ReaperSettings, Terminated, reap_sessions, repair_roles
from tenant_provisioner.limits.breakers import QUANTITIES, BreakerState, Level, Transition, Usage, hard_limit_of, step
from tenant_provisioner.tenants.records import Tenant
from tenant_provisioner.tiers import TierCatalog, load_tiers

log = logging.getLogger(__name__)

ENFORCED_STATES = ("active", "suspended")
SEATS_TABLE = "users"  # tenant migration 0001: a seat is a user row that is not deactivated

# How long a measurement waits for a tenant's table lock before it falls back (a tenant may hold
# LOCK TABLE ... ACCESS EXCLUSIVE on its own tables for as long as its session lives).
MEASURE_LOCK_TIMEOUT = "200ms"
_EXACT_STORAGE = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_class c WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'm')
"""
# Lock-free estimate from the catalog (pages as of the last VACUUM/ANALYZE/index build): tables,
# their TOAST tables and indexes.
_ESTIMATED_STORAGE = """
SELECT ((coalesce(sum(c.relpages), 0) + coalesce(sum(t.relpages), 0))
        * current_setting('block_size')::bigint)::bigint
FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'm', 'i')
"""
# Large objects live outside every schema; their owner is the tenant role, whose privileges the
# provisioner inherits once a tenant owns any (schema.inherit). lo_lseek64 to the end reads the
# size from the last page.
_OWNS_LARGE_OBJECTS = "SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata WHERE lomowner = %s::regrole)"
_LARGE_OBJECT_BYTES = """
SELECT coalesce(sum(lo_lseek64(lo_open(m.oid, 262144), 0, 2)), 0)::bigint
FROM pg_largeobject_metadata m WHERE m.lomowner = %s::regrole
"""
_STORED_SEATS = """
SELECT admitted FROM control.tenant_usage WHERE tenant_id = %s AND period_start = %s AND quantity = 'seats'
"""
_UPSERT_USAGE = """
INSERT INTO control.tenant_usage (tenant_id, period_start, quantity, admitted, attempted)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, period_start, quantity) DO UPDATE
SET admitted = greatest(tenant_usage.admitted, excluded.admitted),
    attempted = greatest(tenant_usage.attempted, excluded.attempted, excluded.admitted),
    measured_at = now()
"""
_UPSERT_BREAKER = """
INSERT INTO control.tenant_breakers (tenant_id, quantity, level, period_start, tier, generation, attempted_baseline)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, quantity) DO UPDATE
SET level = excluded.level, period_start = excluded.period_start, tier = excluded.tier,
    generation = excluded.generation, attempted_baseline = excluded.attempted_baseline,
    changed_at = CASE WHEN tenant_breakers.level = excluded.level THEN tenant_breakers.changed_at ELSE now() END
"""
_INSERT_TRANSITION = """
INSERT INTO control.breaker_transitions
    (tenant_id, quantity, period_start, generation, from_level, to_level, cause, admitted, attempted, hard_limit,
     notified_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN NULL ELSE now() END)
ON CONFLICT DO NOTHING
RETURNING id
"""
_CLAIM_NOTICE = """
SELECT b.id, b.tenant_id, b.quantity, b.period_start, b.to_level, b.admitted, b.attempted, b.hard_limit,
       t.admin_email, t.company_name, t.tier
FROM control.breaker_transitions b JOIN control.tenants t USING (tenant_id)
WHERE b.notified_at IS NULL AND NOT b.id = ANY(%s)
ORDER BY b.id
LIMIT 1
FOR UPDATE OF b SKIP LOCKED
"""


@dataclass(frozen=True)
class Notice:
    """One breaker transition to tell the tenant admin and ops about."""

    transition_id: int
    tenant_id: str
    quantity: str
    period_start: date
    level: Level
    admitted: int
    attempted: int
    hard_limit: int
    admin_email: str
    company_name: str | None
    tier: str


class Notifier(Protocol):
    def __call__(self, notice: Notice) -> None: ...


@dataclass(frozen=True)
class TenantUsage:
    tenant_id: str
    tier: str
    period_start: date
    usage: dict[str, Usage]

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "tier": self.tier, "period_start": self.period_start.isoformat(),
                "usage": {q: {"admitted": u.admitted, "attempted": u.attempted, "hard_limit": u.hard_limit}
                          for q, u in self.usage.items()}}


@dataclass
class CycleResult:
    period_start: date
    usage: list[TenantUsage] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    notified: int = 0
    errors: list[str] = field(default_factory=list)
    terminated: list[Terminated] = field(default_factory=list)
    roles_repaired: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"period_start": self.period_start.isoformat(), "tenants": len(self.usage),
                "transitions": self.transitions, "notified": self.notified, "errors": self.errors,
                "sessions_terminated": [t.to_dict() for t in self.terminated], "roles_repaired": self.roles_repaired}


class Reporter(Protocol):
    """Post-cycle work of another component (billing), run once the cycle committed."""

    def __call__(self, result: CycleResult, conn: psycopg.Connection) -> None: ...


def _reporter_name(reporter: Reporter) -> str:
    return str(getattr(reporter, "name", None) or getattr(reporter, "__name__", None) or type(reporter).__name__)


def _scalar(conn: psycopg.Connection, query: str | sql.Composable, params: Sequence[Any] = ()) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _seats(conn: psycopg.Connection, tenant: Tenant) -> int:
    table = sql.Identifier(tenant.schema_name, SEATS_TABLE)
    if conn.execute("SELECT to_regclass(%s)", (f"{tenant.schema_name}.{SEATS_TABLE}",)).fetchone()[0] is None:
        return 0
    return _scalar(conn, sql.SQL("SELECT count(*) FROM {} WHERE deactivated_at IS NULL").format(table))


def measure_database(conn: psycopg.Connection, tenant: Tenant, period_start: date) -> tuple[int, int]:
    """(storage bytes incl. large objects, seats) of one tenant, never waiting on its locks.

    Exact sizes and the seat count need a share lock on the tenant's tables; when the tenant holds
    a conflicting lock, storage comes from the catalog estimate and seats from the last measurement."""
    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (MEASURE_LOCK_TIMEOUT,))
        large_objects = 0
        if conn.execute(_OWNS_LARGE_OBJECTS, (tenant.role_name,)).fetchone()[0]:
            schema.inherit(conn, tenant.role_name)
            large_objects = _scalar(conn, _LARGE_OBJECT_BYTES, (tenant.role_name,))
        try:
            with conn.transaction():
                return _scalar(conn, _EXACT_STORAGE, (tenant.schema_name,)) + large_objects, _seats(conn, tenant)
        except psycopg.errors.LockNotAvailable:
            log.warning("tenant %s holds a lock on its tables; storage estimated from the catalog", tenant.tenant_id)
            return (_scalar(conn, _ESTIMATED_STORAGE, (tenant.schema_name,)) + large_objects,
                    _scalar(conn, _STORED_SEATS, (tenant.tenant_id, period_start)))


def measure(conn: psycopg.Connection, client: redis.Redis, tenant_list: Sequence[Tenant], period_start: date,
            catalog: TierCatalog, key_prefix: str = "", errors: list[str] | None = None,
            ) -> tuple[list[TenantUsage], dict[str, tuple[int, int]]]:
    """This period's usage of every tenant, and the previous period's API totals Redis still has.

    Each tenant is measured on its own: one on a tier the tiers file no longer has, or whose
    measurement fails, is left out and reported in `errors`; the others are measured."""
    counters = redis_state.read_counters(client, [t.tenant_id for t in tenant_list], period_start, key_prefix)
    measured: list[TenantUsage] = []
    previous: dict[str, tuple[int, int]] = {}
    for tenant in tenant_list:
        try:
            tier = catalog.get(tenant.tier)
            size, seats = measure_database(conn, tenant, period_start)
        except (InvalidInput, psycopg.Error) as exc:
            log.error("measuring tenant %s failed: %s", tenant.tenant_id, exc)
            if errors is not None:
                errors.append(f"measure {tenant.tenant_id}: {type(exc).__name__}: {exc}")
            continue
        api = counters[tenant.tenant_id]
        if api.previous is not None:
            previous[tenant.tenant_id] = api.previous
        usage = {
            "api_requests": Usage("api_requests", api.current[0], api.current[1],
                                  hard_limit_of(tier, "api_requests")),
            "storage_bytes": Usage("storage_bytes", size, size, hard_limit_of(tier, "storage_bytes")),
            "seats": Usage("seats", seats, seats, hard_limit_of(tier, "seats")),
        }
        measured.append(TenantUsage(tenant.tenant_id, tier.name, period_start, usage))
    return measured, previous


def _load_breakers(conn: psycopg.Connection, tenant_id: str) -> dict[str, BreakerState]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM control.tenant_breakers WHERE tenant_id = %s FOR UPDATE",
                           (tenant_id,)).fetchall()
    return {r["quantity"]: BreakerState(Level.parse(r["level"]), r["period_start"], r["tier"], r["generation"],
                                        r["attempted_baseline"]) for r in rows}


def _previous_period(period_start: date) -> date:
    return date(period_start.year - (period_start.month == 1), (period_start.month - 2) % 12 + 1, 1)


def _record_transition(conn: psycopg.Connection, tenant_id: str, t: Transition, usage: Usage, actor: str) -> bool:
    """Insert the transition and its audit entry; False when another cycle recorded it first."""
    row = conn.execute(_INSERT_TRANSITION, (tenant_id, t.quantity, t.period, t.generation, t.from_level.label,
                                            t.to_level.label, t.cause, usage.admitted, usage.attempted,
                                            usage.hard_limit, t.cause == "usage")).fetchone()
    if row is None:
        return False
    audit.record(conn, tenant_id=tenant_id, action=t.action, actor=actor,
                 detail={"quantity": t.quantity, "from": t.from_level.label, "to": t.to_level.label,
                         "cause": t.cause, "period_start": t.period.isoformat(), "generation": t.generation,
                         "admitted": usage.admitted, "attempted": usage.attempted, "hard_limit": usage.hard_limit})
    return True


def enforce_tenant(conn: psycopg.Connection, measured: TenantUsage, catalog: TierCatalog, *, actor: str,
                   lifecycle: Lifecycle, previous: tuple[int, int] | None = None) -> tuple[Tenant, list[Transition]]:
    """Apply one tenant's measured usage in one transaction; returns the tenant as committed."""
    recorded: list[Transition] = []
    with conn.transaction():
        tenant = records.require(conn, measured.tenant_id, for_update=True)
        if tenant.state not in ENFORCED_STATES:
            return tenant, []
        tier = catalog.get(tenant.tier)
        if previous is not None:
            conn.execute(_UPSERT_USAGE, (tenant.tenant_id, _previous_period(measured.period_start), "api_requests",
                                         *previous))
        breakers = _load_breakers(conn, tenant.tenant_id)
        suspend_for: list[Transition] = []
        for quantity in QUANTITIES:
            usage = measured.usage[quantity]
            usage = Usage(quantity, usage.admitted, usage.attempted, hard_limit_of(tier, quantity))
            conn.execute(_UPSERT_USAGE, (tenant.tenant_id, measured.period_start, quantity, usage.admitted,
                                         usage.attempted))
            new, transitions = step(breakers.get(quantity), usage, period=measured.period_start, tier=tier.name,
                                    levels=catalog.breakers, tenant_active=tenant.state == "active")
            conn.execute(_UPSERT_BREAKER, (tenant.tenant_id, quantity, new.level.label, new.period, new.tier,
                                           new.generation, new.attempted_baseline))
            for transition in transitions:
                if _record_transition(conn, tenant.tenant_id, transition, usage, actor):
                    recorded.append(transition)
                    if transition.to_level is Level.SUSPENDED and transition.cause == "usage":
                        suspend_for.append(transition)
        if suspend_for and tenant.state == "active":
            reason = "; ".join(f"breaker: {t.quantity} attempted >= {catalog.breakers.suspension:.0%} of the hard "
                               f"limit in {t.period:%Y-%m}" for t in suspend_for)
            tenant = lifecycle.suspend(conn, tenant.tenant_id, reason=reason, actor=actor)
    if tenant.state == "suspended":
        schema.terminate_sessions(conn, tenant.role_name)  # again, now that the password is gone
    return tenant, recorded


def _api_level(conn: psycopg.Connection, tenant_id: str) -> Level:
    row = conn.execute("SELECT level FROM control.tenant_breakers WHERE tenant_id = %s AND quantity = %s",
                       (tenant_id, "api_requests")).fetchone()
    return Level.parse(row[0]) if row else Level.OK


def send_notices(conn: psycopg.Connection, notifier: Notifier) -> tuple[int, list[str]]:
    """Drain the transition outbox: claim one row at a time, notify, mark it sent."""
    sent, failed, errors = 0, [], []
    while True:
        with conn.transaction():
            with conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(_CLAIM_NOTICE, (failed,)).fetchone()
            if row is None:
                return sent, errors
            notice = Notice(transition_id=row["id"], tenant_id=row["tenant_id"], quantity=row["quantity"],
                            period_start=row["period_start"], level=Level.parse(row["to_level"]),
                            admitted=row["admitted"], attempted=row["attempted"], hard_limit=row["hard_limit"],
                            admin_email=row["admin_email"], company_name=row["company_name"], tier=row["tier"])
            try:
                notifier(notice)
            except Exception as exc:  # noqa: BLE001 - one failed email must not block the others
                log.exception("notification of breaker transition %s failed", notice.transition_id)
                failed.append(notice.transition_id)
                errors.append(f"notify {notice.tenant_id}/{notice.quantity}: {type(exc).__name__}: {exc}")
                continue
            conn.execute("UPDATE control.breaker_transitions SET notified_at = now() WHERE id = %s",
                         (notice.transition_id,))
            sent += 1


def run_cycle(db: Database, client: redis.Redis, *, notifier: Notifier, lifecycle: Lifecycle,
              catalog: TierCatalog | None = None, key_prefix: str = "", actor: str = "enforcer",
              tenant_ids: Iterable[str] | None = None, reporters: Sequence[Reporter] = (),
              reaper: ReaperSettings | None = None) -> CycleResult:
    """Run one enforcement cycle over every active or suspended tenant (or just `tenant_ids`),
    after the session reaper (`reaper`, when given: the Lambda and the CLI always give it)."""
    catalog = catalog or load_tiers()
    period_start = redis_state.server_period(client)
    result = CycleResult(period_start=period_start)
    with db.connection() as conn:
        if reaper is not None:
            _reap(conn, reaper, actor, result, catalog)
        tenant_list = [t for t in records.all_tenants(conn) if t.state in ENFORCED_STATES]
        if tenant_ids is not None:
            wanted = set(tenant_ids)
            tenant_list = [t for t in tenant_list if t.tenant_id in wanted]
        measured, previous = measure(conn, client, tenant_list, period_start, catalog, key_prefix, result.errors)
        result.usage = measured
        pushed: dict[str, bool] = {}  # tenant -> suspended, as last written to Redis
        for item in measured:
            try:
                tenant, transitions = enforce_tenant(conn, item, catalog, actor=actor, lifecycle=lifecycle,
                                                     previous=previous.get(item.tenant_id))
                redis_state.push_state(client, tenant.tenant_id, suspended=tenant.state == "suspended",
                                       level=_api_level(conn, tenant.tenant_id), period_start=period_start,
                                       key_prefix=key_prefix)
                pushed[tenant.tenant_id] = tenant.state == "suspended"
            except (PlatformError, psycopg.Error, redis.RedisError, OSError) as exc:
                log.exception("enforcing tenant %s failed", item.tenant_id)
                result.errors.append(f"enforce {item.tenant_id}: {type(exc).__name__}: {exc}")
                continue
            result.transitions += [{"tenant_id": item.tenant_id, "quantity": t.quantity, "from": t.from_level.label,
                                    "to": t.to_level.label, "cause": t.cause, "action": t.action}
                                   for t in transitions]
        result.notified, notify_errors = send_notices(conn, notifier)
        result.errors += notify_errors
        for reporter in reporters:
            try:
                reporter(result, conn)
            except Exception as exc:  # noqa: BLE001 - a reporter (billing) must not undo enforcement
                log.exception("post-cycle reporter %s failed", _reporter_name(reporter))
                result.errors.append(f"reporter {_reporter_name(reporter)!r}: {type(exc).__name__}: {exc}")
        if reporters:
            _push_lifecycle_changes(conn, client, pushed, key_prefix)
    return result


def _reap(conn: psycopg.Connection, reaper: ReaperSettings, actor: str, result: CycleResult,
          catalog: TierCatalog) -> None:
    try:
        result.terminated = reap_sessions(conn, reaper, actor=actor, catalog=catalog)
        result.roles_repaired = repair_roles(conn, catalog=catalog)
    except psycopg.Error as exc:  # enforcement still runs; the error fails the invocation afterwards
        log.exception("session reaper failed")
        result.errors.append(f"reaper: {type(exc).__name__}: {exc}")


def _push_lifecycle_changes(conn: psycopg.Connection, client: redis.Redis, pushed: dict[str, bool],
                            key_prefix: str) -> None:
    """Reporters may suspend or resume tenants (billing's payment grace): tell the limiter now,
    not a cycle later."""
    suspended_now = {t.tenant_id for t in records.all_tenants(conn, state="suspended")}
    for tenant_id, was_suspended in pushed.items():
        if (tenant_id in suspended_now) != was_suspended:
            redis_state.set_suspended(client, tenant_id, tenant_id in suspended_now, key_prefix=key_prefix)
