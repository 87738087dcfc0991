"""DDL for one tenant: schema, role, tables and grants, composed with ``psycopg.sql`` only.

Why it is shaped this way (docs/tenants.md has the measurements):

- names are opaque (``t_`` + 16 random hex digits) because catalog names are visible to every
  role; the role has the same name as its schema;
- the schema is owned by the provisioner, never by the tenant, and the tenant gets USAGE on it
  and DML on its tables and sequences by explicit name; object lists come from ``pg_depend``
  through its index on the referenced namespace, never from ``GRANT ... ON ALL TABLES IN
  SCHEMA`` (which scans all of ``pg_class``: 120-150 ms at 1,000 tenants);
- everything a create needs is sent as one batch inside the caller's transaction, so a failure
  rolls back to nothing;
- every tenant role looks the same in ``pg_roles`` (which every tenant can read): ``LOGIN``, one
  ``CONNECTION LIMIT`` whatever the tier (`TierCatalog.role_connection_limit`), ``search_path``
  its own name. Whether it can log in is its password alone: the verifier stored in
  ``control.tenants`` while the tenant is active, none otherwise (`apply_login`); RDS
  authenticates tenant roles by password only. So the catalog tells neither tier nor state.
"""

from __future__ import annotations

import secrets
from typing import Iterable, Sequence

import psycopg
from psycopg import sql

from tenant_provisioner.migrations import Migration

SCHEMA_PREFIX = "t_"

# Relations in a schema, found through the namespace's dependency entries (indexed lookup).
_RELATIONS = """
SELECT c.relname, c.relkind
FROM pg_depend d
JOIN pg_class c ON c.oid = d.objid
WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = %s::regnamespace
  AND d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
ORDER BY c.relname
"""
_DML = sql.SQL("SELECT, INSERT, UPDATE, DELETE")


def new_schema_name() -> str:
    return f"{SCHEMA_PREFIX}{secrets.token_hex(8)}"


def relations(conn: psycopg.Connection, schema: str) -> list[tuple[str, str]]:
    """(name, relkind) of the schema's tables, views and sequences."""
    return [(name, kind) for name, kind in conn.execute(_RELATIONS, (schema,))]


def tables(conn: psycopg.Connection, schema: str) -> list[str]:
    return [name for name, kind in relations(conn, schema) if kind in ("r", "p")]


def _in_schema(schema: str, names: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(schema, name) for name in names)


def grant_statements(conn: psycopg.Connection, schema: str, role: str) -> list[sql.Composable]:
    """Explicit-name grants of the tenant role on every relation now in its schema (idempotent)."""
    by_kind: dict[str, list[str]] = {"table": [], "view": [], "sequence": []}
    for name, kind in relations(conn, schema):
        by_kind["sequence" if kind == "S" else "view" if kind in ("v", "m") else "table"].append(name)
    ident_role = sql.Identifier(role)
    statements: list[sql.Composable] = []
    if by_kind["table"]:
        statements.append(sql.SQL("GRANT {} ON TABLE {} TO {}").format(
            _DML, _in_schema(schema, by_kind["table"]), ident_role))
    if by_kind["view"]:
        statements.append(sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(
            _in_schema(schema, by_kind["view"]), ident_role))
    if by_kind["sequence"]:
        statements.append(sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(
            _in_schema(schema, by_kind["sequence"]), ident_role))
    return statements


def run_batch(conn: psycopg.Connection, statements: Iterable[sql.Composable]) -> None:
    """Send statements as one simple-query batch (one round trip; no bound parameters allowed)."""
    items = list(statements)
    if items:
        conn.execute(sql.SQL(";\n").join(items))


def migration_statements(schema: str, pending: Iterable[Migration]) -> list[sql.Composable]:
    """Statements that run `pending` inside `schema` only, then restore the search_path."""
    return [
        sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)),
        *(sql.SQL(m.sql) for m in pending),  # trusted files from the package, never user input
        sql.SQL("SET LOCAL search_path TO DEFAULT"),
    ]


def build_statements(schema: str, files: Sequence[Migration]) -> list[sql.Composable]:
    """A schema with its tables and no grants (owned by the current role, the provisioner)."""
    return [sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)), *migration_statements(schema, files)]


def create(conn: psycopg.Connection, *, schema: str, role: str, group: str, connection_limit: int,
           build: Sequence[Migration] | None) -> None:
    """Create the role (LOGIN with no password: it cannot log in until activation gives it one)
    and grant it the schema, building the schema from `build` first unless it is a pre-built
    warm-pool schema (`build` None); caller's txn. `connection_limit` is the same for every
    tenant (`TierCatalog.role_connection_limit`), never the tier's."""
    ident_role, ident_schema = sql.Identifier(role), sql.Identifier(schema)
    run_batch(conn, [
        *(build_statements(schema, build) if build is not None else []),
        sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT {}").format(ident_role, sql.Literal(int(connection_limit))),
        _membership(conn).format(sql.Identifier(group), ident_role),
        sql.SQL("ALTER ROLE {} SET search_path = {}").format(ident_role, ident_schema),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident_schema, ident_role),
    ])
    run_batch(conn, grant_statements(conn, schema, role))


