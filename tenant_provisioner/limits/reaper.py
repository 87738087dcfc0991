"""The session reaper: what a tenant session may not do for long, enforced from outside it.

A tenant holding a session as its own role can ``SET`` every user-level limit away
(``statement_timeout``, ``idle_in_transaction_session_timeout``, ``work_mem``) and even
``ALTER ROLE CURRENT_USER`` its own defaults and password; PostgreSQL allows all of it and RDS
offers no way to forbid it. So each enforcement cycle (`run_cycle`, every 5 minutes) first:

1. terminates tenant sessions that are idle in a transaction, run one statement, or keep one
   transaction open (which holds back the xmin horizon: nobody's dead rows can be vacuumed)
   longer than the thresholds, hold more locks than allowed (the shared lock table is one per
   cluster: filling it makes every database fail with "out of shared memory"), or sit in any
   database other than the app database (RDS does not let us revoke CONNECT on all of them);
   then, per tenant, the newest sessions beyond its tier's ``db_connections``: every tenant
   role has the same ``CONNECTION LIMIT`` (the largest tier's; `pg_roles` is readable by every
   tenant and must not tell tiers apart), so the tier's own number is enforced here and by the
   services' connection pools;
2. puts every tenant role back to what the platform set: role-level settings reset to the
   ``search_path``; ``LOGIN``, the common ``CONNECTION LIMIT`` and the password its state allows
   (`schema.LOGIN_VERIFIER`: the stored verifier while active, none otherwise). This also
   converts roles made before issue 10 (``NOLOGIN``, per-tier limits) in one cycle.

Thresholds come from config (`LimitsConfig` → the enforcer's environment → `ReaperSettings`).
The provisioner needs ``pg_signal_backend`` (to terminate) and ``pg_monitor`` (to see other
roles' session state in ``pg_stat_activity``), both granted by `init`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import psycopg
from psycopg import sql

from tenant_provisioner import audit
from tenant_provisioner.tenants import schema
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.runtime import env as envvars
from tenant_provisioner.tiers import TierCatalog, load_tiers

log = logging.getLogger(__name__)

REPAIR_BATCH = 50
_SESSIONS = """
SELECT a.pid, t.tenant_id, t.tier, a.datname, a.state,
       extract(epoch FROM now() - a.xact_start)::float8 AS transaction_s,
       extract(epoch FROM now() - a.state_change)::float8 AS in_state_s,
       coalesce(l.locks, 0) AS locks
FROM pg_stat_activity a
JOIN control.tenants t ON t.role_name = a.usename
LEFT JOIN (SELECT pid, count(*) AS locks FROM pg_locks GROUP BY pid) l ON l.pid = a.pid
WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
ORDER BY a.backend_start, a.pid
"""
# Role-level settings that differ from what provisioning set (search_path only, all databases).
_DRIFTED_SETTINGS = """
SELECT t.role_name, t.schema_name, s.setdatabase, d.datname
FROM control.tenants t
JOIN pg_roles r ON r.rolname = t.role_name
JOIN pg_db_role_setting s ON s.setrole = r.oid
LEFT JOIN pg_database d ON d.oid = s.setdatabase
WHERE t.state <> 'offboarded'
  AND (s.setdatabase <> 0 OR s.setconfig IS DISTINCT FROM ARRAY['search_path=' || t.schema_name])
