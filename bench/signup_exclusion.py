"""What the hostile-tenant fixes (issue 10) add to a signup, measured in isolation.

Interleaved, on one connection acting as a provisioner role: the per-id mutual exclusion as it
was (an advisory lock, whose keys every tenant can hold) and as it is (a lease row in the
unlogged ``control.leases``, `tenant_provisioner.leases`). Also the cost of the provisioner
inheriting each new tenant role, which is why signups do not do it (`schema.inherit` runs only
at offboarding or for a tenant owning large objects): it grows with the number of memberships.
Prints p50/p95. Not a test; runs in a throwaway database of the suite's PostgreSQL 16.13 (or
``--admin-url``) and removes what it made.

    .venv/bin/python bench/signup_exclusion.py [--samples 400]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tenant_provisioner import leases  # noqa: E402
from tests.support import services  # noqa: E402

OLD_LOCK_NAMESPACE = 32330


def _quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", help="superuser URL (default: TEST_DATABASE_URL, else a throwaway 16.13)")
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()
    admin_url = args.admin_url or services.postgres_admin_url()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    role = f"prov_{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN CREATEROLE").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
    tenants = [f"t_{name}_{i}" for i in range(args.samples)]
    timings: dict[str, list[float]] = {"advisory lock + unlock (before)": [], "lease acquire + release (now)": [],
                                       "GRANT tenant TO provisioner (not at signup)": []}
    try:
        with psycopg.connect(make_conninfo(admin_url, dbname=name), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA control AUTHORIZATION {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            conn.execute("CREATE UNLOGGED TABLE control.leases (name text PRIMARY KEY, holder text NOT NULL,"
                         " expires_at timestamptz NOT NULL)")
            for tenant in tenants:
                started = time.perf_counter()
                with conn.transaction():
                    conn.execute("SELECT set_config('lock_timeout', '30000ms', true)")
                    conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (OLD_LOCK_NAMESPACE, tenant))
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (OLD_LOCK_NAMESPACE, tenant))
                timings["advisory lock + unlock (before)"].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                with leases.held(conn, f"create:{tenant}", ttl_s=120):
                    pass
                timings["lease acquire + release (now)"].append((time.perf_counter() - started) * 1000)
                with conn.transaction():
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(tenant)))
                    started = time.perf_counter()
                    conn.execute(sql.SQL("GRANT {} TO CURRENT_USER WITH INHERIT TRUE, SET FALSE").format(
                        sql.Identifier(tenant)))
                    timings["GRANT tenant TO provisioner (not at signup)"].append(
                        (time.perf_counter() - started) * 1000)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for dropped in (*tenants, role):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(dropped)))
    for label, values in timings.items():
        print(f"{label:46}: p50 {_quantile(values, 50):5.2f} ms   p95 {_quantile(values, 95):5.2f} ms   "
              f"n={len(values)}")


if __name__ == "__main__":
    main()
