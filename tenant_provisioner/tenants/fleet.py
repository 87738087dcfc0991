"""Fleet migrations: bring every tenant schema to the latest ``migrations/tenant`` version.

Each tenant migrates in its own transaction: lock its control row (``FOR UPDATE SKIP LOCKED``,
so concurrent migrators never do the same tenant twice), run its pending files inside its schema
only, grant the tenant role DML on any new relation by name, bump ``schema_version``. Tenants
already at the latest version are never touched, so an interrupted run is resumed by running it
again. Parallelism is bounded by ``concurrency`` (one connection per worker); a failing tenant is
reported and the others continue. Offboarded tenants have no schema and are skipped.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable

import psycopg

from tenant_provisioner import migrations
from tenant_provisioner.tenants import schema, transitions
from tenant_provisioner.db import Database
from tenant_provisioner.errors import InvalidInput

log = logging.getLogger(__name__)
MAX_CONCURRENCY = 32
_LIVE_STATES = ("provisioning", "active", "suspended")


@dataclass
class MigrationReport:
    target_version: int
    pending: int
    migrated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # done meanwhile by another migrator
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {"target_version": self.target_version, "pending": self.pending, "migrated": len(self.migrated),
                "skipped": len(self.skipped), "failed": self.failed, "seconds": round(self.seconds, 2)}


def pending_tenants(conn: psycopg.Connection, target: int) -> list[str]:
    rows = conn.execute("SELECT tenant_id FROM control.tenants WHERE schema_version < %s AND state = ANY(%s)"
                        " ORDER BY tenant_id", (target, list(_LIVE_STATES))).fetchall()
    return [row[0] for row in rows]


def migrate_tenant(conn: psycopg.Connection, tenant_id: str, *, actor: str,
                   files: tuple[migrations.Migration, ...]) -> bool:
    """Migrate one tenant; False if it is up to date or another migrator holds it."""
    target = files[-1].version
    with conn.transaction():
        row = conn.execute(
            "SELECT schema_name, role_name, schema_version FROM control.tenants"
            " WHERE tenant_id = %s AND schema_version < %s AND state = ANY(%s) FOR UPDATE SKIP LOCKED",
            (tenant_id, target, list(_LIVE_STATES))).fetchone()
        if row is None:
            return False
        schema_name, role_name, version = row
        conn.execute("SET LOCAL lock_timeout = '10s'")
        schema.run_batch(conn, schema.migration_statements(schema_name, [m for m in files if m.version > version]))
        schema.run_batch(conn, schema.grant_statements(conn, schema_name, role_name))
        transitions.record_schema_version(conn, tenant_id, from_version=version, to_version=target, actor=actor)
    return True


def migrate_all(db: Database, *, actor: str, concurrency: int = 4,
                on_progress: Callable[[str, str], None] | None = None,
                files: tuple[migrations.Migration, ...] | None = None) -> MigrationReport:
    """Migrate every tenant behind the latest version; `on_progress(tenant_id, outcome)` per tenant."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise InvalidInput("concurrency", f"must be between 1 and {MAX_CONCURRENCY}")
    files = files or migrations.load("tenant")
    started = time.perf_counter()
    with db.connection() as conn:
        todo = pending_tenants(conn, files[-1].version)
    report = MigrationReport(target_version=files[-1].version, pending=len(todo))

    def work(tenant_id: str) -> bool:
        with db.connection() as conn:
            return migrate_tenant(conn, tenant_id, actor=actor, files=files)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="migrate") as pool:
        futures = {pool.submit(work, tenant_id): tenant_id for tenant_id in todo}
        for future in as_completed(futures):
            tenant_id = futures[future]
            try:
                outcome = "migrated" if future.result() else "skipped"
                (report.migrated if outcome == "migrated" else report.skipped).append(tenant_id)
            except Exception as exc:  # one tenant's failure must not stop the fleet
                log.warning("migration of %s failed: %s", tenant_id, exc)
                report.failed[tenant_id] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                outcome = "failed"
            if on_progress:
                on_progress(tenant_id, outcome)
    report.seconds = time.perf_counter() - started
    return report
