"""`make loadtest`: the tenant request path under 10, 50 and 200 concurrent users, against the
floor (the same routes on one shared pool, no keys, tenancy or limiter), on 127.0.0.1 only.

It starts (or finds) PostgreSQL 16 and Redis like the tests do, makes a fresh database, seeds
tenants across every tier (keys, projects, budgets) and a floor schema with the same data, then
for each target starts the server (``python -m services.api`` / ``python -m bench.floor``) and runs
locust headless (FastHttpUser, bench/locustfile.py) once per stage. Per stage it prints req/s,
p50/p95/p99 (reads, and all requests), the error rate (anything but 2xx and the intended 429s),
the 429 share per tier, and checks admission: per tenant, requests the limiter admitted (its own
Redis counter) ≤ rate × stage time + burst. Figures, never assertions: the exit code is 0 unless
the run itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.floor import FLOOR_SCHEMA  # noqa: E402
from tenant_provisioner import control, migrations  # noqa: E402
from tenant_provisioner.db import Database, admin_connect  # noqa: E402
from tenant_provisioner.gateway import keys  # noqa: E402
from tenant_provisioner.limits.limiter import TenantKeys  # noqa: E402
from tenant_provisioner.runtime import compose  # noqa: E402
from tenant_provisioner.tenants.provisioning import CreateRequest  # noqa: E402
from tenant_provisioner.tiers import load_tiers  # noqa: E402
from tests.support import databases, services  # noqa: E402
from tests.support.processes import wait_until_ready  # noqa: E402

# A customer base: many starters, fewer pros, a few business tenants (weight = share of users).
TIER_MIX = {"starter": (12, 1.0), "pro": (6, 1.5), "business": (2, 3.0)}
PROJECTS_PER_TENANT = 5
USAGE_ROWS_PER_PROJECT = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(url: str, role: str) -> list[dict]:
    """Tenants of every tier with one key, projects, a budget and some usage history each."""
    plan = []
    lifecycle = compose.lifecycle()   # no Stripe, no Redis: billing skipped for load-test tenants
    with Database(url, provisioner_role=role, max_size=1) as db, db.connection() as conn:
        for tier, (count, weight) in TIER_MIX.items():
            for n in range(count):
                tenant_id = f"lt-{tier}-{n:02d}"
                tenant = lifecycle.create(conn, CreateRequest.parse({"tenant_id": tenant_id, "tier": tier,
                                                                     "admin_email": "lt@example.com"}),
                                          actor="loadtest").tenant
                issued = keys.create(conn, tenant_id, name="loadtest", actor="loadtest")
                plan.append({"tenant_id": tenant_id, "tier": tier, "weight": weight, "key": issued.api_key,
                             "project_ids": fill_schema(conn, tenant.schema_name)})
    return plan


def fill_schema(conn: psycopg.Connection, schema: str) -> list[int]:
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
        ids = [conn.execute("INSERT INTO projects (name) VALUES (%s) RETURNING id", (f"project-{n}",)).fetchone()[0]
               for n in range(PROJECTS_PER_TENANT)]
        conn.execute("INSERT INTO budgets (amount_usd) VALUES (1000)")
        conn.execute("""INSERT INTO ai_usage_records (project_id, provider, model, input_tokens, output_tokens,
                                                       cost_usd, occurred_at)
                        SELECT p, 'openai', 'gpt-4o', 1000, 200, 0.01, now() - (g || ' minutes')::interval
                        FROM unnest(%s::bigint[]) p, generate_series(1, %s) g""", (ids, USAGE_ROWS_PER_PROJECT))
    return ids


def seed_floor(admin_url: str) -> list[int]:
    """One plain schema with the tenant tables, as the floor's shared pool sees it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(FLOOR_SCHEMA)))
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(FLOOR_SCHEMA)))
            for migration in migrations.load("tenant"):
                conn.execute(migration.sql)
        return fill_schema(conn, FLOOR_SCHEMA)


