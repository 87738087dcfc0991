"""Fixtures for the tenant lifecycle tests: an initialised throwaway database per module.

Each module gets its own database and its own provisioner role name (roles are cluster-wide, so
parallel runs must not share one); teardown drops the database and every role the module made,
including roles of tenants whose creation was interrupted on purpose.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tenant_provisioner import control
from tenant_provisioner.db import Database, admin_connect, operator_login_role, tenant_group_role
from tests.support import databases

_MEMBERS_OF_GROUP = """
SELECT r.rolname FROM pg_auth_members m
JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
WHERE g.rolname = %s
"""


@dataclass(frozen=True)
class TenantDb:
    url: str
    admin_url: str
    provisioner_role: str

    def database(self, max_size: int = 2) -> Database:
        return Database(self.url, provisioner_role=self.provisioner_role, max_size=max_size)

    def login_url(self, role: str) -> str:
        params = conninfo_to_dict(self.url)
        params["user"] = role
        return make_conninfo(**params)

    def admin(self) -> psycopg.Connection:
        return admin_connect(self.url)

    def verifier(self, role: str) -> str | None:
        """The role's password verifier (pg_authid, superuser only); None: password login fails."""
        with self.admin() as conn:
            row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
        assert row is not None, f"no role {role}"
        return row[0]


def _make(pg_admin_url: str) -> TenantDb:
    url = databases.create_database(pg_admin_url, prefix="tenants")
    role = f"prov_{uuid.uuid4().hex[:10]}"
    with admin_connect(url) as conn:
        control.init(conn, role)
    return TenantDb(url=url, admin_url=pg_admin_url, provisioner_role=role)


def _drop(env: TenantDb) -> None:
    """Drop the database, then this module's roles: tenants, operators' login, provisioner, group, in that order,
    each by name (an error here fails the teardown visibly instead of leaking a role)."""
    group = tenant_group_role(env.provisioner_role)
    with psycopg.connect(env.admin_url, autocommit=True) as conn:
        members = [row[0] for row in conn.execute(_MEMBERS_OF_GROUP, (group,)) if row[0] != env.provisioner_role]
    databases.drop_database(env.admin_url, env.url)
    with psycopg.connect(env.admin_url, autocommit=True) as conn:
        for role in (*members, operator_login_role(env.provisioner_role), env.provisioner_role, group):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def tenant_db(pg_admin_url):
    """An initialised database shared by one test module."""
    env = _make(pg_admin_url)
    yield env
    _drop(env)


@pytest.fixture()
def fresh_tenant_db(pg_admin_url):
    """An initialised database for one test (when a test counts everything in the catalog)."""
    env = _make(pg_admin_url)
    yield env
    _drop(env)


@pytest.fixture()
def db(tenant_db):
    database = tenant_db.database()
    yield database
    database.close()


@pytest.fixture()
def password_login(tenant_db, pg_password_auth_url):
    """`url(role, password)`: the module's database where the role must give its password (as on
    RDS; `login_url` trusts every role, like the rest of the suite)."""
    def url(role: str, password: str) -> str:
        params = conninfo_to_dict(pg_password_auth_url)
        params.update(dbname=conninfo_to_dict(tenant_db.url)["dbname"], user=role, password=password)
        return make_conninfo(**params)
    return url


@pytest.fixture()
def tenant_ids():
    """Unique tenant ids for one test (modules share a database)."""
    def make(prefix: str = "acme") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"
    return make
