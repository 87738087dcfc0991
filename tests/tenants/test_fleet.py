"""Fleet migrations: pending tenants migrate, new tables are granted by name, re-runs skip."""

from __future__ import annotations

import psycopg

from tenant_provisioner import migrations
from tenant_provisioner.tenants import fleet
from tenant_provisioner.runtime import compose
from tenant_provisioner.migrations import Migration
from tenant_provisioner.tenants.provisioning import CreateRequest

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later

NEXT = Migration(
    version=migrations.latest_version("tenant") + 1, name="tags",
    sql="ALTER TABLE projects ADD COLUMN color text;\n"
        "CREATE TABLE tags (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);")


def test_migrate_all_upgrades_pending_tenants_and_is_resumable(tenant_db):
    files = (*migrations.load("tenant"), NEXT)
    with tenant_db.database(max_size=3) as db:
        with db.connection() as conn:
            made = [lifecycle.create(conn, CreateRequest.parse(
                {"tenant_id": f"fleet-{i}", "tier": "starter", "admin_email": "a@example.com"}), actor="t").tenant
                for i in range(4)]
            lifecycle.suspend(conn, "fleet-3", reason="still migrated", actor="t")
        seen: list[tuple[str, str]] = []
        report = fleet.migrate_all(db, actor="t", concurrency=3, files=files,
                                   on_progress=lambda t, outcome: seen.append((t, outcome)))
        assert report.pending == 4 and len(report.migrated) == 4 and not report.failed
        assert sorted(seen) == [(f"fleet-{i}", "migrated") for i in range(4)]
        again = fleet.migrate_all(db, actor="t", concurrency=2, files=files)
        assert again.pending == 0 and not again.migrated
        with db.connection() as conn:
            versions = {row[0] for row in conn.execute("SELECT schema_version FROM control.tenants")}
            assert versions == {NEXT.version}
    tenant = made[0]
    with psycopg.connect(tenant_db.login_url(tenant.role_name), autocommit=True) as app:
        app.execute("INSERT INTO tags (name) VALUES ('x')")
        app.execute("INSERT INTO projects (name, color) VALUES ('p', 'red')")
        assert app.execute("SELECT count(*) FROM tags").fetchone()[0] == 1


def test_a_failing_tenant_is_reported_and_the_rest_continue(tenant_db):
    broken = Migration(version=NEXT.version + 1, name="broken", sql="ALTER TABLE no_such_table ADD COLUMN x int;")
    files = (*migrations.load("tenant"), NEXT, broken)
    with tenant_db.database(max_size=2) as db:
        report = fleet.migrate_all(db, actor="t", concurrency=2, files=files)
        assert report.pending == 4 and len(report.failed) == 4
        assert all("no_such_table" in message for message in report.failed.values())
        with db.connection() as conn:
            versions = {row[0] for row in conn.execute("SELECT schema_version FROM control.tenants")}
            assert versions == {NEXT.version}  # each failed tenant rolled back as a whole
