"""The audit log helper: one row in ``control.audit_log`` per state change, in the caller's transaction.

Write the entry in the same transaction as the change it describes, so a rolled-back change
leaves no entry and a committed one always has exactly one. Actions are dotted names
(``tenant.created``, ``tenant.suspended``, ``breaker.hard_limit``, ``billing.payment_failed``);
``actor`` says who asked (``cli:<user>``, ``lambda:provision_tenant``, ``enforcer``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

import psycopg
from psycopg.types.json import Jsonb


def record(conn: psycopg.Connection, *, tenant_id: str | None, action: str, actor: str,
           detail: Mapping[str, Any] | None = None) -> int:
    """Append one entry; returns its id."""
    row = conn.execute(
        "INSERT INTO control.audit_log (tenant_id, action, actor, detail) VALUES (%s, %s, %s, %s) RETURNING id",
        (tenant_id, action, actor, Jsonb(dict(detail or {}))),
    ).fetchone()
    assert row is not None
    return int(row[0])


def entries(conn: psycopg.Connection, tenant_id: str, *, action: str | None = None,
            since: datetime | None = None) -> list[dict[str, Any]]:
    """A tenant's entries, oldest first (optionally one action, optionally since a time)."""
    rows = conn.execute(
        "SELECT id, at, action, actor, detail FROM control.audit_log"
        " WHERE tenant_id = %s AND (%s::text IS NULL OR action = %s)"
        " AND (%s::timestamptz IS NULL OR at >= %s) ORDER BY id",
        (tenant_id, action, action, since, since),
    ).fetchall()
    return [dict(zip(("id", "at", "action", "actor", "detail"), row)) for row in rows]