def admitted(client: redis.Redis, plan: list[dict], prefix: str) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)
    for tenant in plan:
        pipe.hget(TenantKeys.of(tenant["tenant_id"], prefix).quota, "u")
    return {t["tenant_id"]: int(v or 0) for t, v in zip(plan, pipe.execute())}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants (granian serves from a child
    process): a load-independent cost, unlike req/s on a busy machine."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    family, total = {pid}, 0.0
    changed = True
    while changed:
        changed = False
        for child, (parent, _) in stats.items():
            if parent in family and child not in family:
                family.add(child)
                changed = True
    return sum(stats[p][1] for p in family if p in stats)


def run_stage(url: str, plan: list[dict], users: int, seconds: int, workdir: Path, label: str) -> dict:
    plan_file, out_file = workdir / f"plan-{label}.json", workdir / f"out-{label}-{users}.json"
    plan_file.write_text(json.dumps({"tenants": plan}))
    env = {**os.environ, "LOADTEST_PLAN": str(plan_file), "LOADTEST_OUT": str(out_file)}
    started = time.time()
    subprocess.run([sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
                    "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", url, "--only-summary",
                    "--stop-timeout", "3", "--loglevel", "ERROR", "--exit-code-on-error", "0"],
                   env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    records = json.loads(out_file.read_text())
    elapsed = max(r[5] for r in records) - min(r[5] - r[4] / 1000 for r in records) if records else seconds
    return {"records": records, "elapsed": elapsed, "started": started}


def summarize(stage: dict) -> dict:
    records, elapsed = stage["records"], stage["elapsed"]
    reads = [r[4] for r in records if r[2] == "read" and r[3] != 429]
    every = [r[4] for r in records]
    errors = [r for r in records if not (200 <= r[3] < 300 or r[3] == 429)]
    per_tier: dict[str, list[int]] = {}
    for r in records:
        per_tier.setdefault(r[1], [0, 0])
        per_tier[r[1]][0] += 1
        per_tier[r[1]][1] += r[3] == 429
    return {"requests": len(records), "rps": len(records) / elapsed,
            "admitted_rps": sum(1 for r in records if r[3] != 429) / elapsed,
            "read_p50": pct(reads, 50), "read_p95": pct(reads, 95), "read_p99": pct(reads, 99),
            "all_p50": pct(every, 50), "all_p95": pct(every, 95), "all_p99": pct(every, 99),
            "errors": len(errors), "error_rate": len(errors) / max(1, len(records)),
            "error_statuses": sorted({r[3] for r in errors}),
            "share_429": {tier: n429 / max(1, n) for tier, (n, n429) in sorted(per_tier.items())}}


def start_server(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], env=env, cwd=ROOT, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default="10,50,200", help="concurrent users per stage")
    parser.add_argument("--seconds", type=int, default=20, help="length of each stage")
    parser.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn")
    parser.add_argument("--targets", default="tenant,floor", help="tenant, floor or both")
    parser.add_argument("--wait", default="0.2,0.6", help="think time between a user's requests (min,max s)")
    args = parser.parse_args()
    stages = [int(s) for s in args.stages.split(",")]
    wait_min, wait_max = args.wait.split(",")
    admin_url, redis_url = services.postgres_admin_url(), services.redis_url()
    url = databases.create_database(admin_url, prefix="loadtest")
    role = f"lt_{uuid.uuid4().hex[:8]}"
    prefix = f"loadtest:{uuid.uuid4().hex[:8]}:"
    catalog = load_tiers()
    workdir = Path(tempfile.mkdtemp(prefix="loadtest-"))
    print(f"loadtest: database {url.rsplit('/', 1)[-1]}, logs in {workdir}", flush=True)
    try:
        with admin_connect(url) as conn:
            control.init(conn, role)
        plan = seed(url, role)
        floor_projects = seed_floor(url)
        floor_plan = [{"tenant_id": "floor", "tier": "floor", "weight": 1, "key": None, "project_ids": floor_projects}]
        rclient = redis.Redis.from_url(redis_url)
        base_env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "TENANT_PROVISIONER_ROLE": role,
                    "REDIS_KEY_PREFIX": prefix, "HOST": "127.0.0.1", "LOG_LEVEL": "INFO", "SERVER": args.server,
                    "SHUTDOWN_GRACE_SECONDS": "5", "SERVICE_REPLICAS": "1", "LOADTEST_WAIT_MIN": wait_min, "LOADTEST_WAIT_MAX": wait_max}
        results: dict[str, list[tuple[int, dict, dict]]] = {}
        for target in args.targets.split(","):
            port = free_port()
            env = {**base_env, "PORT": str(port)}
            command = ["services.api"] if target == "tenant" else ["bench.floor"]
            proc = start_server(command, env, workdir / f"{target}.log")
            try:
                wait_until_ready(f"http://127.0.0.1:{port}/healthz", proc, what=target, seconds=120,
                                 see=str(workdir / f"{target}.log"))
                target_plan = plan if target == "tenant" else floor_plan
                results[target] = []
                for users in stages:
                    before, cpu_before = admitted(rclient, plan, prefix), cpu_seconds(proc.pid)
                    stage = run_stage(f"http://127.0.0.1:{port}", target_plan, users, args.seconds, workdir, target)
                    after, cpu_used = admitted(rclient, plan, prefix), cpu_seconds(proc.pid) - cpu_before
                    over = []
                    if target == "tenant":
                        for tenant in plan:
                            tier = catalog.get(tenant["tier"])
                            got = after[tenant["tenant_id"]] - before[tenant["tenant_id"]]
                            bound = tier.rate_per_second * (stage["elapsed"] + 1) + tier.burst
                            if got > bound:
                                over.append((tenant["tenant_id"], got, round(bound)))
                    summary = summarize(stage)
                    summary["cpu_ms_per_request"] = cpu_used * 1000 / max(1, summary["requests"])
                    results[target].append((users, summary, {"over_admitted": over}))
                    print(f"  {target:6} {users:4} users: done", flush=True)
            finally:
                stop(proc)
        report(results, args)
    finally:
        databases.drop_database(admin_url, url, extra_roles=(f"{role}_gateway", f"{role}_tenants", role))
    return 0