"""
_LIVE_ROLES = """
SELECT t.role_name FROM control.tenants t JOIN pg_roles r ON r.rolname = t.role_name
WHERE t.state <> 'offboarded' ORDER BY t.role_name
"""
# Locked (shared) while their roles are altered, so a concurrent suspension or resume (which
# locks the row before it alters the role) is never overwritten with the state read before it.
_LOGINS = f"""
SELECT t.role_name, {schema.LOGIN_VERIFIER}, r.rolconnlimit
FROM control.tenants t JOIN pg_roles r ON r.rolname = t.role_name
WHERE t.role_name = ANY(%s) AND t.state <> 'offboarded'
ORDER BY t.role_name
FOR SHARE OF t SKIP LOCKED
"""


@dataclass(frozen=True)
class ReaperSettings:
    """Thresholds beyond which a tenant session is terminated (seconds; locks held)."""

    idle_in_transaction_s: float = 60
    statement_s: float = 300
    transaction_s: float = 900
    max_locks: int = 500
    # Every tenant may keep this many sessions whatever its tier: the service pods the autoscalers
    # may run each hold one connection of a tenant they serve (the pools' floor), so a small tier
    # on a large fleet is not reaped into 503s; a direct client gets no more than that.
    fleet_sessions: int = 1

    def __post_init__(self) -> None:
        if (min(self.idle_in_transaction_s, self.statement_s, self.transaction_s) <= 0 or self.max_locks < 1
                or self.fleet_sessions < 1):
            raise ConfigError("reaper thresholds must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ReaperSettings":
        """``REAPER_IDLE_IN_TRANSACTION_S``, ``REAPER_STATEMENT_S``, ``REAPER_TRANSACTION_S``,
        ``REAPER_MAX_LOCKS``, ``REAPER_FLEET_SESSIONS`` (set by the limits stack from config);
        defaults otherwise."""
        env = envvars.environ(env)
        defaults = cls()
        try:
            return cls(
                idle_in_transaction_s=float(env.get("REAPER_IDLE_IN_TRANSACTION_S", defaults.idle_in_transaction_s)),
                statement_s=float(env.get("REAPER_STATEMENT_S", defaults.statement_s)),
                transaction_s=float(env.get("REAPER_TRANSACTION_S", defaults.transaction_s)),
                max_locks=int(env.get("REAPER_MAX_LOCKS", defaults.max_locks)),
                fleet_sessions=int(env.get("REAPER_FLEET_SESSIONS", defaults.fleet_sessions)))
        except ValueError as exc:
            raise ConfigError(f"reaper thresholds must be numbers: {exc}") from exc

    def to_env(self) -> dict[str, str]:
        return {"REAPER_IDLE_IN_TRANSACTION_S": str(self.idle_in_transaction_s),
                "REAPER_STATEMENT_S": str(self.statement_s), "REAPER_TRANSACTION_S": str(self.transaction_s),
                "REAPER_MAX_LOCKS": str(self.max_locks), "REAPER_FLEET_SESSIONS": str(self.fleet_sessions)}


@dataclass(frozen=True)
class Terminated:
    pid: int
    tenant_id: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "tenant_id": self.tenant_id, "reason": self.reason}


def _reason(row: dict[str, Any], database: str, limits: ReaperSettings) -> str | None:
    state = row["state"] or ""
    if row["datname"] != database:
        return f"connected to database {row['datname']!r}, not the app database"
    if row["locks"] > limits.max_locks:
        return f"holds {row['locks']} locks (limit {limits.max_locks})"
    if state.startswith("idle in transaction") and row["in_state_s"] > limits.idle_in_transaction_s:
        return f"idle in transaction for {row['in_state_s']:.0f}s (limit {limits.idle_in_transaction_s:.0f}s)"
    if state == "active" and row["in_state_s"] > limits.statement_s:
        return f"one statement running for {row['in_state_s']:.0f}s (limit {limits.statement_s:.0f}s)"
    if row["transaction_s"] is not None and row["transaction_s"] > limits.transaction_s:
        return (f"one transaction open for {row['transaction_s']:.0f}s (limit {limits.transaction_s:.0f}s; "
                "it holds back vacuum for every tenant)")
    return None


def _over_tier(rows: list[dict[str, Any]], catalog: TierCatalog, fleet_sessions: int) -> dict[int, str]:
    """pid → reason for each tenant's sessions beyond its tier's ``db_connections`` (never below
    `fleet_sessions`), newest first (`rows` are ordered by start time, so the oldest sessions, the
    ones in use longest, stay)."""
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_tenant.setdefault(row["tenant_id"], []).append(row)
    reasons: dict[int, str] = {}
    for sessions in by_tenant.values():
        allowed = max(catalog.get(sessions[0]["tier"]).db_connections, fleet_sessions)
        for row in sessions[allowed:]:
            reasons[row["pid"]] = (f"{len(sessions)} sessions open, tier {row['tier']!r} allows {allowed} "
                                   "(the newest are ended)")
    return reasons


def reap_sessions(conn: psycopg.Connection, limits: ReaperSettings, *, actor: str,
                  catalog: TierCatalog | None = None) -> list[Terminated]:
    """Terminate the tenant sessions over a threshold, then each tenant's newest sessions beyond
    its tier's connection count (`catalog`, default the tiers file); one audit entry per termination."""
    database = conn.info.dbname
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute(_SESSIONS).fetchall()
    reasons = {row["pid"]: reason for row in rows if (reason := _reason(row, database, limits)) is not None}
    reasons.update(_over_tier([row for row in rows if row["pid"] not in reasons], catalog or load_tiers(),
                               limits.fleet_sessions))
    terminated = []
    for row in rows:
        reason = reasons.get(row["pid"])
        if reason is None:
            continue
        ended = conn.execute("SELECT pg_terminate_backend(%s)", (row["pid"],)).fetchone()
        if not ended or not ended[0]:
            continue  # gone meanwhile
        log.warning("terminated session %s of tenant %s: %s", row["pid"], row["tenant_id"], reason)
        with conn.transaction():
            audit.record(conn, tenant_id=row["tenant_id"], action="tenant.session_terminated", actor=actor,
                         detail={"pid": row["pid"], "reason": reason, "database": row["datname"]})
        terminated.append(Terminated(row["pid"], row["tenant_id"], reason))
    return terminated


