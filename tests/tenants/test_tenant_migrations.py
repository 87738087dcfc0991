"""Tenant migrations applied to a schema as `tenant-provisioner migrate` would: 0003 drops the
unused per-tenant `api_keys` table (keys live in control.api_keys), and never drops rows."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tenant_provisioner import migrations


def _schema_at(conn: psycopg.Connection, name: str, version: int) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(name)))
    for migration in migrations.load("tenant"):
        if migration.version <= version:
            conn.execute(migration.sql)


def _apply(conn: psycopg.Connection, version: int) -> None:
    (migration,) = [m for m in migrations.load("tenant") if m.version == version]
    with conn.transaction():
        conn.execute(migration.sql)


def _tables(conn: psycopg.Connection, schema: str) -> set[str]:
    return {row[0] for row in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))}


def test_0003_drops_the_unused_api_keys_table_and_its_column(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        _schema_at(conn, "t_existing", 2)
        conn.execute("INSERT INTO projects (name) VALUES ('p')")
        conn.execute("INSERT INTO ai_usage_records (project_id, provider, model, cost_usd, occurred_at)"
                     " SELECT id, 'openai', 'gpt-4o', 0.5, now() FROM projects")
        _apply(conn, 3)
        assert "api_keys" not in _tables(conn, "t_existing")
        columns = {row[0] for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'ai_usage_records'"
            " AND table_schema = 't_existing'")}
        assert "api_key_id" not in columns and "cost_usd" in columns
        assert conn.execute("SELECT count(*) FROM ai_usage_records").fetchone()[0] == 1


def test_0003_stops_with_nothing_changed_when_the_table_holds_rows(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        _schema_at(conn, "t_written", 2)
        user = conn.execute("INSERT INTO users (email) VALUES ('a@example.com') RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO api_keys (user_id, name, key_prefix, key_hash) VALUES (%s, 'k', 'p', '\\x00')",
                     (user,))
        with pytest.raises(psycopg.errors.RaiseException, match="has rows in api_keys"):
            _apply(conn, 3)
        assert "api_keys" in _tables(conn, "t_written")


def test_new_tenant_schemas_have_no_api_keys_table(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        _schema_at(conn, "t_new", migrations.latest_version("tenant"))
        assert "api_keys" not in _tables(conn, "t_new") and "projects" in _tables(conn, "t_new")
