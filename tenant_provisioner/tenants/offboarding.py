"""Offboarding: stop the tenant, export its data with COPY, then, after a retention period,
drop schema, role and secret.

Order matters and every stage can be re-run: (1) state ``offboarding``, the role's password
removed, sessions ended; (2) every table exported with ``COPY ... TO STDOUT`` (CSV with header) in one
REPEATABLE READ snapshot, plus ``manifest.json`` with row counts, to a directory or an
``s3://bucket/prefix`` location, recorded with ``drop_after = now + retention``; (3) once
``drop_after`` has passed (at once with retention 0; otherwise on a later call), everything the
role owns in other databases of the cluster dropped (``DROP OWNED``, found through the shared
catalog ``pg_shdepend``), then schema, what the role owns here (large objects, default
privileges) and role dropped and the row marked ``offboarded`` in one transaction (the row and
the audit log are kept); (4) the secret scheduled for deletion (``SECRET_RECOVERY_DAYS``). A crash
before (2) completes leaves the data in place and a re-run exports again; nothing is dropped
before the export is recorded. Exports are readable by their owner only (0700/0600): they hold
the tenant's data. `drop_due` handles each due tenant on its own and reports the failures.
"""

from __future__ import annotations

import json
import logging
import os
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
from psycopg.conninfo import make_conninfo

from tenant_provisioner import validation
from tenant_provisioner.errors import InvalidInput, PlatformError, TransientError
from tenant_provisioner.tenants import records, schema, transitions
from tenant_provisioner.tenants.events import TenantEvents
from tenant_provisioner.secrets import SecretStore
from tenant_provisioner.tenants.records import Tenant

log = logging.getLogger(__name__)

SECRET_RECOVERY_DAYS = 7
LARGE_OBJECT_CHUNK = 1 << 20
# Other databases in which the role owns objects or holds privileges (shared catalog).
_OTHER_DATABASES_OF_ROLE = """
SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid
WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = %s::regrole
  AND d.datname <> current_database()
ORDER BY d.datname
"""
MAX_RETENTION_DAYS = 365
DEFAULT_RETENTION_DAYS = 30  # what operators get unless they choose otherwise (docs/runbooks/offboarding.md)


@dataclass(frozen=True)
class DropDueResult:
    dropped: tuple[str, ...]
    failed: dict[str, str]   # tenant id -> error; the others were handled regardless

    def to_dict(self) -> dict[str, Any]:
        return {"dropped": list(self.dropped), "failed": self.failed}


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


def _private_file(path: Path) -> Any:
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _export(conn: psycopg.Connection, tenant: Tenant, folder: Path) -> dict[str, int]:
    """COPY every table of the tenant into `folder` as CSV, and its large objects as files;
    returns rows per table (and ``large_objects``: how many)."""
    rows: dict[str, int] = {}
    if conn.execute("SELECT 1 FROM pg_largeobject_metadata WHERE lomowner = %s::regrole LIMIT 1",
                    (tenant.role_name,)).fetchone():
        schema.inherit(conn, tenant.role_name)  # to read them; before the read-only snapshot
    with conn.transaction(), conn.cursor() as cur:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL statement_timeout = 0")  # a large tenant's COPY may take long
        for table in schema.tables(conn, tenant.schema_name):
            query = sql.SQL("COPY {} TO STDOUT WITH (FORMAT csv, HEADER true)").format(
                sql.Identifier(tenant.schema_name, table))
            with _private_file(folder / f"{table}.csv") as out, cur.copy(query) as copy:
                for chunk in copy:
                    out.write(chunk)
            rows[table] = cur.rowcount
        large_objects = [r[0] for r in conn.execute(
            "SELECT oid FROM pg_largeobject_metadata WHERE lomowner = %s::regrole ORDER BY oid", (tenant.role_name,))]
        if large_objects:
            (folder / "large_objects").mkdir(mode=0o700)
            rows["large_objects"] = len(large_objects)
        for oid in large_objects:
            with _private_file(folder / "large_objects" / f"{oid}.bin") as out:
                offset = 0
                while chunk := conn.execute("SELECT lo_get(%s, %s, %s)", (oid, offset, LARGE_OBJECT_CHUNK)).fetchone()[0]:
                    out.write(chunk)
                    offset += len(chunk)
    manifest = {"tenant_id": tenant.tenant_id, "schema_version": tenant.schema_version,
                "exported_at": datetime.now(timezone.utc).isoformat(), "format": "csv+header", "rows": rows}
    with _private_file(folder / "manifest.json") as out:
        out.write(json.dumps(manifest, indent=2).encode())
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
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
        return str(folder), _export(conn, tenant, folder)
    with tempfile.TemporaryDirectory(prefix="tenant-export-") as tmp:
        folder = Path(tmp) / name
        folder.mkdir(mode=0o700)
        rows = _export(conn, tenant, folder)
        location = _upload(folder, destination)
        shutil.rmtree(folder)
        return location, rows


