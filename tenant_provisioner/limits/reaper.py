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
2. puts every tenant role's settings and password back to what the platform set (role-level
   settings reset to the ``search_path``; the password to the verifier stored at provisioning,
   or none).

Thresholds come from config (`LimitsConfig` → the enforcer's environment → `ReaperSettings`).
The provisioner needs ``pg_signal_backend`` (to terminate) and ``pg_monitor`` (to see other
roles' session state in ``pg_stat_activity``), both granted by `init`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import psycopg
from psycopg import sql

from tenant_provisioner import audit
from tenant_provisioner.tenants import schema
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.runtime import env as envvars

log = logging.getLogger(__name__)

REPAIR_BATCH = 50
_SESSIONS = """
SELECT a.pid, t.tenant_id, a.datname, a.state,
       extract(epoch FROM now() - a.xact_start)::float8 AS transaction_s,
       extract(epoch FROM now() - a.state_change)::float8 AS in_state_s,
       coalesce(l.locks, 0) AS locks
FROM pg_stat_activity a
JOIN control.tenants t ON t.role_name = a.usename
LEFT JOIN (SELECT pid, count(*) AS locks FROM pg_locks GROUP BY pid) l ON l.pid = a.pid
WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
ORDER BY a.pid
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
_PASSWORDS = """
SELECT t.role_name, t.password_verifier FROM control.tenants t JOIN pg_roles r ON r.rolname = t.role_name
WHERE t.state IN ('active', 'suspended', 'offboarding')
"""


@dataclass(frozen=True)
class ReaperSettings:
    """Thresholds beyond which a tenant session is terminated (seconds; locks held)."""

    idle_in_transaction_s: float = 60
    statement_s: float = 300
    transaction_s: float = 900
    max_locks: int = 500

    def __post_init__(self) -> None:
        if min(self.idle_in_transaction_s, self.statement_s, self.transaction_s) <= 0 or self.max_locks < 1:
            raise ConfigError("reaper thresholds must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ReaperSettings":
        """``REAPER_IDLE_IN_TRANSACTION_S``, ``REAPER_STATEMENT_S``, ``REAPER_TRANSACTION_S``,
        ``REAPER_MAX_LOCKS`` (set by the limits stack from config); defaults otherwise."""
        env = envvars.environ(env)
        defaults = cls()
        try:
            return cls(
                idle_in_transaction_s=float(env.get("REAPER_IDLE_IN_TRANSACTION_S", defaults.idle_in_transaction_s)),
                statement_s=float(env.get("REAPER_STATEMENT_S", defaults.statement_s)),
                transaction_s=float(env.get("REAPER_TRANSACTION_S", defaults.transaction_s)),
                max_locks=int(env.get("REAPER_MAX_LOCKS", defaults.max_locks)))
        except ValueError as exc:
            raise ConfigError(f"reaper thresholds must be numbers: {exc}") from exc

    def to_env(self) -> dict[str, str]:
        return {"REAPER_IDLE_IN_TRANSACTION_S": str(self.idle_in_transaction_s),
                "REAPER_STATEMENT_S": str(self.statement_s), "REAPER_TRANSACTION_S": str(self.transaction_s),
                "REAPER_MAX_LOCKS": str(self.max_locks)}


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


def reap_sessions(conn: psycopg.Connection, limits: ReaperSettings, *, actor: str) -> list[Terminated]:
    """Terminate the tenant sessions over a threshold; one audit entry per termination."""
    database = conn.info.dbname
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute(_SESSIONS).fetchall()
    terminated = []
    for row in rows:
        reason = _reason(row, database, limits)
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


def repair_roles(conn: psycopg.Connection) -> int:
    """Put role-level settings and passwords back to what provisioning set; returns the number
    of roles whose settings had drifted (passwords cannot be compared, so all are re-applied)."""
    drifted = conn.execute(_DRIFTED_SETTINGS).fetchall()
    statements: list[sql.Composable] = []
    for role, schema_name, database_oid, database in drifted:
        ident = sql.Identifier(role)
        if database_oid == 0:
            statements += [sql.SQL("ALTER ROLE {} RESET ALL").format(ident),
                           sql.SQL("ALTER ROLE {} SET search_path = {}").format(ident, sql.Identifier(schema_name))]
        elif database is not None:
            statements.append(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(ident, sql.Identifier(database)))
    for role, verifier in conn.execute(_PASSWORDS).fetchall():
        statements.append(schema.password_statement(role, verifier))
    # Small batches: a statement slower than log_min_duration_statement is logged with its text.
    # A tenant holding its own role row (an open ALTER ROLE) fails one batch, not the others; its
    # session is reaped and the next cycle repairs it.
    for start in range(0, len(statements), REPAIR_BATCH):
        try:
            with conn.transaction():
                schema.run_batch(conn, statements[start:start + REPAIR_BATCH])
        except psycopg.errors.LockNotAvailable:
            log.warning("role repair: a tenant holds its role row; batch %d retried next cycle", start // REPAIR_BATCH)
    return len({row[0] for row in drifted})
