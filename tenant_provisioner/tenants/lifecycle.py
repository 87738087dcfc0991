"""The tenant lifecycle API used by the CLI, the Lambdas and the other components.

Every function takes a connection acting as the provisioner role (``Database.connection()``),
validates its input before touching anything, and does its writes, the audit entry included,
in one transaction (a savepoint when the caller already has one open, so a caller such as the
quota enforcer can join a suspension to its own transaction). Repeating a call that already
took effect is a no-op without a second audit entry.

- ``create(conn, request, actor=..., store=..., endpoint=...)`` → `CreateResult` (provisioning.py);
- ``get(conn, id)`` / ``list_tenants(conn, state=None)``;
- ``suspend(conn, id, reason=..., actor=...)``: role NOLOGIN, its sessions terminated;
- ``resume(conn, id, actor=...)``; ``change_tier(conn, id, tier, actor=...)``: connection limit;
- ``offboard(conn, id, actor=..., export_to=..., store=..., retention_days=0)``: export, then drop
  once the retention has passed (offboarding.py);
- after-commit hooks ``after_suspend`` / ``after_resume`` and in-transaction hooks
  ``on_change_tier`` / ``on_offboard`` let other components follow (provisioning.py).

Errors: `InvalidInput` (bad input), `TenantNotFound`, `TenantConflict` (e.g. resuming an
offboarded tenant, or creating an existing id with another tier), `TransientError` (retry).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import psycopg

from tenant_provisioner import audit, leases, validation
from tenant_provisioner.tenants import provisioning, records, schema
from tenant_provisioner.errors import InvalidInput, TenantConflict, TransientError
from tenant_provisioner.tenants.provisioning import CreateRequest, DbEndpoint, ProvisionContext, Step
from tenant_provisioner.secrets import SecretStore
from tenant_provisioner.tenants.records import STATES, Tenant
from tenant_provisioner.tiers import load_tiers

CREATE_LOCK_TIMEOUT_S = 30.0
# Longer than a create can take (the Lambda's timeout is 60 s); a crashed create blocks its id at most this long.
CREATE_LEASE_TTL_S = 120.0


@dataclass(frozen=True)
class CreateResult:
    tenant: Tenant
    created: bool
    duration_ms: float
    outputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object the CLI prints and the Lambda returns (no secret values in it)."""
        return {"tenant_id": self.tenant.tenant_id, "status": self.tenant.state, "tier": self.tenant.tier,
                "schema": self.tenant.schema_name, "role": self.tenant.role_name,
                "schema_version": self.tenant.schema_version, "created": self.created,
                "duration_ms": round(self.duration_ms, 1), **self.outputs}


@contextmanager
def _create_lock(conn: psycopg.Connection, tenant_id: str) -> Iterator[None]:
    """Serialize creates of one id across processes (a lease row, bounded wait)."""
    with leases.held(conn, f"create:{tenant_id}", ttl_s=CREATE_LEASE_TTL_S, wait_s=CREATE_LOCK_TIMEOUT_S) as held:
        if not held:
            raise TransientError(f"another create of {tenant_id!r} is still running; retry")
        yield


