"""The provisioning step pipeline: how a tenant is built, and how other components extend it.

A step is any object with a ``name`` and two methods taking the shared `ProvisionContext`::

    class StripeCustomerStep:
        name = "stripe"
        def apply(self, ctx): ...   # idempotent: on a re-run, finds its earlier work and stops
        def undo(self, ctx): ...    # idempotent: removes what apply made, fine if nothing was made

`run` applies the steps in order. If one raises, it undoes that step and every earlier one in
reverse order, records ``tenant.provisioning_failed`` in the audit log and re-raises: nothing
stays reachable. If the process dies instead (Lambda timeout, kill), nothing is undone but
nothing is reachable either: the tenant role has no password and the row stays ``provisioning``
until the final `ActivateStep`; a re-run of `create` finds that row and re-applies every step,
which converges because each step is idempotent.

Order (`Lifecycle.steps`): `DatabaseStep` (role, schema, tables, grants, control row, one
transaction) → `PasswordStep` (the password derived from the services' key, when configured) → the
extension steps the composition root passes in (billing's `StripeStep`, the limits'
`LimitsStep`) → `ActivateStep` (state ``active``, the stored password applied, ``tenant.created``). Steps use
``ctx.conn`` (autocommit; wrap writes in ``ctx.conn.transaction()``), read ``ctx.tenant`` /
``ctx.request`` / ``ctx.tier`` and may put results into ``ctx.outputs`` (included in the create
result).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import psycopg

from tenant_provisioner import audit, migrations, validation
from tenant_provisioner.tenants import records, schema, transitions, warm_pool
from tenant_provisioner.db import tenant_group_role
from tenant_provisioner.errors import PlatformError, TransientError
from tenant_provisioner.tenants.records import Tenant
from tenant_provisioner.tiers import Tier, load_tiers

if TYPE_CHECKING:
    from tenant_provisioner.gateway.credentials import PasswordDeriver

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class CreateRequest:
    """A validated signup: construct with `parse`, which raises `InvalidInput` on bad input."""

    tenant_id: str
    tier: str
    admin_email: str
    company_name: str | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> "CreateRequest":
        tenant_id = validation.tenant_id(data.get("tenant_id"))
        tier = load_tiers().get(data.get("tier")).name  # type: ignore[arg-type]
        return cls(tenant_id=tenant_id, tier=tier, admin_email=validation.email(data.get("admin_email")),
                   company_name=validation.text(data.get("company_name"), "company_name", required=False))


@dataclass
class ProvisionContext:
    conn: psycopg.Connection
    request: CreateRequest
    tier: Tier
    actor: str
    provisioner_role: str
    tenant: Tenant | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


class Step(Protocol):
    name: str

    def apply(self, ctx: ProvisionContext) -> None: ...

    def undo(self, ctx: ProvisionContext) -> None: ...


def _current(ctx: ProvisionContext) -> Tenant:
    if ctx.tenant is None:
        raise RuntimeError("the database step must run first")
    return ctx.tenant


class DatabaseStep:
    """Role, schema (claimed from the warm pool or built), explicit grants and the
    ``provisioning`` control row: one transaction."""

    name = "database"

    def apply(self, ctx: ProvisionContext) -> None:
        if ctx.tenant is not None:
            return  # a previous run committed this step
        files = migrations.load("tenant")
        req = ctx.request
        with ctx.conn.transaction():
            claimed = warm_pool.claim(ctx.conn, files[-1].version)
            name = claimed or schema.new_schema_name()
            schema.create(ctx.conn, schema=name, role=name, group=tenant_group_role(ctx.provisioner_role),
                          connection_limit=load_tiers().role_connection_limit, build=None if claimed else files)
            transitions.insert_provisioning(ctx.conn, tenant_id=req.tenant_id, schema_name=name, tier=req.tier,
                                            schema_version=migrations.latest_version("tenant"),
                                            admin_email=req.admin_email, company_name=req.company_name)
            ctx.tenant = records.require(ctx.conn, req.tenant_id)

    def undo(self, ctx: ProvisionContext) -> None:
        tenant = records.find(ctx.conn, ctx.request.tenant_id)
        if tenant is None or tenant.state != "provisioning":
            return
        with ctx.conn.transaction():
            schema.drop(ctx.conn, schema=tenant.schema_name, role=tenant.role_name)
            transitions.delete_provisioning(ctx.conn, tenant.tenant_id)
        ctx.tenant = None


class PasswordStep:
    """Record the role's password derived from the services' key (`deriver`, a callable returning
    the current `PasswordDeriver`) as a SCRAM verifier; the role gets it at activation, so the API
    and worker can log in as the tenant as soon as it is active. Nothing is stored elsewhere:
    whoever holds the key derives it (gateway/credentials.py). Without a key (local runs) the step
    is left out and the role has no password."""

    name = "password"

    def __init__(self, deriver: Callable[[], PasswordDeriver]) -> None:
        self.deriver = deriver

    def apply(self, ctx: ProvisionContext) -> None:
        tenant = _current(ctx)
        schema.set_password(ctx.conn, tenant.role_name, self.deriver().password(tenant.role_name))

    def undo(self, ctx: ProvisionContext) -> None:
        if ctx.tenant is not None:
            schema.set_password(ctx.conn, ctx.tenant.role_name, None)


class ActivateStep:
    """Mark the tenant active and give its role the stored password (`schema.apply_login`): from
    then on it can log in; the audit entry commits with it."""

    name = "activate"

    def apply(self, ctx: ProvisionContext) -> None:
        tenant = _current(ctx)
        with ctx.conn.transaction():
            transitions.activate(ctx.conn, tenant, actor=ctx.actor)
            schema.apply_login(ctx.conn, tenant.role_name)
            ctx.tenant = records.require(ctx.conn, tenant.tenant_id)

    def undo(self, ctx: ProvisionContext) -> None:
        tenant = ctx.tenant
        if tenant is None:
            return
        with ctx.conn.transaction():
            transitions.deactivate(ctx.conn, tenant.tenant_id)
            schema.apply_login(ctx.conn, tenant.role_name)


def run(steps: Sequence[Step], ctx: ProvisionContext) -> None:
    """Apply `steps`; on failure undo them (the failed one included) in reverse and re-raise."""
    started: list[Step] = []
    for step in steps:
        started.append(step)
        try:
            step.apply(ctx)
        except Exception as exc:
            undo_errors = _undo(reversed(started), ctx)
            _record_failure(ctx, step.name, exc, undo_errors)
            if undo_errors:
                raise TransientError(
                    f"provisioning {ctx.request.tenant_id!r} failed at step {step.name!r} ({exc}) and "
                    f"undo failed at {', '.join(undo_errors)}; re-run create to converge") from exc
            if isinstance(exc, psycopg.OperationalError):
                raise TransientError(f"provisioning failed at step {step.name!r}: {exc}") from exc
            raise


def _undo(steps: Sequence[Step] | Any, ctx: ProvisionContext) -> list[str]:
    failed: list[str] = []
    for step in steps:
        try:
            step.undo(ctx)
        except Exception:  # keep undoing the rest; the caller reports which steps failed
            log.exception("undo of step %s failed for tenant %s", step.name, ctx.request.tenant_id)
            failed.append(step.name)
    return failed


def _record_failure(ctx: ProvisionContext, step: str, exc: Exception, undo_errors: list[str]) -> None:
    detail = {"step": step, "error": type(exc).__name__,
              "code": exc.code if isinstance(exc, PlatformError) else None, "message": str(exc)[:500],
              "undo_failed": undo_errors}
    try:
        with ctx.conn.transaction():
            audit.record(ctx.conn, tenant_id=ctx.request.tenant_id, action="tenant.provisioning_failed",
                         actor=ctx.actor, detail=detail)
    except psycopg.Error:
        log.exception("could not audit the failed provisioning of %s", ctx.request.tenant_id)
