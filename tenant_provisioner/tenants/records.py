"""The tenant record (a row of ``control.tenants``) and how it is read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from tenant_provisioner.errors import InvalidInput, TenantNotFound
from tenant_provisioner.tiers import TierCatalog

STATES = ("provisioning", "active", "suspended", "offboarding", "offboarded")


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    schema_name: str
    role_name: str
    tier: str
    state: str
    schema_version: int
    admin_email: str
    company_name: str | None
    suspended_reason: str | None
    export_location: str | None
    drop_after: datetime | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {key: value.isoformat() if isinstance(value, datetime) else value
                for key, value in asdict(self).items()}


_SELECT = sql.SQL("SELECT {} FROM control.tenants").format(
    sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(Tenant)))


def find(conn: psycopg.Connection, tenant_id: str, *, for_update: bool = False) -> Tenant | None:
    query = sql.SQL("{} WHERE tenant_id = %s{}").format(_SELECT, sql.SQL(" FOR UPDATE" if for_update else ""))
    with conn.cursor(row_factory=class_row(Tenant)) as cur:
        return cur.execute(query, (tenant_id,)).fetchone()


def require(conn: psycopg.Connection, tenant_id: str, *, for_update: bool = False) -> Tenant:
    tenant = find(conn, tenant_id, for_update=for_update)
    if tenant is None:
        raise TenantNotFound(tenant_id)
    return tenant


def all_tenants(conn: psycopg.Connection, *, state: str | None = None) -> list[Tenant]:
    if state is not None and state not in STATES:
        raise InvalidInput("state", f"{state!r} is not one of {', '.join(STATES)}")
    query = sql.SQL("{} WHERE (%s::text IS NULL OR state = %s) ORDER BY tenant_id").format(_SELECT)
    with conn.cursor(row_factory=class_row(Tenant)) as cur:
        return cur.execute(query, (state, state)).fetchall()


def count_by_state(conn: psycopg.Connection) -> dict[str, int]:
    """Tenants per lifecycle state, every state present (zero included) so a gauge never gaps."""
    counts = dict.fromkeys(STATES, 0)
    for state, count in conn.execute("SELECT state, count(*) FROM control.tenants GROUP BY state"):
        counts[state] = int(count)
    return counts


def committed_connections(conn: psycopg.Connection, *, catalog: TierCatalog) -> int:
    """The sum of the tier connection counts (``db_connections``) of every tenant that may log in
    now or again (provisioning, active, suspended): what the tenants may open at once, to compare
    with the instance's memory-sized ``max_connections``. From the tiers, not from the roles'
    ``CONNECTION LIMIT``, which is the same for every tenant (`TierCatalog.role_connection_limit`)."""
    rows = conn.execute("SELECT tier, count(*) FROM control.tenants"
                        " WHERE state IN ('provisioning', 'active', 'suspended') GROUP BY tier").fetchall()
    return sum(catalog.get(tier).db_connections * int(count) for tier, count in rows)
