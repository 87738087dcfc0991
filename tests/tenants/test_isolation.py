"""Isolation probes (docs/tenants.md, notes §4): logged in as tenant A, nothing of B, of the
control plane or of the server is reachable, and A cannot change its own structure."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from tenant_provisioner.runtime import compose
from tenant_provisioner.db import tenant_group_role
from tenant_provisioner.tenants.provisioning import CreateRequest

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later

DENIED = (errors.InsufficientPrivilege,)


@pytest.fixture(scope="module")
def pair(tenant_db):
    with tenant_db.database() as db, db.connection() as conn:
        made = [lifecycle.create(conn, CreateRequest.parse(
            {"tenant_id": name, "tier": "starter", "admin_email": "a@example.com"}), actor="t").tenant
            for name in ("iso-alpha", "iso-bravo")]
    with psycopg.connect(tenant_db.login_url(made[1].role_name), autocommit=True) as b:
        b.execute("INSERT INTO users (email) VALUES ('secret@bravo.example')")
    return made


@pytest.fixture()
def as_a(tenant_db, pair):
    with psycopg.connect(tenant_db.login_url(pair[0].role_name), autocommit=True) as conn:
        yield conn


def _refused(conn, statement, expected=DENIED):
    with pytest.raises(expected):
        conn.execute(statement)


def test_own_tables_work_with_the_default_search_path(as_a):
    as_a.execute("INSERT INTO users (email) VALUES ('me@alpha.example')")
    assert as_a.execute("SELECT current_schemas(false)").fetchone()[0] == [as_a.info.user]
    assert as_a.execute("SELECT count(*) FROM users").fetchone()[0] >= 1


@pytest.mark.parametrize("template", [
    "SELECT * FROM {b}.users", "INSERT INTO {b}.users (email) VALUES ('x@y.zz')",
    "UPDATE {b}.users SET email = 'x'", "DELETE FROM {b}.users", "TRUNCATE {b}.users",
    "SELECT nextval('{b}.users_id_seq')", "SELECT last_value FROM {b}.users_id_seq",
])
def test_no_access_to_the_other_tenant_qualified(as_a, pair, template):
    _refused(as_a, template.format(b=pair[1].schema_name))


def test_no_access_to_the_other_tenant_through_search_path(as_a, pair):
    as_a.execute(f"SET search_path = {pair[1].schema_name}")
    _refused(as_a, "SELECT * FROM users", (errors.UndefinedTable,) + DENIED)  # schema skipped: no USAGE


@pytest.mark.parametrize("target", ["b", "provisioner", "group", "postgres", "pg_signal_backend"])
def test_cannot_become_another_role(tenant_db, as_a, pair, target):
    role = {"b": pair[1].role_name, "provisioner": tenant_db.provisioner_role,
            "group": tenant_group_role(tenant_db.provisioner_role)}.get(target, target)
    if target == "group" and as_a.info.server_version < 160000:
        # PG15 cannot grant membership WITH SET FALSE; the group must then be worthless to become.
        as_a.execute(f'SET ROLE "{role}"')
        _refused(as_a, "CREATE TEMP TABLE x (i int)")
        _refused(as_a, f"SELECT * FROM {pair[0].schema_name}.users")
        return
    _refused(as_a, f'SET ROLE "{role}"')
    _refused(as_a, f'SET SESSION AUTHORIZATION "{role}"')


@pytest.mark.parametrize("statement", [
    "CREATE TABLE {a}.t (i int)", "CREATE VIEW {a}.v AS SELECT 1", "CREATE TYPE {a}.ty AS (i int)",
    "CREATE FUNCTION {a}.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE OPERATOR {a}.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq)",
    "CREATE TABLE public.t (i int)", "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE TABLE control.t (i int)", "CREATE SCHEMA evil", "CREATE TEMP TABLE tmp (i int)",
    "CREATE EXTENSION IF NOT EXISTS pgcrypto",
])
def test_cannot_create_anything_anywhere(as_a, pair, statement):
    _refused(as_a, statement.format(a=pair[0].schema_name))


@pytest.mark.parametrize("statement", [
    "ALTER TABLE users ADD COLUMN x int", "DROP TABLE alerts", "TRUNCATE users", "CREATE INDEX ON users (email)",
    "CREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "ALTER SCHEMA {a} RENAME TO x", "DROP SCHEMA {a} CASCADE"
])
def test_no_ddl_or_truncate_on_its_own_tables(as_a, pair, statement):
    _refused(as_a, statement.format(a=pair[0].schema_name))


def test_cannot_pass_its_rights_on(as_a, pair):
    as_a.execute("GRANT SELECT ON users TO PUBLIC")  # accepted with a warning: no grant option, so no-op
    to_public = as_a.execute("SELECT count(*) FROM aclexplode((SELECT relacl FROM pg_class WHERE oid = %s::regclass))"
                             " WHERE grantee = 0", (f"{pair[0].schema_name}.users",)).fetchone()[0]
    assert to_public == 0


@pytest.mark.parametrize("statement", [
    "SELECT * FROM control.tenants", "SELECT * FROM control.audit_log",
    "INSERT INTO control.audit_log (action, actor) VALUES ('x', 'y')",
])
def test_no_access_to_the_control_plane(as_a, statement):
    _refused(as_a, statement)


@pytest.mark.parametrize("statement", [
    "SELECT pg_read_file('/etc/passwd')", "SELECT pg_ls_dir('.')", "COPY users TO '/tmp/out.csv'",
    "COPY users FROM PROGRAM 'id'", "SELECT lo_import('/etc/passwd')",
])
def test_no_file_or_program_access(as_a, statement):
    _refused(as_a, statement)


def test_cannot_terminate_another_tenants_session(tenant_db, as_a, pair):
    with psycopg.connect(tenant_db.login_url(pair[1].role_name), autocommit=True) as b:
        pid = b.info.backend_pid
        _refused(as_a, f"SELECT pg_terminate_backend({pid})")
        assert b.execute("SELECT 1").fetchone() == (1,)


def test_no_executable_functions_outside_the_system_catalogs(as_a):
    rows = as_a.execute("""
        SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND has_schema_privilege(n.oid, 'USAGE') AND has_function_privilege(p.oid, 'EXECUTE')""").fetchall()
    assert rows == []


def test_catalog_names_are_opaque(tenant_db, pair):
    with tenant_db.admin() as conn:
        names = [row[0] for row in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%%' UNION ALL"
            " SELECT role_name FROM control.tenants")]
    assert names and all(n.startswith("t_") and len(n) == 18 and "iso" not in n for n in names)


def test_acl_audit_no_grant_to_public_or_across_tenants(tenant_db, pair):
    """Every privilege in the database: none to PUBLIC, tenant roles only inside their own schema."""
    with tenant_db.admin() as conn:
        rows = conn.execute("""
            WITH acl AS (
              SELECT 'schema' AS kind, n.nspname AS schema, n.nspname AS name, (aclexplode(n.nspacl)).*
              FROM pg_namespace n WHERE n.nspacl IS NOT NULL
              UNION ALL
              SELECT 'relation', n.nspname, c.relname, (aclexplode(c.relacl)).*
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relacl IS NOT NULL
              UNION ALL
              SELECT 'function', n.nspname, p.proname, (aclexplode(coalesce(p.proacl, acldefault('f', p.proowner)))).*
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
              UNION ALL
              SELECT 'default', coalesce(n.nspname, '*'), d.defaclobjtype::text, (aclexplode(d.defaclacl)).*
              FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
              UNION ALL
              SELECT 'database', '*', datname, (aclexplode(datacl)).* FROM pg_database WHERE datname = current_database()
            )
            SELECT kind, schema, name, CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE grantee::regrole::text END, privilege_type
            FROM acl WHERE schema NOT IN ('pg_catalog', 'information_schema')""").fetchall()
        tenant_roles = {row[0] for row in conn.execute("SELECT role_name FROM control.tenants")}
    public = [r for r in rows if r[3] == "PUBLIC"]
    assert public == []
    crossing = [r for r in rows if r[3] in tenant_roles and r[1] != r[3]]
    assert crossing == []
    group = tenant_group_role(tenant_db.provisioner_role)
    assert {(r[0], r[4]) for r in rows if r[3] == group} == {("database", "CONNECT")}
