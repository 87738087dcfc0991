"""Throwaway PostgreSQL databases for tests, and clean-up of the cluster-wide roles they made.

Roles are shared by every database of a cluster, so dropping a test database is not enough: the
roles that hold privileges in it (found through ``pg_shdepend``) are dropped with it.
"""

from __future__ import annotations

import contextlib

import uuid

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# Rights on objects inside the database are recorded under its oid; rights on the database
# itself (GRANT CONNECT ...) are shared objects, recorded with dbid 0 and the database as objid.
_ROLES_WITH_RIGHTS_HERE = """
WITH here AS (SELECT oid FROM pg_database WHERE datname = current_database())
SELECT DISTINCT a.rolname
FROM pg_shdepend d
JOIN pg_authid a ON a.oid = d.refobjid
WHERE d.refclassid = 'pg_authid'::regclass
  AND (d.dbid = (SELECT oid FROM here)
       OR (d.dbid = 0 AND d.classid = 'pg_database'::regclass AND d.objid = (SELECT oid FROM here)))
  AND a.oid >= 16384 AND NOT a.rolsuper
"""


def url_for_database(admin_url: str, dbname: str) -> str:
    params = conninfo_to_dict(admin_url)
    params["dbname"] = dbname
    return make_conninfo(**params)


def create_database(admin_url: str, prefix: str = "test") -> str:
    """Create an empty database with a unique name; return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url_for_database(admin_url, name)


def drop_database(admin_url: str, database_url: str, extra_roles: tuple[str, ...] = ()) -> None:
    """Drop the database, then every non-superuser role that held rights or objects in it."""
    name = conninfo_to_dict(database_url)["dbname"]
    roles: set[str] = set(extra_roles)
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            roles.update(row[0] for row in conn.execute(_ROLES_WITH_RIGHTS_HERE))
    except psycopg.OperationalError:
        pass
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        for role in sorted(roles):
            # A role that also holds rights in another live database (another test run's) stays.
            with contextlib.suppress(psycopg.errors.DependentObjectsStillExist):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
