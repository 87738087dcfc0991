"""The tenant lifecycle used by the CLI, the Lambdas and the other components: `Lifecycle`.

The composition root (`tenant_provisioner.runtime.compose`) builds one per process with its
extension steps (billing's Stripe customer, the limits' breaker rows) and listeners
(`tenant_provisioner.tenants.events`); nothing here imports billing or limits.

Reads go through `records`. Every method takes a connection acting as the provisioner role
(``Database.connection()``), validates its input before touching anything, and does its writes, the audit entry included,
in one transaction (a savepoint when the caller already has one open, so a caller such as the
quota enforcer can join a suspension to its own transaction). Repeating a call that already
took effect is a no-op without a second audit entry. The rows are written by `transitions`.

- ``create(conn, request, actor=...)`` → `CreateResult` (steps: provisioning.py);
- ``suspend(conn, id, reason=..., actor=...)``: the role's password removed, its sessions terminated;
- ``resume(conn, id, actor=...)``; ``change_tier(conn, id, tier, actor=..., origin=...)``;
- ``offboard(conn, id, actor=..., export_to=..., retention_days=0)`` / ``drop_due``: export, then
  drop once the retention has passed (offboarding.py).

Errors: `InvalidInput` (bad input), `TenantNotFound`, `TenantConflict` (e.g. resuming an
offboarded tenant, or creating an existing id with another tier), `TransientError` (retry).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import psycopg

from tenant_provisioner import leases, validation
from tenant_provisioner.errors import TenantConflict, TransientError
from tenant_provisioner.secrets import SecretStore
from tenant_provisioner.tenants import offboarding, provisioning, records, schema, transitions
from tenant_provisioner.tenants.events import Origin, TenantEvents
from tenant_provisioner.tenants.offboarding import DropDueResult, OffboardResult
from tenant_provisioner.tenants.provisioning import CreateRequest, ProvisionContext, Step
from tenant_provisioner.tenants.records import Tenant
from tenant_provisioner.tiers import load_tiers

if TYPE_CHECKING:
    from tenant_provisioner.gateway.credentials import PasswordDeriver

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


class Lifecycle:
    """The tenant state machine with this process's extension steps and listeners. `secret_store`
    only deletes the per-tenant secrets that provisioning wrote until issue 12's follow-up (at
    offboarding, when one exists); new tenants get none."""

    def __init__(self, *, extension_steps: Sequence[Step] = (), events: TenantEvents | None = None,
                 secret_store: SecretStore | None = None,
                 password_deriver: Callable[[], PasswordDeriver] | None = None) -> None:
        self.extension_steps = tuple(extension_steps)
        self.events = events or TenantEvents()
        self.secret_store = secret_store
        self.password_deriver = password_deriver   # new tenants' passwords derived (the services' key)

    def steps(self) -> list[Step]:
        """Database → password (with the services' key) → extension steps → activation."""
        password: list[Step] = ([provisioning.PasswordStep(self.password_deriver)]
                                if self.password_deriver is not None else [])
        return [provisioning.DatabaseStep(), *password, *self.extension_steps, provisioning.ActivateStep()]

    def create(self, conn: psycopg.Connection, request: CreateRequest, *, actor: str,
               steps: Sequence[Step] | None = None) -> CreateResult:
        """Provision `request` (idempotent: same id + tier → the same tenant, ``created`` false).
        `steps` replaces the whole step list (fault-injection tests)."""
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
            provisioning.run(steps if steps is not None else self.steps(), ctx)
        assert ctx.tenant is not None
        return CreateResult(ctx.tenant, created=True, duration_ms=_ms_since(started), outputs=ctx.outputs)

    def suspend(self, conn: psycopg.Connection, tenant_id: str, *, reason: str, actor: str) -> Tenant:
        """Disable login (the role's password is removed; the stored verifier is kept for the
        resume), end the tenant's sessions, record why (idempotent)."""
        tenant = _set_login_state(conn, validation.tenant_id(tenant_id), target="suspended", allowed_from="active",
                                  reason=validation.text(reason, "reason", required=True),
                                  action="tenant.suspended", actor=validation.actor(actor))
        # After the commit (the password is gone), so a terminated session cannot simply reconnect.
        schema.terminate_sessions(conn, tenant.role_name)
        self.events.after_suspend(conn, tenant)
        return tenant

    def resume(self, conn: psycopg.Connection, tenant_id: str, *, actor: str) -> Tenant:
        """Re-enable login of a suspended tenant (its stored password applied again; idempotent);
        the audit row keeps the old reason."""
        tenant = _set_login_state(conn, validation.tenant_id(tenant_id), target="active", allowed_from="suspended",
                                  reason=None, action="tenant.resumed", actor=validation.actor(actor))
        self.events.after_resume(conn, tenant)
        return tenant

    def change_tier(self, conn: psycopg.Connection, tenant_id: str, tier: str, *, actor: str,
                    origin: Origin = Origin.PLATFORM) -> Tenant:
        """Move to `tier`: its connection count (services' pools, session reaper), quotas and rate
        limits follow through the tiers file; the role is untouched (every tenant role looks alike).
        `origin` tells the listeners where the change comes from (Stripe's webhook: `Origin.STRIPE`)."""
        tenant_id = validation.tenant_id(tenant_id)
        new_tier = load_tiers().get(tier)
        actor = validation.actor(actor)
        with conn.transaction():
            tenant = records.require(conn, tenant_id, for_update=True)
            if tenant.state not in ("active", "suspended"):
                raise TenantConflict(f"cannot change the tier of tenant {tenant_id!r}: it is {tenant.state}")
            if tenant.tier != new_tier.name:
                self.events.before_tier_change(conn, tenant, new_tier, origin=origin)
                transitions.set_tier(conn, tenant, new_tier.name, actor=actor, origin=origin.value)
            return records.require(conn, tenant_id)

    def offboard(self, conn: psycopg.Connection, tenant_id: str, *, actor: str, export_to: str | None,
                 retention_days: int = 0) -> OffboardResult:
        """Stop, export, then drop the tenant once `retention_days` have passed (offboarding.py)."""
        return offboarding.offboard(conn, tenant_id, actor=actor, export_to=export_to, events=self.events,
                                    store=self.secret_store, retention_days=retention_days)

    def drop_due(self, conn: psycopg.Connection, *, actor: str) -> DropDueResult:
        """Finish every offboarding whose retention has passed (the Lambda runs this daily)."""
        return offboarding.drop_due(conn, actor=actor, events=self.events, store=self.secret_store)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _current_role(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


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
    """Suspend (target ``suspended``) or resume (``active``): state, role password, one audit row."""
    with conn.transaction():
        tenant = _transition(conn, tenant_id, allowed_from=(allowed_from,), target=target)
        if tenant is not None:
            transitions.set_login_state(conn, tenant, target=target, reason=reason, action=action, actor=actor)
            schema.apply_login(conn, tenant.role_name)
        return records.require(conn, tenant_id)
