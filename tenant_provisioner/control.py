"""`init`: create or upgrade the control plane of the shared database; safe to run any time.

Run as the database's admin login (RDS master user, or a superuser locally). In one transaction,
holding a lock on ``control.schema_migrations`` (so concurrent runs queue instead of racing; not
an advisory lock, whose keys every tenant can take), it:

1. creates the provisioner role (NOLOGIN, CREATEROLE, member of ``pg_signal_backend`` so it can
   end a suspended tenant's sessions, and of ``pg_monitor`` so the session reaper sees them) and grants it to the login user, who works through
   ``SET ROLE``; and the tenant group role, which holds only CONNECT on this database; and the
   operators' login (`operator_login_role`: LOGIN, no password, NOINHERIT, CONNECT on this database,
   member of the provisioner role WITH SET TRUE, INHERIT FALSE — it holds none of the provisioner's
   rights until it runs ``SET ROLE`` as the CLI does — and, on RDS, of ``rds_iam``: it logs in with
   an IAM token only, docs/runbooks/database-access.md);
2. hardens the database: PUBLIC loses CONNECT/TEMP on it and every right on schema ``public``;
   functions the provisioner creates are not executable by PUBLIC (default privileges); every
   other database of the cluster (``postgres``, ``template1``) loses PUBLIC's CONNECT/TEMP where
   the login may change it (on RDS ``rdsadmin`` and ``template0`` do not allow it: the result
   lists them and the session reaper ends tenant sessions outside the app database);
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
from tenant_provisioner.db import operator_login_role, tenant_group_role
from tenant_provisioner.errors import ConfigError

INIT_LOCK_TIMEOUT = "60s"
# Two first-ever inits racing on an empty database collide on catalog rows; the loser retries.
_FIRST_INIT_RACES = (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject,
                     psycopg.errors.DuplicateSchema, psycopg.errors.InternalError_)
_INIT_ATTEMPTS = 3
# RDS's role whose members authenticate with IAM tokens (never a password); absent elsewhere.
RDS_IAM_ROLE = "rds_iam"
_ELEVATED = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
# Databases other than this one where PUBLIC still holds a right (NULL acl = the defaults).
_OTHER_OPEN_DATABASES = """
SELECT d.datname FROM pg_database d
WHERE d.datallowconn AND d.datname <> current_database()
  AND (d.datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(d.datacl) a WHERE a.grantee = 0))
ORDER BY d.datname
"""

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
    # Other databases whose PUBLIC rights could not be revoked here, with the server's reason.
    unhardened: tuple[str, ...] = ()


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
        # The session reaper must see tenant sessions' state in pg_stat_activity (pg_monitor, not
        # pg_read_all_stats: RDS's master user holds pg_monitor with the admin option).
        sql.SQL("GRANT pg_monitor TO {}").format(ident(provisioner)),
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
    _ensure_operator_login(conn, provisioner)


def _ensure_operator_login(conn: psycopg.Connection, provisioner: str) -> None:
    """The operators' login; refuses a role of that name with an elevated attribute or another membership."""
    login = operator_login_role(provisioner)
    _create_role_if_missing(conn, login, sql.SQL("LOGIN NOINHERIT"))
    elevated = conn.execute(sql.SQL("SELECT {} FROM pg_roles WHERE rolname = %s").format(
        sql.SQL(" OR ").join(map(sql.Identifier, _ELEVATED))), (login,)).fetchone()[0]
    if elevated:
        raise ConfigError(f"role {login!r} has an elevated attribute ({', '.join(_ELEVATED)}); the operators' "
                          f"login must have none: drop it (or remove them) and run `init` again")
    on_rds = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (RDS_IAM_ROLE,)).fetchone() is not None
    intended = {provisioner, *([RDS_IAM_ROLE] if on_rds else [])}
    others = sorted({row[0] for row in conn.execute(
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s", (login,))} - intended)
    if others:
        raise ConfigError(f"role {login!r} is also a member of {', '.join(others)}; the operators' login may "
                          f"only be a member of {', '.join(sorted(intended))}: revoke the others and run `init` again")
    ident = sql.Identifier
    conn.execute(sql.SQL("ALTER ROLE {} LOGIN NOINHERIT PASSWORD NULL").format(ident(login)))
    conn.execute(sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(ident(provisioner), ident(login)))
    if on_rds:   # rds_iam holds no privilege (inheriting it grants nothing); explicit, whatever NOINHERIT defaults to
        conn.execute(sql.SQL("GRANT {} TO {} WITH INHERIT TRUE").format(ident(RDS_IAM_ROLE), ident(login)))
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(conn.info.dbname), ident(login)))


def _harden_other_databases(conn: psycopg.Connection) -> tuple[str, ...]:
    """PUBLIC loses CONNECT/TEMP on every other database (a tenant could log in to ``postgres`` and
    keep TEMP tables and large objects there, or sit in ``template1`` and make CREATE DATABASE
    fail). The login keeps CONNECT explicitly: offboarding drops tenant objects there."""
    refused = []
    for (name,) in conn.execute(_OTHER_OPEN_DATABASES).fetchall():
        database = sql.Identifier(name)
        try:
            with conn.transaction():
                conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO CURRENT_USER").format(database))
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database))
        except psycopg.errors.InsufficientPrivilege as exc:
            refused.append(f"{name}: {str(exc).strip()}")
    return tuple(refused)


def init(conn: psycopg.Connection, provisioner_role: str) -> InitResult:
    """Create/upgrade roles, hardening and the control schema; returns the files applied now."""
    if not provisioner_role or len(provisioner_role) > 40:
        raise ConfigError("provisioner role name must be 1-40 characters")
    for attempt in range(1, _INIT_ATTEMPTS + 1):
        try:
            return _init_once(conn, provisioner_role)
        except _FIRST_INIT_RACES:
            if attempt == _INIT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _init_once(conn: psycopg.Connection, provisioner_role: str) -> InitResult:
    files = migrations.load("control")
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (INIT_LOCK_TIMEOUT,))
        if conn.execute("SELECT to_regclass('control.schema_migrations')").fetchone()[0] is not None:
            conn.execute("LOCK TABLE control.schema_migrations IN SHARE ROW EXCLUSIVE MODE")
        _ensure_roles_and_hardening(conn, provisioner_role)
        unhardened = _harden_other_databases(conn)
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
    return InitResult(applied=tuple(applied_now), version=files[-1].version if files else 0,
                      unhardened=unhardened)
