"""The one module that writes ``control.tenants``: every state transition of a tenant row, each with
its audit entry in the caller's transaction.

States: ``provisioning`` → ``active`` ⇄ ``suspended`` → ``offboarding`` → ``offboarded`` (and
``provisioning`` → gone when a create is undone). Callers — provisioning steps, the lifecycle,
offboarding, fleet migrations — decide *whether* a transition is allowed (and hold the row lock);
this module only records it, so a reader finds every write of a tenant's state in one place.
"""

from __future__ import annotations

from typing import Any, Mapping

import psycopg

from tenant_provisioner import audit
from tenant_provisioner.tenants.records import Tenant


def insert_provisioning(conn: psycopg.Connection, *, tenant_id: str, schema_name: str, tier: str,
                        schema_version: int, admin_email: str, company_name: str | None) -> None:
    """A new row in ``provisioning``; the schema and the role carry the same name."""
    conn.execute(
        "INSERT INTO control.tenants (tenant_id, schema_name, role_name, tier, state, schema_version,"
        " admin_email, company_name) VALUES (%s, %s, %s, %s, 'provisioning', %s, %s, %s)",
        (tenant_id, schema_name, schema_name, tier, schema_version, admin_email, company_name))


def delete_provisioning(conn: psycopg.Connection, tenant_id: str) -> None:
    """Forget a create that was undone (only ever a row still in ``provisioning``)."""
    conn.execute("DELETE FROM control.tenants WHERE tenant_id = %s AND state = 'provisioning'", (tenant_id,))


def activate(conn: psycopg.Connection, tenant: Tenant, *, actor: str) -> None:
    """``provisioning`` → ``active``: the tenant exists for everyone from now on."""
    conn.execute("UPDATE control.tenants SET state = 'active', updated_at = now() WHERE tenant_id = %s",
                 (tenant.tenant_id,))
    audit.record(conn, tenant_id=tenant.tenant_id, action="tenant.created", actor=actor,
                 detail={"tier": tenant.tier, "schema": tenant.schema_name, "schema_version": tenant.schema_version})


def deactivate(conn: psycopg.Connection, tenant_id: str) -> None:
    """``active`` → ``provisioning``: the undo of `activate` while a create is rolled back."""
    conn.execute("UPDATE control.tenants SET state = 'provisioning', updated_at = now()"
                 " WHERE tenant_id = %s AND state = 'active'", (tenant_id,))


def set_login_state(conn: psycopg.Connection, tenant: Tenant, *, target: str, reason: str | None, action: str,
                    actor: str) -> None:
    """``active`` ⇄ ``suspended``; a resume keeps the old reason in its audit entry."""
    conn.execute("UPDATE control.tenants SET state = %s, suspended_reason = %s, updated_at = now()"
                 " WHERE tenant_id = %s", (target, reason, tenant.tenant_id))
    audit.record(conn, tenant_id=tenant.tenant_id, action=action, actor=actor,
                 detail={"reason": reason or tenant.suspended_reason, "from_state": tenant.state})


def set_tier(conn: psycopg.Connection, tenant: Tenant, tier: str, *, actor: str, origin: str) -> None:
    conn.execute("UPDATE control.tenants SET tier = %s, updated_at = now() WHERE tenant_id = %s",
                 (tier, tenant.tenant_id))
    audit.record(conn, tenant_id=tenant.tenant_id, action="tenant.tier_changed", actor=actor,
                 detail={"from": tenant.tier, "to": tier, "origin": origin})


def begin_offboarding(conn: psycopg.Connection, tenant: Tenant, *, retention_days: int, actor: str) -> None:
    conn.execute("UPDATE control.tenants SET state = 'offboarding', updated_at = now() WHERE tenant_id = %s",
                 (tenant.tenant_id,))
    audit.record(conn, tenant_id=tenant.tenant_id, action="tenant.offboarding", actor=actor,
                 detail={"from_state": tenant.state, "retention_days": retention_days})


def record_export(conn: psycopg.Connection, tenant_id: str, *, location: str, retention_days: int,
                  rows: Mapping[str, int], actor: str) -> None:
    """The export is safe at `location`; the drop may happen once `retention_days` have passed."""
    conn.execute("UPDATE control.tenants SET export_location = %s, updated_at = now(),"
                 " drop_after = now() + make_interval(days => %s) WHERE tenant_id = %s",
                 (location, retention_days, tenant_id))
    audit.record(conn, tenant_id=tenant_id, action="tenant.exported", actor=actor,
                 detail={"export_location": location, "rows": dict(rows)})


def mark_offboarded(conn: psycopg.Connection, tenant_id: str, *, actor: str) -> None:
    """Schema and role are gone; the row and its audit trail stay."""
    conn.execute("UPDATE control.tenants SET state = 'offboarded', updated_at = now() WHERE tenant_id = %s",
                 (tenant_id,))
    audit.record(conn, tenant_id=tenant_id, action="tenant.offboarded", actor=actor, detail={})


def record_schema_version(conn: psycopg.Connection, tenant_id: str, *, from_version: int, to_version: int,
                          actor: str) -> None:
    conn.execute("UPDATE control.tenants SET schema_version = %s, updated_at = now() WHERE tenant_id = %s",
                 (to_version, tenant_id))
    detail: dict[str, Any] = {"from_version": from_version, "to_version": to_version}
    audit.record(conn, tenant_id=tenant_id, action="tenant.migrated", actor=actor, detail=detail)