def report(results: dict, args: argparse.Namespace) -> None:
    print(f"\nload test: {args.seconds}s per stage, think time {args.wait}s, server {args.server}, 127.0.0.1\n")
    print(f"machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| target | users | req/s | admitted req/s | server CPU ms/req | read p50 / p95 / p99 ms "
          "| all p50 / p95 / p99 ms | errors | 429 share per tier | over-admitted tenants |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- |")
    for target, stages in results.items():
        for users, s, extra in stages:
            share = ", ".join(f"{tier} {v:.0%}" for tier, v in s["share_429"].items())
            over = "n/a" if target == "floor" else (str(len(extra["over_admitted"])) + (
                f" {extra['over_admitted'][:3]}" if extra["over_admitted"] else ""))
            print(f"| {target} | {users} | {s['rps']:.0f} | {s['admitted_rps']:.0f} | {s['cpu_ms_per_request']:.2f} | "
                  f"{s['read_p50']:.1f} / {s['read_p95']:.1f} / {s['read_p99']:.1f} | "
                  f"{s['all_p50']:.1f} / {s['all_p95']:.1f} / {s['all_p99']:.1f} | "
                  f"{s['errors']} ({s['error_rate']:.2%}){' ' + str(s['error_statuses']) if s['errors'] else ''} | "
                  f"{share} | {over} |")
    if "tenant" in results and "floor" in results:
        print()
        for (users, tenant, _), (_, floor, _) in zip(results["tenant"], results["floor"]):
            print(f"{users:4} users: tenant path / floor throughput = {tenant['rps'] / floor['rps']:.0%} "
                  f"(admitted only: {tenant['admitted_rps'] / floor['rps']:.0%}); server CPU per request: floor / "
                  f"tenant = {floor['cpu_ms_per_request'] / tenant['cpu_ms_per_request']:.0%}")


if __name__ == "__main__":
    sys.exit(main())
