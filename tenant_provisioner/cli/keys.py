"""``tenant-provisioner keys ...``: issue, list and revoke tenants' API keys (JSON on stdout).

Exit codes as in the root CLI: 2 bad input (nothing changed), 1 any other failure. A revoked key
stops working on every service instance within the services' key cache time (2 s).
"""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer

from tenant_provisioner.cli.errors import handles_errors
from tenant_provisioner.db import Database, provisioner_role_from_env
from tenant_provisioner.gateway import keys

app = typer.Typer(name="keys", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Tenant API keys: create (secret shown once), list, revoke.")


def _database(ctx: typer.Context) -> Database:
    settings = ctx.find_root().obj
    return Database(getattr(settings, "database_url", None) or "",
                    provisioner_role=getattr(settings, "provisioner_role", None) or provisioner_role_from_env())


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@app.command()
@handles_errors
def create(ctx: typer.Context, tenant_id: str,
           name: Annotated[str, typer.Option(help="What the key is for (shown in lists and audit)")] = "default") -> None:
    """Issue a key; prints key_id, api_key (shown ONCE, never stored), prefix and tenant_id."""
    with _database(ctx) as db, db.connection() as conn:
        issued = keys.create(conn, tenant_id, name=name, actor=_actor())
    print(json.dumps(issued.to_dict()))


@app.command("list")
@handles_errors
def list_(ctx: typer.Context, tenant_id: str) -> None:
    """A tenant's keys as a JSON array (never the secret)."""
    with _database(ctx) as db, db.connection() as conn:
        found = keys.list_keys(conn, tenant_id)
    print(json.dumps([k.to_dict() for k in found]))


@app.command()
@handles_errors
def revoke(ctx: typer.Context, key_id: str) -> None:
    """Revoke a key by key id (or prefix); effective on every instance within 2 s (idempotent)."""
    with _database(ctx) as db, db.connection() as conn:
        revoked = keys.revoke(conn, key_id, actor=_actor())
    print(json.dumps(revoked.to_dict()))