def _membership(conn: psycopg.Connection) -> sql.SQL:
    """Inherit the granted role's rights but never become it (PG16+; PG15 cannot say SET FALSE)."""
    return (sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET FALSE") if conn.info.server_version >= 160000
            else sql.SQL("GRANT {} TO {}"))


def inherit(conn: psycopg.Connection, role: str) -> None:
    """Let the provisioner (current role) inherit `role`'s privileges, if it does not yet: PG16
    requires them to ``DROP OWNED BY`` a role and to read the sizes of its large objects. Done
    only when needed (offboarding, a tenant owning large objects), never at signup: every
    membership of the provisioner makes PostgreSQL's role-membership checks of later signups slower
    (measured: 0.3 ms per GRANT with 400 memberships, 4.7 ms with 2,000). The tenant gains nothing."""
    inherited = conn.execute("SELECT pg_has_role(current_user, %s, 'USAGE')", (role,)).fetchone()
    if not inherited or not inherited[0]:
        conn.execute(_membership(conn).format(sql.Identifier(role), sql.SQL("CURRENT_USER")))


def drop_owned_statement(role: str) -> sql.Composable:
    """Remove everything `role` owns in the current database (large objects, default privileges)
    and every privilege granted to it, so the role can be dropped."""
    return sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role))


def drop_schema_statement(schema: str) -> sql.Composable:
    return sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))


def drop(conn: psycopg.Connection, *, schema: str, role: str) -> None:
    """Drop schema (with its tables), whatever the role owns here, and the role if they exist; in
    the caller's transaction. Objects the role owns in other databases must be gone already."""
    statements = [drop_schema_statement(schema)]
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        inherit(conn, role)
        statements.append(drop_owned_statement(role))
    run_batch(conn, [*statements, sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role))])


# The password a tenant role may have, from its ``control.tenants`` row ``t``: the stored verifier
# while the tenant is active; none while it is provisioning, suspended or offboarding.
LOGIN_VERIFIER = "CASE WHEN t.state = 'active' THEN t.password_verifier END"


def login_statement(role: str, verifier: str | None) -> sql.Composable:
    """``LOGIN`` (as every tenant role has; roles made before issue 10 had ``NOLOGIN``) with
    `verifier` as the password, or none (`verifier` None): password login then fails."""
    return sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier))


def connection_limit_statement(role: str, limit: int) -> sql.Composable:
    return sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(sql.Identifier(role), sql.Literal(int(limit)))


def apply_login(conn: psycopg.Connection, role: str) -> None:
    """Give `role` the password its tenant's state allows (`LOGIN_VERIFIER`). Call it after the
    state change, in the same transaction, holding the tenant's row lock (every caller has
    updated or locked the row): the lock orders it with the session reaper, which re-applies the
    same rule every cycle."""
    row = conn.execute(sql.SQL("SELECT {} FROM control.tenants t WHERE t.role_name = %s").format(
        sql.SQL(LOGIN_VERIFIER)), (role,)).fetchone()
    conn.execute(login_statement(role, row[0] if row else None))


def scram_verifier(conn: psycopg.Connection, role: str, password: str) -> str:
    """The SCRAM verifier of `password`, computed client-side: the password never reaches the server."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def password_statement(role: str, verifier: str) -> sql.Composable:
    """A non-tenant role's password (the services' login); tenant roles get theirs by `apply_login`."""
    return sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier))


def set_password(conn: psycopg.Connection, role: str, password: str | None) -> None:
    """Record (or remove) the role's password as a verifier in ``control.tenants`` and apply it if
    the tenant is active (`apply_login`; a provisioning or suspended tenant gets it on activation
    or resume). The session reaper re-applies the recorded one every cycle (a tenant can change
    its own password), so every platform change of a tenant password must come through here."""
    verifier = None if password is None else scram_verifier(conn, role, password)
    row = conn.execute(sql.SQL("UPDATE control.tenants t SET password_verifier = %s WHERE t.role_name = %s"
                               " RETURNING {}").format(sql.SQL(LOGIN_VERIFIER)), (verifier, role)).fetchone()
    conn.execute(login_statement(role, row[0] if row else None))


def terminate_sessions(conn: psycopg.Connection, role: str) -> int:
    """End every session of `role` (the provisioner is a member of pg_signal_backend)."""
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
        (role,)).fetchall()
    return sum(1 for (ok,) in rows if ok)
