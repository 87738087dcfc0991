"""Fingerprints of the shared database: per tenant, its schema version and, per table, the row
count and an order-independent checksum of the rows.

A restore drill compares the fingerprint of a restored copy with the source's at the restore
point. The source keeps changing while the drill runs, so the source is fingerprinted twice, just
before and just after the restore point: a tenant whose two fingerprints agree held exactly that
state at the restore point and must match the restored copy; a tenant written in between cannot be
compared exactly and is reported as such (never silently passed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

_TENANTS = """
SELECT tenant_id, schema_name, schema_version FROM control.tenants
WHERE state <> 'offboarded' ORDER BY tenant_id
"""
_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename"
# md5 of each row's text form, sorted: independent of physical order, changed by any column change.
_TABLE_FINGERPRINT = sql.SQL(
    "SELECT count(*), md5(coalesce(string_agg(h, '' ORDER BY h), '')) "
    "FROM (SELECT md5(t::text) AS h FROM {}.{} AS t) AS rows")


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    checksum: str


@dataclass(frozen=True)
class TenantFingerprint:
    schema_name: str
    schema_version: int
    tables: dict[str, TableFingerprint] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables.values())


@dataclass(frozen=True)
class Fingerprint:
    """The whole database as one consistent snapshot saw it at ``taken_at``."""

    taken_at: datetime
    control_version: int
    tenants: dict[str, TenantFingerprint]

    def to_json(self) -> dict[str, Any]:
        return {"taken_at": self.taken_at.isoformat(), "control_version": self.control_version,
                "tenants": {tenant_id: asdict(tenant) for tenant_id, tenant in self.tenants.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Fingerprint":
        return cls(taken_at=datetime.fromisoformat(data["taken_at"]), control_version=int(data["control_version"]),
                   tenants={tenant_id: TenantFingerprint(
                       schema_name=tenant["schema_name"], schema_version=int(tenant["schema_version"]),
                       tables={name: TableFingerprint(**table) for name, table in tenant["tables"].items()})
                       for tenant_id, tenant in data["tenants"].items()})


def take(conn: psycopg.Connection) -> Fingerprint:
    """Fingerprint every tenant (not yet dropped) in ONE repeatable-read, read-only snapshot.

    ``conn`` must be able to read every tenant schema (the provisioner role, or the RDS master
    user on a restored copy). Cost: one scan of every tenant table.
    """
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        taken_at = conn.execute("SELECT statement_timestamp()").fetchone()[0]
        control_version = conn.execute("SELECT coalesce(max(version), 0) FROM control.schema_migrations").fetchone()[0]
        tenants: dict[str, TenantFingerprint] = {}
        for tenant_id, schema_name, schema_version in conn.execute(_TENANTS).fetchall():
            tables = {}
            for (table,) in conn.execute(_TABLES, (schema_name,)).fetchall():
                rows, checksum = conn.execute(
                    _TABLE_FINGERPRINT.format(sql.Identifier(schema_name), sql.Identifier(table))).fetchone()
                tables[table] = TableFingerprint(rows=rows, checksum=checksum)
            tenants[tenant_id] = TenantFingerprint(schema_name=schema_name, schema_version=schema_version,
                                                   tables=tables)
    return Fingerprint(taken_at=taken_at, control_version=control_version, tenants=tenants)


@dataclass
class Comparison:
    """What the restored copy showed against the source at the restore point."""

    tenants_expected: int = 0
    tenants_restored: int = 0
    tenants_verified: int = 0          # schema version and every table's rows and checksum matched
    tenants_written_during_capture: list[str] = field(default_factory=list)   # compared by version only
    tables_verified: int = 0
    rows_verified: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "verified": self.verified}


def compare(before: Fingerprint, after: Fingerprint, restored: Fingerprint) -> Comparison:
    """Check ``restored`` against the source as ``before``/``after`` (taken around the restore point)
    bracket it. Tenants that exist in both source fingerprints must exist in the copy at the same
    schema version; those whose fingerprints agree must match table for table."""
    result = Comparison(tenants_expected=len(before.tenants), tenants_restored=len(restored.tenants))
    if restored.control_version != before.control_version:
        result.problems.append(f"control schema at version {restored.control_version}, "
                               f"source was at {before.control_version}")
    for tenant_id in sorted(set(restored.tenants) - set(before.tenants) - set(after.tenants)):
        result.problems.append(f"{tenant_id}: in the copy but never in the source")
    for tenant_id, expected in sorted(before.tenants.items()):
        got = restored.tenants.get(tenant_id)
        if got is None:
            if tenant_id in after.tenants:   # dropped in between is a legitimate state at the restore point
                result.problems.append(f"{tenant_id}: missing from the copy")
            continue
        stable = after.tenants.get(tenant_id) == expected
        if not stable:
            result.tenants_written_during_capture.append(tenant_id)
            if got.schema_version not in {expected.schema_version, after.tenants.get(tenant_id, expected).schema_version}:
                result.problems.append(f"{tenant_id}: schema version {got.schema_version}, "
                                       f"source was at {expected.schema_version}")
            continue
        problems = _table_problems(tenant_id, expected, got)
        result.problems += problems
        if not problems:
            result.tenants_verified += 1
            result.tables_verified += len(expected.tables)
            result.rows_verified += expected.rows
    return result


def _table_problems(tenant_id: str, expected: TenantFingerprint, got: TenantFingerprint) -> list[str]:
    problems = []
    if got.schema_version != expected.schema_version:
        problems.append(f"{tenant_id}: schema version {got.schema_version}, source was at {expected.schema_version}")
    for table in sorted(set(expected.tables) | set(got.tables)):
        want, have = expected.tables.get(table), got.tables.get(table)
        if want is None or have is None:
            problems.append(f"{tenant_id}.{table}: {'missing from the copy' if have is None else 'not in the source'}")
        elif want.rows != have.rows:
            problems.append(f"{tenant_id}.{table}: {have.rows} rows, source had {want.rows}")
        elif want.checksum != have.checksum:
            problems.append(f"{tenant_id}.{table}: same {want.rows} rows but different content")
    return problems