def create(conn: psycopg.Connection, request: CreateRequest, *, actor: str, store: SecretStore | None = None,
           endpoint: DbEndpoint | None = None, steps: Sequence[Step] | None = None) -> CreateResult:
    """Provision `request` (idempotent: same id + tier → the same tenant, ``created`` false)."""
    started = time.perf_counter()
    actor = validation.actor(actor)
    validation.tenant_id(request.tenant_id)  # also for requests built without `CreateRequest.parse`
    validation.email(request.admin_email)
    tier = load_tiers().get(request.tier)
    with _create_lock(conn, request.tenant_id):
        existing = records.find(conn, request.tenant_id)
        if existing is not None:
            if existing.tier != request.tier:
                raise TenantConflict(f"tenant {request.tenant_id!r} already exists with tier {existing.tier!r}, "
                                     f"not {request.tier!r}; use change-tier")
            if existing.state == "active":
                return CreateResult(existing, created=False, duration_ms=_ms_since(started))
            if existing.state != "provisioning":
                raise TenantConflict(f"tenant {request.tenant_id!r} already exists and is {existing.state}")
        ctx = ProvisionContext(conn=conn, request=request, tier=tier, actor=actor,
                               provisioner_role=_current_role(conn), tenant=existing)
        provisioning.run(steps if steps is not None else provisioning.default_steps(store, endpoint), ctx)
    assert ctx.tenant is not None
    return CreateResult(ctx.tenant, created=True, duration_ms=_ms_since(started), outputs=ctx.outputs)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _current_role(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


def get(conn: psycopg.Connection, tenant_id: str) -> Tenant:
    return records.require(conn, validation.tenant_id(tenant_id))


def list_tenants(conn: psycopg.Connection, *, state: str | None = None) -> list[Tenant]:
    if state is not None and state not in STATES:
        raise InvalidInput("state", f"{state!r} is not one of {', '.join(STATES)}")
    return records.all_tenants(conn, state=state)


def _transition(conn: psycopg.Connection, tenant_id: str, *, allowed_from: tuple[str, ...],
                target: str) -> Tenant | None:
    """Lock the row; None when it is already in `target` (no-op), else the tenant to change."""
    tenant = records.require(conn, tenant_id, for_update=True)
    if tenant.state == target:
        return None
    if tenant.state not in allowed_from:
        raise TenantConflict(f"tenant {tenant_id!r} is {tenant.state}; it cannot become {target}")
    return tenant


def _set_login_state(conn: psycopg.Connection, tenant_id: str, *, target: str, allowed_from: str,
                     reason: str | None, action: str, actor: str) -> Tenant:
    """Suspend (target ``suspended``) or resume (``active``): role login, state and one audit row."""
    with conn.transaction():
        tenant = _transition(conn, tenant_id, allowed_from=(allowed_from,), target=target)
        if tenant is not None:
            schema.set_login(conn, tenant.role_name, target == "active")
            conn.execute("UPDATE control.tenants SET state = %s, suspended_reason = %s, updated_at = now()"
                         " WHERE tenant_id = %s", (target, reason, tenant_id))
            audit.record(conn, tenant_id=tenant_id, action=action, actor=actor,
                         detail={"reason": reason or tenant.suspended_reason, "from_state": tenant.state})
        return records.require(conn, tenant_id)


def suspend(conn: psycopg.Connection, tenant_id: str, *, reason: str, actor: str) -> Tenant:
    """Disable login, end the tenant's sessions, record why (idempotent)."""
    tenant = _set_login_state(conn, validation.tenant_id(tenant_id), target="suspended", allowed_from="active",
                              reason=validation.text(reason, "reason", required=True), action="tenant.suspended",
                              actor=validation.actor(actor))
    # After the commit (NOLOGIN is in force), so a terminated session cannot simply reconnect.
    schema.terminate_sessions(conn, tenant.role_name)
    provisioning.run_after_hooks("after_suspend", conn, tenant)
    return tenant


def resume(conn: psycopg.Connection, tenant_id: str, *, actor: str) -> Tenant:
    """Re-enable login of a suspended tenant (idempotent); the audit row keeps the old reason."""
    tenant = _set_login_state(conn, validation.tenant_id(tenant_id), target="active", allowed_from="suspended",
                              reason=None, action="tenant.resumed", actor=validation.actor(actor))
    provisioning.run_after_hooks("after_resume", conn, tenant)
    return tenant


def change_tier(conn: psycopg.Connection, tenant_id: str, tier: str, *, actor: str) -> Tenant:
    """Move to `tier`: the role's CONNECTION LIMIT follows; quotas follow through the tiers file."""
    tenant_id = validation.tenant_id(tenant_id)
    new_tier = load_tiers().get(tier)
    actor = validation.actor(actor)
    with conn.transaction():
        tenant = records.require(conn, tenant_id, for_update=True)
        if tenant.state not in ("active", "suspended"):
            raise TenantConflict(f"cannot change the tier of tenant {tenant_id!r}: it is {tenant.state}")
        if tenant.tier != new_tier.name:
            provisioning.run_hooks("on_change_tier", conn, tenant, new_tier)
            schema.set_connection_limit(conn, tenant.role_name, new_tier.db_connections)
            conn.execute("UPDATE control.tenants SET tier = %s, updated_at = now() WHERE tenant_id = %s",
                         (new_tier.name, tenant_id))
            audit.record(conn, tenant_id=tenant_id, action="tenant.tier_changed", actor=actor,
                         detail={"from": tenant.tier, "to": new_tier.name})
        return records.require(conn, tenant_id)
