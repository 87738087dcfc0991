"""Benchmark of the database part of tenant creation and of a fleet migration.

Prints p50/p95 of ``create`` (advisory lock, role, schema, tables, explicit grants, control row,
activation: everything but Secrets Manager and Stripe) with 10 and with N (default 1,000)
tenants already present, with the schema built inline and claimed from the warm pool, and the wall time of a one-column migration across all N tenants.
Each sample creates one tenant and drops it again, so the catalog size stays at the level
measured. Runs in its own throwaway database and removes it and every role it made afterwards.

    .venv/bin/python bench/provision.py [--tenants 1000] [--samples 50] [--concurrency 4]

Targets (issue #3): p95 < 250 ms at 1,000 tenants and <= 1.5x the p95 at 10; migrate 1,000
schemas in < 30 s. Not a test: figures depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tenant_provisioner import control, migrations  # noqa: E402
from tenant_provisioner.tenants import fleet, provisioning, records, schema, warm_pool  # noqa: E402
from tenant_provisioner.runtime import compose  # noqa: E402
from tenant_provisioner.db import Database, admin_connect, tenant_group_role  # noqa: E402
from tenant_provisioner.gateway.sessions import gateway_role  # noqa: E402
from tenant_provisioner.migrations import Migration  # noqa: E402
from tenant_provisioner.tenants.provisioning import CreateRequest  # noqa: E402
from tests.support import services  # noqa: E402

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later

DB_STEPS = (provisioning.DatabaseStep(), provisioning.ActivateStep())


def _request(tenant_id: str) -> CreateRequest:
    return CreateRequest(tenant_id=tenant_id, tier="pro", admin_email="bench@example.com")


def _create(conn: psycopg.Connection, tenant_id: str) -> float:
    return lifecycle.create(conn, _request(tenant_id), actor="bench", steps=DB_STEPS).duration_ms


def _fill(db: Database, start: int, stop: int, concurrency: int) -> None:
    def work(chunk: range) -> None:
        with db.connection() as conn:
            for i in chunk:
                _create(conn, f"fill-{i:05d}")
    chunks = [range(i, stop, concurrency) for i in range(start, start + concurrency)]
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(work, chunks))


def _sample(db: Database, samples: int, *, pooled: bool) -> list[float]:
    """Create-then-drop `samples` tenants (claiming pre-built schemas when `pooled`); only the
    create is timed, not the drop or the pool refill."""
    times = []
    with db.connection() as conn:
        if pooled:
            warm_pool.refill(conn, samples)
        for i in range(samples):
            tenant_id = f"sample-{uuid.uuid4().hex[:10]}"
            times.append(_create(conn, tenant_id))
            tenant = records.require(conn, tenant_id)
            with conn.transaction():
                schema.drop(conn, schema=tenant.schema_name, role=tenant.role_name)
                conn.execute("DELETE FROM control.tenants WHERE tenant_id = %s", (tenant_id,))
    return times


def _measure(db: Database, label: str, samples: int) -> tuple[float, float]:
    built = _report(f"{label}, schema built inline", _sample(db, samples, pooled=False))
    pooled = _report(f"{label}, warm pool", _sample(db, samples, pooled=True))
    return built, pooled


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _report(label: str, times: list[float]) -> float:
    p50, p95 = _p(times, 50), _p(times, 95)
    print(f"create ({label:42}): p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   max {max(times):6.1f} ms   n={len(times)}")
    return p95


def _cleanup(admin_url: str, url: str, provisioner: str) -> None:
    group = tenant_group_role(provisioner)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        members = [r[0] for r in conn.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles r ON r.oid = m.member WHERE g.rolname = %s AND r.rolname <> %s", (group, provisioner))]
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(conninfo_to_dict(url)["dbname"])))
        for role in [*members, group, gateway_role(provisioner), provisioner]:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", help="superuser URL (default: TEST_DATABASE_URL, else a throwaway "
                                            "PostgreSQL 16.13 like the test suite's)")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    args.admin_url = args.admin_url or services.postgres_admin_url()

    name = f"bench_{uuid.uuid4().hex[:8]}"
    provisioner = f"prov_{name}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        version = conn.info.server_version
    params = conninfo_to_dict(args.admin_url)
    params["dbname"] = name
    url = make_conninfo(**params)
    try:
        with admin_connect(url) as conn:
            control.init(conn, provisioner)
        with Database(url, provisioner_role=provisioner, max_size=args.concurrency) as db:
            print(f"PostgreSQL {version // 10000}.{version % 10000}, database {name}; "
                  f"{os.cpu_count()} CPUs (shared with whatever else runs)")
            _fill(db, 0, 10, 1)
            small = _measure(db, "10 tenants present", args.samples)
            started = time.perf_counter()
            _fill(db, 10, args.tenants, args.concurrency)
            print(f"filled to {args.tenants} tenants in {time.perf_counter() - started:.1f} s")
            large = _measure(db, f"{args.tenants} tenants present", args.samples)
            with db.connection() as conn:
                relations = conn.execute("SELECT count(*) FROM pg_class").fetchone()[0]
            print(f"catalog: {relations} pg_class rows; p95 ratio {args.tenants} vs 10: "
                  f"{large[0] / small[0]:.2f}x inline, {large[1] / small[1]:.2f}x warm pool "
                  f"(targets: p95 < 250 ms at {args.tenants}, ratio <= 1.5x)")
            files = (*migrations.load("tenant"), Migration(version=migrations.latest_version("tenant") + 1,
                                                           name="bench_column",
                                                           sql="ALTER TABLE projects ADD COLUMN bench_flag boolean;"))
            report = fleet.migrate_all(db, actor="bench", concurrency=args.concurrency, files=files)
            print(f"migrate one column across {report.pending} tenants (concurrency {args.concurrency}): "
                  f"{report.seconds:.1f} s, {len(report.failed)} failed (target < 30 s)")
            again = fleet.migrate_all(db, actor="bench", concurrency=args.concurrency, files=files)
            print(f"re-run (nothing pending): {again.seconds:.2f} s")
    finally:
        _cleanup(args.admin_url, url, provisioner)


if __name__ == "__main__":
    main()