def offboard(conn: psycopg.Connection, tenant_id: str, *, actor: str, export_to: str | None, events: TenantEvents,
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
            events.before_offboard(conn, tenant)
            transitions.begin_offboarding(conn, tenant, retention_days=retention_days, actor=actor)
            schema.apply_login(conn, tenant.role_name)
    tenant, rows = records.require(conn, tenant_id), {}
    if tenant.state == "offboarding" and tenant.export_location is None:
        if export_to is None:
            raise InvalidInput("export_to", f"tenant {tenant_id!r} has not been exported yet; name a location")
        schema.terminate_sessions(conn, tenant.role_name)
        location, rows = export_tenant(conn, tenant, export_to)
        with conn.transaction():
            transitions.record_export(conn, tenant_id, location=location, retention_days=retention_days, rows=rows,
                                      actor=actor)
    if _due(conn, tenant_id):
        drop_owned_elsewhere(conn, tenant.role_name)
    with conn.transaction():
        if _due(conn, tenant_id, for_update=True):
            schema.drop(conn, schema=tenant.schema_name, role=tenant.role_name)
            transitions.mark_offboarded(conn, tenant_id, actor=actor)
    tenant = records.require(conn, tenant_id)
    if tenant.state == "offboarded" and store is not None:
        store.delete(tenant_id, recovery_days=SECRET_RECOVERY_DAYS)
    return OffboardResult(tenant, rows)


def _due(conn: psycopg.Connection, tenant_id: str, *, for_update: bool = False) -> bool:
    return conn.execute(sql.SQL("SELECT 1 FROM control.tenants WHERE tenant_id = %s AND state = 'offboarding'"
                                " AND drop_after <= now(){}").format(sql.SQL(" FOR UPDATE" if for_update else "")),
                        (tenant_id,)).fetchone() is not None


def drop_owned_elsewhere(conn: psycopg.Connection, role: str) -> list[str]:
    """``DROP OWNED BY`` `role` in every other database where it owns objects or holds rights
    (a tenant that once reached ``postgres`` may have left large objects or TEMP-created objects
    there); connects as the same login, acting as the same role. Returns the databases cleaned."""
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
        return []
    databases = [r[0] for r in conn.execute(_OTHER_DATABASES_OF_ROLE, (role,))]
    if databases:
        schema.inherit(conn, role)  # role memberships are cluster-wide: it holds in every database
    acting_as = conn.execute("SELECT current_user").fetchone()[0]
    for name in databases:
        with psycopg.connect(make_conninfo(conn.info.dsn, dbname=name, password=conn.info.password),
                             autocommit=True, connect_timeout=10) as other:
            other.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(acting_as)))
            other.execute(schema.drop_owned_statement(role))
    return databases


def drop_due(conn: psycopg.Connection, *, actor: str, events: TenantEvents,
             store: SecretStore | None = None) -> DropDueResult:
    """Finish every offboarding whose retention has passed (the Lambda runs this daily). Each
    tenant on its own: one that cannot be dropped is reported and the others are still dropped."""
    due = [row[0] for row in conn.execute(
        "SELECT tenant_id FROM control.tenants WHERE state = 'offboarding' AND drop_after <= now()"
        " ORDER BY drop_after")]
    dropped: list[str] = []
    failed: dict[str, str] = {}
    for tenant_id in due:
        try:
            offboard(conn, tenant_id, actor=actor, export_to=None, events=events, store=store)
        except (PlatformError, psycopg.Error) as exc:
            log.exception("dropping offboarded tenant %s failed", tenant_id)
            failed[tenant_id] = f"{type(exc).__name__}: {str(exc).strip()}"
            continue
        dropped.append(tenant_id)
    return DropDueResult(tuple(dropped), failed)
