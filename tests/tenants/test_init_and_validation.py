"""`init` (idempotent, concurrent, tamper-evident, hardening) and input validation."""

from __future__ import annotations

import json
import string
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from typer.testing import CliRunner

from tenant_provisioner import control, migrations, validation
from tenant_provisioner.cli.main import app
from tenant_provisioner.db import admin_connect, operator_login_role, tenant_group_role
from tenant_provisioner.errors import ConfigError, InvalidInput

_MEMBERSHIPS = """
SELECT g.rolname, m.inherit_option, m.set_option, m.admin_option FROM pg_auth_members m
JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s ORDER BY 1
"""


def test_init_is_idempotent_and_concurrent_runs_queue(fresh_tenant_db):
    def run(_):
        with admin_connect(fresh_tenant_db.url) as conn:
            return control.init(conn, fresh_tenant_db.provisioner_role)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, range(3)))
    assert all(r.applied == () for r in results)  # the fixture already applied everything
    with fresh_tenant_db.admin() as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM control.schema_migrations ORDER BY 1")]
        assert versions == [m.version for m in migrations.load("control")]
        public = conn.execute("SELECT count(*) FROM pg_database, aclexplode(datacl) a"
                              " WHERE datname = current_database() AND a.grantee = 0").fetchone()
        assert public == (0,)


def test_init_refuses_an_edited_applied_migration(fresh_tenant_db):
    with fresh_tenant_db.admin() as conn:
        conn.execute("UPDATE control.schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(ConfigError, match="changed after it was applied"):
            control.init(conn, fresh_tenant_db.provisioner_role)


def _operator_login(conn: psycopg.Connection, login: str) -> tuple:
    return conn.execute("SELECT rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolcreatedb, rolreplication,"
                        " rolbypassrls, rolpassword IS NULL FROM pg_authid WHERE rolname = %s", (login,)).fetchone()


def test_init_creates_the_operator_login_once_as_a_set_role_only_member_of_the_provisioner(fresh_tenant_db):
    provisioner = fresh_tenant_db.provisioner_role
    login = operator_login_role(provisioner)
    with fresh_tenant_db.admin() as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (control.RDS_IAM_ROLE,)).fetchone() is None
        control.init(conn, provisioner)   # again: the fixture ran it once
        # LOGIN without password, inherits nothing, no elevated attribute.
        assert _operator_login(conn, login) == (True, False, False, False, False, False, False, True)
        # (role, inherit, set, admin): SET ROLE to the provisioner only, once; no rds_iam off RDS.
        assert conn.execute(_MEMBERSHIPS, (login,)).fetchall() == [(provisioner, False, True, False)]
        connect = conn.execute("SELECT has_database_privilege(%s, current_database(), 'CONNECT')", (login,))
        assert connect.fetchone() == (True,)


def test_init_grants_rds_iam_to_the_operator_login_where_the_role_exists(fresh_tenant_db):
    provisioner = fresh_tenant_db.provisioner_role
    login = operator_login_role(provisioner)
    with psycopg.connect(fresh_tenant_db.admin_url, autocommit=True) as cluster:
        made = cluster.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (control.RDS_IAM_ROLE,)).fetchone() is None
        if made:   # as on RDS (roles are cluster-wide: only the one made here is dropped)
            cluster.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(control.RDS_IAM_ROLE)))
        try:
            with fresh_tenant_db.admin() as conn:
                control.init(conn, provisioner)
                control.init(conn, provisioner)
                assert conn.execute(_MEMBERSHIPS, (login,)).fetchall() == [
                    (provisioner, False, True, False), (control.RDS_IAM_ROLE, True, True, False)]
        finally:
            if made:
                cluster.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(control.RDS_IAM_ROLE)))


def _roles_reachable(conn: psycopg.Connection, who: str, privilege: str) -> set[str]:
    return {row[0] for row in conn.execute(
        "SELECT rolname FROM pg_roles WHERE pg_has_role(%s, oid, %s) AND rolname <> %s", (who, privilege, who))}


def test_the_operator_login_reaches_nothing_the_provisioner_cannot(tenant_db):
    provisioner = tenant_db.provisioner_role
    login = operator_login_role(provisioner)
    with tenant_db.admin() as conn:
        assert _roles_reachable(conn, login, "USAGE") == set()   # no role's privileges until SET ROLE
        # SET ROLE: the provisioner and what the provisioner may become itself, nothing else.
        assert _roles_reachable(conn, login, "SET") == {provisioner, *_roles_reachable(conn, provisioner, "SET")}
    with psycopg.connect(tenant_db.login_url(login), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM control.tenants")
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(tenant_db.provisioner_role)))
        conn.execute("SELECT count(*) FROM control.tenants")


def test_the_cli_works_logged_in_as_the_operator_login(tenant_db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", tenant_db.login_url(operator_login_role(tenant_db.provisioner_role)))
    monkeypatch.setenv("TENANT_PROVISIONER_ROLE", tenant_db.provisioner_role)
    result = CliRunner().invoke(app, ["list", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.output), list)


@pytest.mark.parametrize("drift", ["ALTER ROLE {login} CREATEDB", "GRANT {group} TO {login}"])
def test_init_refuses_an_operator_login_with_more_rights(fresh_tenant_db, drift):
    provisioner = fresh_tenant_db.provisioner_role
    names = {"login": sql.Identifier(operator_login_role(provisioner)),
             "group": sql.Identifier(tenant_group_role(provisioner))}
    with fresh_tenant_db.admin() as conn:
        conn.execute(sql.SQL(drift).format(**names))
        with pytest.raises(ConfigError, match="operators' login"):
            control.init(conn, provisioner)


@pytest.mark.parametrize("bad", ["acme'; DROP TABLE x;--", "acme;corp", "\u00e4cme", "ACME", "ab", "a" * 41,
                                 "1acme", "acme-", "ac--me", "admin", "public", "", None, 42, "acme corp"])
def test_invalid_tenant_ids(bad):
    with pytest.raises(InvalidInput) as caught:
        validation.tenant_id(bad)
    assert caught.value.field == "tenant_id"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + "-_;'\" \u00e9\u4e2d", max_size=45))
def test_tenant_ids_are_either_valid_slugs_or_invalid_input(candidate):
    try:
        accepted = validation.tenant_id(candidate)
    except InvalidInput:
        return
    assert validation.TENANT_ID_PATTERN.fullmatch(accepted) and accepted not in validation.RESERVED_TENANT_IDS


@pytest.mark.parametrize("bad", ["nope", "a@b", "a@@b.io", "a b@c.io", "x" * 250 + "@example.com", None])
def test_invalid_emails(bad):
    with pytest.raises(InvalidInput):
        validation.email(bad)


def test_free_text_is_bounded_and_printable():
    assert validation.text("  Acme  ", "company_name", required=False) == "Acme"
    assert validation.text("", "company_name", required=False) is None
    for bad in ("x" * 201, "line\nbreak", "\x00"):
        with pytest.raises(InvalidInput):
            validation.text(bad, "company_name", required=False)
    with pytest.raises(InvalidInput):
        validation.text(None, "reason", required=True)
