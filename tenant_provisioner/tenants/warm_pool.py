"""Warm pool: tenant schemas built before anyone signs up, so a signup only adds role and grants.

Building a schema's tables is most of a create's database time (and grows with the catalog);
claiming a pre-built one (``FOR UPDATE SKIP LOCKED``, so concurrent signups never wait for each
other or take the same schema) leaves the role, the explicit grants and the control row. The
pool is optional: with it empty, a create builds its schema inline, as before.

`refill` (CLI ``warm-pool``, and the Lambda's scheduled ``refill_warm_pool`` event) drops pool
schemas built at an older tenant-migration version, then builds new ones up to ``size``; one
refill runs at a time per database (a lease row), each schema in its own short transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from tenant_provisioner import leases, migrations
from tenant_provisioner.tenants import schema
from tenant_provisioner.errors import InvalidInput

_REFILL_LEASE = "warm_pool_refill"
_REFILL_LEASE_TTL_S = 600.0
MAX_SIZE = 500


@dataclass(frozen=True)
class RefillResult:
    built: int
    dropped_stale: int
    size: int
    ran: bool  # False: another refill holds the lock

    def to_dict(self) -> dict[str, object]:
        return {"built": self.built, "dropped_stale": self.dropped_stale, "size": self.size, "ran": self.ran}


def claim(conn: psycopg.Connection, version: int) -> str | None:
    """Take one pool schema at `version` inside the caller's transaction (None when empty)."""
    row = conn.execute(
        "DELETE FROM control.warm_schemas WHERE schema_name = ("
        " SELECT schema_name FROM control.warm_schemas WHERE schema_version = %s"
        " ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING schema_name", (version,)).fetchone()
    return row[0] if row else None


def size(conn: psycopg.Connection, version: int) -> int:
    row = conn.execute("SELECT count(*) FROM control.warm_schemas WHERE schema_version = %s", (version,)).fetchone()
    return int(row[0]) if row else 0


def refill(conn: psycopg.Connection, target: int) -> RefillResult:
    """Drop stale pool schemas, then build until `target` schemas at the latest version wait."""
    if not 0 <= target <= MAX_SIZE:
        raise InvalidInput("size", f"must be between 0 and {MAX_SIZE}")
    files = migrations.load("tenant")
    version = files[-1].version
    with leases.held(conn, _REFILL_LEASE, ttl_s=_REFILL_LEASE_TTL_S) as held:
        if not held:
            return RefillResult(built=0, dropped_stale=0, size=size(conn, version), ran=False)
        stale = [r[0] for r in conn.execute(
            "SELECT schema_name FROM control.warm_schemas WHERE schema_version <> %s", (version,))]
        for name in stale:
            with conn.transaction():
                conn.execute("DELETE FROM control.warm_schemas WHERE schema_name = %s", (name,))
                schema.run_batch(conn, [schema.drop_schema_statement(name)])
        built = 0
        while size(conn, version) < target:
            name = schema.new_schema_name()
            with conn.transaction():
                schema.run_batch(conn, schema.build_statements(name, files))
                conn.execute("INSERT INTO control.warm_schemas (schema_name, schema_version) VALUES (%s, %s)",
                             (name, version))
            built += 1
        return RefillResult(built=built, dropped_stale=len(stale), size=size(conn, version), ran=True)