@contextmanager
def _repair_batch(conn: psycopg.Connection) -> Iterator[None]:
    """One repair transaction. A tenant holding its own role row (an open ALTER ROLE) fails one
    batch, not the others; its session is reaped and the next cycle repairs it."""
    try:
        with conn.transaction():
            yield
    except psycopg.errors.LockNotAvailable:
        log.warning("role repair: a tenant holds its role row; its batch is retried next cycle")


def repair_roles(conn: psycopg.Connection, *, catalog: TierCatalog | None = None) -> int:
    """Put every live tenant role back to what the platform set (settings, ``LOGIN``, the password
    its state allows, the common ``CONNECTION LIMIT`` of `catalog`, default the tiers file);
    returns the number of roles whose settings or connection limit had drifted (passwords cannot
    be compared, so all are re-applied)."""
    limit = (catalog or load_tiers()).role_connection_limit
    drifted = conn.execute(_DRIFTED_SETTINGS).fetchall()
    statements: list[sql.Composable] = []
    for role, schema_name, database_oid, database in drifted:
        ident = sql.Identifier(role)
        if database_oid == 0:
            statements += [sql.SQL("ALTER ROLE {} RESET ALL").format(ident),
                           sql.SQL("ALTER ROLE {} SET search_path = {}").format(ident, sql.Identifier(schema_name))]
        elif database is not None:
            statements.append(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(ident, sql.Identifier(database)))
    repaired = {row[0] for row in drifted}
    # Small batches: a statement slower than log_min_duration_statement is logged with its text.
    for start in range(0, len(statements), REPAIR_BATCH):
        with _repair_batch(conn):
            schema.run_batch(conn, statements[start:start + REPAIR_BATCH])
    roles = [row[0] for row in conn.execute(_LIVE_ROLES)]
    for start in range(0, len(roles), REPAIR_BATCH):
        with _repair_batch(conn):
            rows = conn.execute(_LOGINS, (roles[start:start + REPAIR_BATCH],)).fetchall()
            other_limit = {role for role, _, connection_limit in rows if connection_limit != limit}
            schema.run_batch(conn, [*(schema.login_statement(role, verifier) for role, verifier, _ in rows),
                                    *(schema.connection_limit_statement(role, limit) for role in sorted(other_limit))])
            repaired |= other_limit
    return len(repaired)
