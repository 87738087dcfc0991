"""`init`: create or upgrade the control plane of the shared database; safe to run any time.

Run as the database's admin login (RDS master user, or a superuser locally). In one transaction,
under an advisory lock (so concurrent runs queue instead of racing), it:

1. creates the provisioner role (NOLOGIN, CREATEROLE, member of ``pg_signal_backend`` so it can
   end a suspended tenant's sessions) and grants it to the login user, who works through
   ``SET ROLE``; and the tenant group role, which holds only CONNECT on this database;
2. hardens the database: PUBLIC loses CONNECT/TEMP on it and every right on schema ``public``;
   functions the provisioner creates are not executable by PUBLIC (default privileges);
3. creates schema ``control`` owned by the provisioner and applies the pending files of
   ``migrations/control`` in version order, as the provisioner with ``search_path = control``,
   recording each in ``control.schema_migrations`` with its checksum.

Other components add their own control files (``0002_limits.sql``, ``0003_billing.sql``, ...);
they are picked up by the next `init`.
"""

from __future__ import annotations

import contextlib

from dataclasses import dataclass

import psycopg
from psycopg import sql

from tenant_provisioner import migrations
from tenant_provisioner.db import LOCK_NAMESPACE, tenant_group_role
from tenant_provisioner.errors import ConfigError

_INIT_LOCK = 1

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS control.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class InitResult:
    applied: tuple[str, ...]
    version: int


def _create_role_if_missing(conn: psycopg.Connection, role: str, options: sql.Composable) -> None:
    """Create `role` unless it exists; roles are cluster-wide, so another database may have it."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if exists:
        return
    # A concurrent init of another database in the same cluster may create it first: that is fine.
    with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation), conn.transaction():
        conn.execute(sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(role), options))


def _ensure_roles_and_hardening(conn: psycopg.Connection, provisioner: str) -> None:
    group = tenant_group_role(provisioner)
    ident = sql.Identifier
    _create_role_if_missing(conn, provisioner, sql.SQL("NOLOGIN CREATEROLE"))
    _create_role_if_missing(conn, group, sql.SQL("NOLOGIN"))
    database = ident(conn.info.dbname)
    statements = [
        sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(ident(group), ident(provisioner)),
        sql.SQL("GRANT pg_signal_backend TO {}").format(ident(provisioner)),
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database),
        sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(database, ident(provisioner)),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, ident(group)),
        sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"),
        sql.SQL("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC"),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC").format(
            ident(provisioner)),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS control AUTHORIZATION {}").format(ident(provisioner)),
        sql.SQL("REVOKE ALL ON SCHEMA control FROM PUBLIC"),
    ]
    if conn.info.parameter_status("session_authorization") != provisioner.encode():
        statements.insert(0, sql.SQL("GRANT {} TO CURRENT_USER").format(ident(provisioner)))
    for statement in statements:
        conn.execute(statement)


def init(conn: psycopg.Connection, provisioner_role: str) -> InitResult:
    """Create/upgrade roles, hardening and the control schema; returns the files applied now."""
    if not provisioner_role or len(provisioner_role) > 40:
        raise ConfigError("provisioner role name must be 1-40 characters")
    files = migrations.load("control")
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, _INIT_LOCK))
        _ensure_roles_and_hardening(conn, provisioner_role)
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(provisioner_role)))
        conn.execute("SET LOCAL search_path = control")
        conn.execute(_BOOTSTRAP)
        done = {row[0]: row[1] for row in conn.execute("SELECT version, checksum FROM control.schema_migrations")}
        for migration in files:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise ConfigError(
                        f"control migration {migration.version:04d}_{migration.name} changed after it "
                        "was applied; never edit an applied migration, add a new file")
                continue
            conn.execute(migration.sql)
            conn.execute("INSERT INTO control.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                         (migration.version, migration.name, migration.checksum))
            applied_now.append(f"{migration.version:04d}_{migration.name}")
    return InitResult(applied=tuple(applied_now), version=files[-1].version if files else 0)
