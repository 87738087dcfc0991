"""Operator CLI: ``python -m tenant_provisioner`` (console script ``tenant-provisioner``).

Exit codes: 0 success; 2 bad input (one line on stderr, nothing changed); 1 any other failure.
The database comes from ``--database-url`` or ``DATABASE_URL``; the login user must be allowed to
``SET ROLE`` to the provisioner role (``init`` arranges that). No per-tenant secret is written
(tenant passwords are derived from the services' key); ``offboard --secrets aws`` still deletes
the secret of a tenant provisioned before that change, if it has one.
Other components add their sub-apps below (``limits``, ``billing``).
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tenant_provisioner import control, migrations, validation
from tenant_provisioner.cli.context import Operator, actor, operator
from tenant_provisioner.cli.errors import fail, handles_errors, print_table
from tenant_provisioner.db import DEFAULT_PROVISIONER_ROLE, admin_connect
from tenant_provisioner.tenants import fleet, offboarding, records, warm_pool
from tenant_provisioner.tenants.provisioning import CreateRequest
from tenant_provisioner.tiers import load_tiers

app = typer.Typer(name="tenant-provisioner", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Provision and operate tenants of the shared PostgreSQL database.")
out = Console()
err = Console(stderr=True)


class SecretsMode(str, Enum):
    skip = "skip"
    aws = "aws"


def _notice(message: str) -> None:
    err.print(f"notice: {message}", highlight=False, soft_wrap=True)


def _print_json(data: Any) -> None:
    """Highlighted on a terminal; plain (one line, for jq and scripts) otherwise."""
    text = json.dumps(data, default=str)
    if out.is_terminal:
        out.print_json(text)
    else:
        print(text)


@app.callback()
def main(ctx: typer.Context,
         database_url: Annotated[Optional[str], typer.Option(envvar="DATABASE_URL", show_envvar=True,
                                                             help="PostgreSQL URL of the shared database")] = None,
         provisioner_role: Annotated[Optional[str], typer.Option(envvar="TENANT_PROVISIONER_ROLE",
                                                                 help="Role that owns tenant objects")] = None) -> None:
    ctx.obj = Operator(database_url=database_url, provisioner_role=provisioner_role or DEFAULT_PROVISIONER_ROLE)


@app.command()
@handles_errors
def init(ctx: typer.Context) -> None:
    """Create or upgrade roles, database hardening and the control schema (idempotent)."""
    settings = operator(ctx)
    if not settings.database_url:
        raise fail("no database: pass --database-url or set DATABASE_URL", 2)
    with admin_connect(settings.database_url) as conn:
        result = control.init(conn, settings.provisioner_role)
    applied = ", ".join(result.applied) or "nothing new"
    out.print(f"control schema at version {result.version}; applied: {applied}", highlight=False)
    for refused in result.unhardened:
        out.print(f"warning: PUBLIC keeps its rights on database {refused} (docs/tenants.md, threat model)",
                  highlight=False, markup=False)


@app.command()
@handles_errors
def create(ctx: typer.Context, tenant_id: str,
           tier: Annotated[str, typer.Option(help="Tier from config/tiers.yaml")],
           admin_email: Annotated[str, typer.Option(help="The tenant admin's email")],
           name: Annotated[Optional[str], typer.Option(help="Company name")] = None) -> None:
    """Provision a tenant (idempotent) and print the result as one JSON object. The role gets no
    password here: in AWS the provisioning function sets the derived one (or run
    `keys sync-passwords`)."""
    request = CreateRequest.parse({"tenant_id": tenant_id, "tier": tier, "admin_email": admin_email,
                                   "company_name": name})
    with operator(ctx).database() as db, db.connection() as conn:
        result = operator(ctx).platform(db).lifecycle.create(conn, request, actor=actor())
    print(json.dumps(result.to_dict()))


@app.command()
@handles_errors
def show(ctx: typer.Context, tenant_id: str) -> None:
    """Print one tenant as JSON."""
    validation.tenant_id(tenant_id)
    with operator(ctx).database() as db, db.connection() as conn:
        _print_json(records.require(conn, tenant_id).to_dict())


@app.command("list")
@handles_errors
def list_(ctx: typer.Context,
          as_json: Annotated[bool, typer.Option("--json", help="One JSON array instead of a table")] = False,
          state: Annotated[Optional[str], typer.Option(help="Only tenants in this state")] = None) -> None:
    """List tenants."""
    with operator(ctx).database() as db, db.connection() as conn, \
            err.status("reading tenants...", spinner="dots"):
        found = records.all_tenants(conn, state=state)
    if as_json:
        print(json.dumps([t.to_dict() for t in found]))
        return
    table = Table("tenant", "state", "tier", "schema", "version", "admin", "created")
    for t in found:
        table.add_row(t.tenant_id, t.state, t.tier, t.schema_name, str(t.schema_version), t.admin_email,
                      t.created_at.strftime("%Y-%m-%d %H:%M"))
    print_table(table)
    out.print(f"{len(found)} tenant(s)", highlight=False)


@app.command()
@handles_errors
def suspend(ctx: typer.Context, tenant_id: str,
            reason: Annotated[str, typer.Option(help="Why (kept in the audit log)")]) -> None:
    """Disable the tenant's database login and end its sessions."""
    validation.tenant_id(tenant_id)
    validation.text(reason, "reason", required=True)
    with operator(ctx).database() as db, db.connection() as conn:
        tenant = operator(ctx).platform(db).lifecycle.suspend(conn, tenant_id, reason=reason, actor=actor())
    out.print(f"{tenant.tenant_id}: {tenant.state} ({tenant.suspended_reason})", highlight=False)


