"""``tenant-provisioner keys ...``: issue, list and revoke tenants' API keys (JSON on stdout), and
set tenant roles' passwords from the services' derived-password key (``sync-passwords``).

Exit codes as in the root CLI: 2 bad input (nothing changed), 1 any other failure. A revoked key
stops working on every service instance within the services' key cache time (2 s).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tenant_provisioner.cli.context import actor, operator
from tenant_provisioner.cli.errors import handles_errors
from tenant_provisioner.gateway import keys
from tenant_provisioner.gateway.credentials import PasswordDeriver, sync_passwords

app = typer.Typer(name="keys", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Tenant API keys: create (secret shown once), list, revoke.")


@app.command()
@handles_errors
def create(ctx: typer.Context, tenant_id: str,
           name: Annotated[str, typer.Option(help="What the key is for (shown in lists and audit)")] = "default") -> None:
    """Issue a key; prints key_id, api_key (shown ONCE, never stored), prefix and tenant_id."""
    with operator(ctx).database() as db, db.connection() as conn:
        issued = keys.create(conn, tenant_id, name=name, actor=actor())
    print(json.dumps(issued.to_dict()))


@app.command("list")
@handles_errors
def list_(ctx: typer.Context, tenant_id: str) -> None:
    """A tenant's keys as a JSON array (never the secret)."""
    with operator(ctx).database() as db, db.connection() as conn:
        found = keys.list_keys(conn, tenant_id)
    print(json.dumps([k.to_dict() for k in found]))


@app.command()
@handles_errors
def revoke(ctx: typer.Context, key_id: str) -> None:
    """Revoke a key by key id (or prefix); effective on every instance within 2 s (idempotent)."""
    with operator(ctx).database() as db, db.connection() as conn:
        revoked = keys.revoke(conn, key_id, actor=actor())
    print(json.dumps(revoked.to_dict()))


@app.command("sync-passwords")
@handles_errors
def sync_passwords_(ctx: typer.Context,
                    key: Annotated[str, typer.Option(envvar="TENANT_DB_PASSWORD_KEY", show_envvar=True,
                                                     help="The services' password key (>= 32 bytes)")],
                    version: Annotated[int, typer.Option(envvar="TENANT_DB_PASSWORD_VERSION", min=1,
                                                         help="Key version the services use")] = 1) -> None:
    """Set every live tenant role's password to the one derived from the services' key (rotation)."""
    deriver = PasswordDeriver.from_text(key, version)
    with operator(ctx).database() as db, db.connection() as conn:
        updated = sync_passwords(conn, deriver, actor=actor())
    print(json.dumps({"roles_updated": updated, "version": version}))
