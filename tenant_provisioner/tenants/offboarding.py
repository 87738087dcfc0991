"""Offboarding: stop the tenant, export its data with COPY, then, after a retention period,
drop schema, role and secret.

Order matters and every stage can be re-run: (1) state ``offboarding``, role NOLOGIN, sessions
ended; (2) every table exported with ``COPY ... TO STDOUT`` (CSV with header) in one
REPEATABLE READ snapshot, plus ``manifest.json`` with row counts, to a directory or an
``s3://bucket/prefix`` location, recorded with ``drop_after = now + retention``; (3) once
``drop_after`` has passed (at once with retention 0; otherwise on a later call), schema and role
dropped and the row marked ``offboarded`` in one transaction (the row and the audit log are
kept); (4) the secret scheduled for deletion (``SECRET_RECOVERY_DAYS``). A crash before (2)
completes leaves the data in place and a re-run exports again; nothing is dropped before the
export is recorded.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from tenant_provisioner import audit, validation
from tenant_provisioner.tenants import provisioning, records, schema
from tenant_provisioner.errors import InvalidInput, TenantConflict, TransientError
from tenant_provisioner.secrets import SecretStore
from tenant_provisioner.tenants.records import Tenant

SECRET_RECOVERY_DAYS = 7
MAX_RETENTION_DAYS = 365


@dataclass(frozen=True)
class OffboardResult:
    tenant: Tenant
    rows: dict[str, int]   # rows exported by this call (empty when an earlier call exported)

    def to_dict(self) -> dict[str, Any]:
        drop_after = self.tenant.drop_after.isoformat() if self.tenant.drop_after else None
        return {"tenant_id": self.tenant.tenant_id, "status": self.tenant.state,
                "export_location": self.tenant.export_location, "drop_after": drop_after, "rows": self.rows}


def _check_destination(destination: str) -> None:
    if destination.startswith("s3://"):
        bucket = destination[5:].split("/", 1)[0]
        if not bucket:
            raise InvalidInput("export_to", f"{destination!r} names no bucket")
    elif not destination.strip():
        raise InvalidInput("export_to", "must be a directory or an s3://bucket/prefix location")


def _export(conn: psycopg.Connection, tenant: Tenant, folder: Path) -> dict[str, int]:
    """COPY every table of the tenant into `folder` as CSV; returns rows per table."""
    rows: dict[str, int] = {}
    with conn.transaction(), conn.cursor() as cur:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for table in schema.tables(conn, tenant.schema_name):
            query = sql.SQL("COPY {} TO STDOUT WITH (FORMAT csv, HEADER true)").format(
                sql.Identifier(tenant.schema_name, table))
            with (folder / f"{table}.csv").open("wb") as out, cur.copy(query) as copy:
                for chunk in copy:
                    out.write(chunk)
            rows[table] = cur.rowcount
    manifest = {"tenant_id": tenant.tenant_id, "schema_version": tenant.schema_version,
                "exported_at": datetime.now(timezone.utc).isoformat(), "format": "csv+header", "rows": rows}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return rows


def _upload(folder: Path, destination: str) -> str:
    bucket, _, prefix = destination[5:].partition("/")
    key_prefix = "/".join(p for p in (prefix.strip("/"), folder.name) if p)
    client = boto3.client("s3")
    try:
        for path in sorted(folder.iterdir()):
            client.upload_file(str(path), bucket, f"{key_prefix}/{path.name}",
                               ExtraArgs={"ServerSideEncryption": "aws:kms"})
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"export upload to s3://{bucket}/{key_prefix} failed: {exc}") from exc
    return f"s3://{bucket}/{key_prefix}"


def export_tenant(conn: psycopg.Connection, tenant: Tenant, destination: str) -> tuple[str, dict[str, int]]:
    """Export to `destination` (directory or s3:// prefix) under ``<tenant>-<UTC timestamp>``."""
    name = f"{tenant.tenant_id}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    if not destination.startswith("s3://"):
        folder = Path(destination).expanduser().resolve() / name
        folder.mkdir(parents=True, exist_ok=False)
        return str(folder), _export(conn, tenant, folder)
    with tempfile.TemporaryDirectory(prefix="tenant-export-") as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        rows = _export(conn, tenant, folder)
        location = _upload(folder, destination)
        shutil.rmtree(folder)
        return location, rows


def offboard(conn: psycopg.Connection, tenant_id: str, *, actor: str, export_to: str | None,
             store: SecretStore | None = None, retention_days: int = 0) -> OffboardResult:
    """Stop, export, then drop the tenant once `retention_days` have passed since the export.

    Each call goes as far as it may: a call before the retention ends leaves the tenant
    ``offboarding`` (login disabled, data and export kept, ``drop_after`` set); a later call
    drops it. Safe to re-run after any failure; the export is made once, so `export_to` may be
    None only for a tenant already exported."""
    tenant_id = validation.tenant_id(tenant_id)
    actor = validation.actor(actor)
    if export_to is not None:
        _check_destination(export_to)
    if not 0 <= retention_days <= MAX_RETENTION_DAYS:
        raise InvalidInput("retention_days", f"must be between 0 and {MAX_RETENTION_DAYS}")
    with conn.transaction():
        tenant = records.require(conn, tenant_id, for_update=True)
        if tenant.state in ("active", "suspended", "provisioning"):
            provisioning.run_hooks("on_offboard", conn, tenant)
            schema.set_login(conn, tenant.role_name, False)
            conn.execute("UPDATE control.tenants SET state = 'offboarding', updated_at = now() WHERE tenant_id = %s",
                         (tenant_id,))
            audit.record(conn, tenant_id=tenant_id, action="tenant.offboarding", actor=actor,
                         detail={"from_state": tenant.state, "retention_days": retention_days})
    tenant, rows = records.require(conn, tenant_id), {}
    if tenant.state == "offboarding" and tenant.export_location is None:
        if export_to is None:
            raise InvalidInput("export_to", f"tenant {tenant_id!r} has not been exported yet; name a location")
        schema.terminate_sessions(conn, tenant.role_name)
        location, rows = export_tenant(conn, tenant, export_to)
        with conn.transaction():
            conn.execute("UPDATE control.tenants SET export_location = %s, updated_at = now(),"
                         " drop_after = now() + make_interval(days => %s) WHERE tenant_id = %s",
                         (location, retention_days, tenant_id))
            audit.record(conn, tenant_id=tenant_id, action="tenant.exported", actor=actor,
                         detail={"export_location": location, "rows": rows})
    with conn.transaction():
        due = conn.execute("SELECT 1 FROM control.tenants WHERE tenant_id = %s AND state = 'offboarding'"
                           " AND drop_after <= now() FOR UPDATE", (tenant_id,)).fetchone()
        if due:
            schema.drop(conn, schema=tenant.schema_name, role=tenant.role_name)
            conn.execute("UPDATE control.tenants SET state = 'offboarded', updated_at = now() WHERE tenant_id = %s",
                         (tenant_id,))
            audit.record(conn, tenant_id=tenant_id, action="tenant.offboarded", actor=actor, detail={})
    tenant = records.require(conn, tenant_id)
    if tenant.state == "offboarded" and store is not None:
        store.delete(tenant_id, recovery_days=SECRET_RECOVERY_DAYS)
    return OffboardResult(tenant, rows)


def drop_due(conn: psycopg.Connection, *, actor: str, store: SecretStore | None = None) -> list[str]:
    """Finish every offboarding whose retention has passed (the Lambda runs this daily)."""
    due = [row[0] for row in conn.execute(
        "SELECT tenant_id FROM control.tenants WHERE state = 'offboarding' AND drop_after <= now()"
        " ORDER BY drop_after")]
    return [offboard(conn, tenant_id, actor=actor, export_to=None, store=store).tenant.tenant_id
            for tenant_id in due]