@app.command()
@handles_errors
def resume(ctx: typer.Context, tenant_id: str) -> None:
    """Re-enable a suspended tenant."""
    validation.tenant_id(tenant_id)
    with operator(ctx).database() as db, db.connection() as conn:
        tenant = operator(ctx).platform(db).lifecycle.resume(conn, tenant_id, actor=actor())
    out.print(f"{tenant.tenant_id}: {tenant.state}", highlight=False)


@app.command("change-tier")
@handles_errors
def change_tier(ctx: typer.Context, tenant_id: str,
                tier: Annotated[str, typer.Option(help="New tier from config/tiers.yaml")]) -> None:
    """Move a tenant to another tier (connection limit follows)."""
    validation.tenant_id(tenant_id)
    load_tiers().get(tier)
    with operator(ctx).database() as db, db.connection() as conn:
        tenant = operator(ctx).platform(db).lifecycle.change_tier(conn, tenant_id, tier, actor=actor())
    out.print(f"{tenant.tenant_id}: tier {tenant.tier}", highlight=False)


@app.command()
@handles_errors
def offboard(ctx: typer.Context, tenant_id: str,
             export_dir: Annotated[str, typer.Option(help="Directory or s3://bucket/prefix for the export")]
             = "./tenant-exports",
             secrets: Annotated[SecretsMode, typer.Option(help="Delete the tenant's legacy secret in AWS too, if any")]
             = SecretsMode.skip,
             retention_days: Annotated[Optional[int], typer.Option(
                 envvar="OFFBOARD_RETENTION_DAYS", show_envvar=True,
                 help=f"Keep schema and role this long after the export (default "
                      f"{offboarding.DEFAULT_RETENTION_DAYS}); the daily schedule, or offboard again, drops them "
                      "after it")] = None,
             drop_now: Annotated[bool, typer.Option(
                 "--drop-now", help="Confirm dropping schema, role and secret right after the export "
                                    "(no retention; cannot be undone)")] = False) -> None:
    """Export the tenant's tables (COPY, CSV); drop its schema, role and secret after the retention."""
    validation.tenant_id(tenant_id)
    retention_days = _retention(retention_days, drop_now)
    with operator(ctx).database() as db, db.connection() as conn:
        lifecycle = operator(ctx).platform(db, aws_secrets=secrets is SecretsMode.aws).lifecycle
        result = lifecycle.offboard(conn, tenant_id, actor=actor(), export_to=export_dir,
                                    retention_days=retention_days)
    if secrets is SecretsMode.skip and result.tenant.state == "offboarded":
        _notice(f"legacy tenant secret not looked for (local run; pass --secrets aws to delete {tenant_id}'s "
                "secret if it has one)")
    print(json.dumps(result.to_dict()))


def _retention(retention_days: int | None, drop_now: bool) -> int:
    """The configured retention unless the operator explicitly confirmed an immediate drop."""
    if drop_now:
        if retention_days:
            raise fail("--drop-now drops at once; it cannot be combined with --retention-days "
                       f"{retention_days}", 2)
        return 0
    if retention_days == 0:
        raise fail("--retention-days 0 drops the tenant's data right after the export: add --drop-now to "
                   "confirm, or keep the default retention", 2)
    return offboarding.DEFAULT_RETENTION_DAYS if retention_days is None else retention_days


@app.command()
@handles_errors
def migrate(ctx: typer.Context,
            concurrency: Annotated[int, typer.Option(help="Tenants migrated in parallel (connections)")] = 4) -> None:
    """Bring every tenant schema to the latest version (resumable; skips up-to-date tenants)."""
    if not 1 <= concurrency <= fleet.MAX_CONCURRENCY:
        raise fail(f"concurrency: must be between 1 and {fleet.MAX_CONCURRENCY}", 2)
    with operator(ctx).database(max_size=concurrency) as db:
        with db.connection() as conn:
            total = len(fleet.pending_tenants(conn, migrations.latest_version("tenant")))
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=False) as progress:
            task = progress.add_task("migrating tenants", total=total)
            report = fleet.migrate_all(db, actor=actor(), concurrency=concurrency,
                                       on_progress=lambda _tenant, _outcome: progress.advance(task))
    print(json.dumps(report.to_dict()))
    if report.failed:
        raise typer.Exit(1)


@app.command("warm-pool")
@handles_errors
def warm_pool_(ctx: typer.Context,
               size: Annotated[int, typer.Option(help="Pre-built schemas to keep waiting for signups")] = 20) -> None:
    """Build tenant schemas ahead of signups (and drop pool schemas at an old version)."""
    if not 0 <= size <= warm_pool.MAX_SIZE:
        raise fail(f"size: must be between 0 and {warm_pool.MAX_SIZE}", 2)
    with operator(ctx).database() as db, db.connection() as conn, err.status("building warm pool..."):
        result = warm_pool.refill(conn, size)
    print(json.dumps(result.to_dict()))


# Sub-apps of the other components (one line each).
from tenant_provisioner.cli.limits import app as limits_app  # noqa: E402  (the limits component's sub-app)
app.add_typer(limits_app, name="limits")
from tenant_provisioner.cli.billing import app as billing_app  # noqa: E402  (the billing component's sub-app)
app.add_typer(billing_app, name="billing")
from tenant_provisioner.cli.drill import app as drill_app  # noqa: E402  (disaster-recovery drills)
app.add_typer(drill_app, name="drill")
from tenant_provisioner.cli.keys import app as keys_app  # noqa: E402  (the request path's sub-app)
app.add_typer(keys_app, name="keys")
