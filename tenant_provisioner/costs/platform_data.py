"""What the report reads from the control schema: tenants, their usage, and breaker events.

Read-only and best effort: the report must go out even when the database is down, so any
database failure becomes `PlatformSnapshot.unavailable` with the reason, never an exception.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Mapping

import psycopg
from psycopg.rows import dict_row

logger = logging.getLogger(__name__)

BILLABLE_STATES = ("active",)
COSTED_STATES = ("active", "suspended", "offboarding")   # still hold a schema, a role and a secret
EVENT_ACTIONS = ("breaker.%", "tenant.suspended")

_TENANTS = "SELECT tenant_id, tier, state FROM control.tenants WHERE state = ANY(%s) ORDER BY tenant_id"
_USAGE = """
SELECT tenant_id, admitted, attempted FROM control.tenant_usage
WHERE period_start = %s AND quantity = 'api_requests'
"""
_EVENTS = """
SELECT at, tenant_id, action, actor, detail FROM control.audit_log
WHERE at >= %s AND at < %s AND (action LIKE %s OR action = %s)
ORDER BY at, id
"""


@dataclass(frozen=True)
class TenantRecord:
    tenant_id: str
    tier: str
    state: str


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    tenant_id: str | None
    action: str
    actor: str | None
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class PlatformSnapshot:
    tenants: tuple[TenantRecord, ...] = ()
    api_requests: Mapping[str, int] = field(default_factory=dict)   # tenant -> admitted this period
    events: tuple[AuditEvent, ...] = ()
    unavailable: str | None = None         # why the database could not be read at all
    notes: tuple[str, ...] = ()            # partial gaps (e.g. no usage table yet)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "PlatformSnapshot":
        """A snapshot from plain JSON (the `platform` part of a report fixture)."""
        return cls(
            tenants=tuple(TenantRecord(t["tenant_id"], t["tier"], t.get("state", "active"))
                          for t in data.get("tenants", [])),
            api_requests={k: int(v) for k, v in data.get("api_requests", {}).items()},
            events=tuple(AuditEvent(datetime.fromisoformat(e["at"]), e.get("tenant_id"), e["action"],
                                    e.get("actor"), e.get("detail") or {}) for e in data.get("events", [])),
            unavailable=data.get("unavailable"),
        )


def read_platform(conninfo: str, *, period_start: date, since: datetime, until: datetime,
                  connect_timeout: int = 5) -> PlatformSnapshot:
    """Tenants, this period's API-request usage and the breaker events in [since, until)."""
    try:
        with psycopg.connect(conninfo, connect_timeout=connect_timeout, autocommit=True,
                             row_factory=dict_row) as conn:
            conn.execute("SET default_transaction_read_only = on")
            tenants = tuple(TenantRecord(r["tenant_id"], r["tier"], r["state"])
                            for r in conn.execute(_TENANTS, (list(COSTED_STATES),)))
            events = tuple(AuditEvent(r["at"], r["tenant_id"], r["action"], r["actor"], r["detail"] or {})
                           for r in conn.execute(_EVENTS, (since, until, *EVENT_ACTIONS)))
            notes: tuple[str, ...] = ()
            try:
                usage = {r["tenant_id"]: int(r["admitted"]) for r in conn.execute(_USAGE, (period_start,))}
            except psycopg.errors.UndefinedTable:
                usage, notes = {}, ("control.tenant_usage does not exist yet: shared cost split evenly",)
    except psycopg.Error as exc:   # the detail (host names) goes to the log, not into the email
        logger.warning("cost report without tenant data: %s", exc)
        return PlatformSnapshot(unavailable=f"database unreachable ({type(exc).__name__})")
    return PlatformSnapshot(tenants, usage, events, None, notes)
