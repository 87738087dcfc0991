"""The services' own login: created/updated by `ensure_services_login`, a member of the gateway role
only, able to act as the gateway and nothing more; misuse is refused with nothing changed."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tenant_provisioner.db import admin_connect
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.gateway.services_login import ensure_services_login
from tests.request_path.test_keys_cli import _scram_matches

PASSWORD = "p" * 40


def _verifier(conn, role):
    return conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()[0]


def test_login_is_created_then_its_password_follows_the_secret(platform):
    login = f"{platform.provisioner_role}_services"
    with admin_connect(platform.url) as conn:
        ensure_services_login(conn, provisioner_role=platform.provisioner_role, username=login, password=PASSWORD)
        assert _scram_matches(_verifier(conn, login), PASSWORD)
        ensure_services_login(conn, provisioner_role=platform.provisioner_role, username=login, password="q" * 40)
        assert _scram_matches(_verifier(conn, login), "q" * 40)
        groups = [r[0] for r in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s", (login,))]
        assert groups == [f"{platform.provisioner_role}_gateway"]
    try:
        url = make_conninfo(platform.url, user=login, password="q" * 40)
        with psycopg.connect(url, autocommit=True) as services:
            # NOINHERIT: nothing until SET ROLE to the gateway, which then reads the control plane.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                services.execute("SELECT count(*) FROM control.tenants")
            services.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(f"{platform.provisioner_role}_gateway")))
            services.execute("SELECT count(*) FROM control.tenants")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                services.execute("SELECT count(*) FROM control.audit_log")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                services.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(platform.provisioner_role)))
    finally:
        with admin_connect(platform.url) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


@pytest.mark.parametrize("name", ["", "{role}", "{role}_gateway", "{role}_tenants"])
def test_platform_role_names_are_refused(platform, name):
    with admin_connect(platform.url) as conn, pytest.raises(ConfigError):
        ensure_services_login(conn, provisioner_role=platform.provisioner_role,
                              username=name.format(role=platform.provisioner_role), password=PASSWORD)


def test_short_password_and_privileged_existing_role_are_refused_with_nothing_changed(platform):
    login = f"{platform.provisioner_role}_svc_admin"
    with admin_connect(platform.url) as conn:
        with pytest.raises(ConfigError, match="at least"):
            ensure_services_login(conn, provisioner_role=platform.provisioner_role, username=login, password="short")
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone() is None
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(login)))
        try:
            with pytest.raises(ConfigError, match="elevated"):
                ensure_services_login(conn, provisioner_role=platform.provisioner_role, username=login, password=PASSWORD)
            assert _verifier(conn, login) is None
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
