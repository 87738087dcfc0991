"""The services' own database login: a LOGIN role whose only membership is the gateway role.

The API and worker log in as this role (its password lives in one Secrets Manager secret that the
pods read through Pod Identity) and ``SET ROLE`` to ``<provisioner>_gateway`` (control migration
0004): key lookups, readiness and the job queue, nothing else — never the RDS master login. The
operator action ``init`` (Lambda ``tenant_operations``) calls `ensure_services_login` after the
control migrations, so the role exists before the first pod starts and a new secret value (a
rotation) becomes the role's password on the next ``init``.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from tenant_provisioner.db import tenant_group_role
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.gateway.sessions import gateway_role
from tenant_provisioner.tenants.schema import password_statement, scram_verifier

# Privileges a login the services use must never hold (also refused on an existing role of that name).
_FORBIDDEN = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
MIN_PASSWORD_LENGTH = 32


def ensure_services_login(conn: psycopg.Connection, *, provisioner_role: str, username: str, password: str) -> None:
    """Create or update ``username`` (LOGIN, member of the gateway role only, CONNECT on this
    database) with ``password`` as a SCRAM verifier computed client-side. Idempotent; refuses a
    name of a platform role or of a role holding any elevated attribute or other membership."""
    gateway = gateway_role(provisioner_role)
    if not username or len(username) > 63:
        raise ConfigError("services login name must be 1-63 characters (the secret's `username`)")
    if username in (provisioner_role, gateway, tenant_group_role(provisioner_role)):
        raise ConfigError(f"services login {username!r} names a platform role; use e.g. {provisioner_role}_services")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"services login password must be at least {MIN_PASSWORD_LENGTH} characters")
    try:
        _apply(conn, provisioner_role=provisioner_role, gateway=gateway, username=username, password=password)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ConfigError(f"cannot manage role {username!r} as {provisioner_role}: {str(exc).strip()} "
                          "(a role of that name made outside `init`? choose another name in the secret)") from exc


def _apply(conn: psycopg.Connection, *, provisioner_role: str, gateway: str, username: str, password: str) -> None:
    ident = sql.Identifier(username)
    with conn.transaction():
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (gateway,)).fetchone() is None:
            raise ConfigError(f"role {gateway} does not exist: run `init` (control migrations) first")
        existing = conn.execute(
            sql.SQL("SELECT {} FROM pg_roles WHERE rolname = %s").format(sql.SQL(", ").join(map(sql.Identifier, _FORBIDDEN))),
            (username,)).fetchone()
        if existing is None:
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(provisioner_role)))
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOINHERIT").format(ident))
            conn.execute("RESET ROLE")
        elif any(existing):
            raise ConfigError(f"role {username!r} exists with elevated attributes; refusing to use it as the "
                              "services login (choose another name in the secret)")
        others = [row[0] for row in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s AND g.rolname <> %s", (username, gateway))]
        if others:
            raise ConfigError(f"role {username!r} is also a member of {', '.join(sorted(others))}; "
                              "the services login must be a member of the gateway role only")
        # Role changes as the provisioner (CREATEROLE, ADMIN of the gateway role and of what it
        # created), as on RDS where the admin login is no superuser; CONNECT as the database owner.
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(provisioner_role)))
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN NOINHERIT").format(ident))
        conn.execute(password_statement(username, scram_verifier(conn, username, password)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(gateway), ident))
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(conn.info.dbname), ident))
