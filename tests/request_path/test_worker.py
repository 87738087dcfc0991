"""The worker's queue and jobs against real PostgreSQL: fair across tenants, at-least-once with
idempotent handlers, graceful shutdown that loses no job, probes for Kubernetes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import psycopg
import pytest

from services.worker.handlers import evaluate_budgets, rollup_usage
from tenant_provisioner.gateway.jobs import EVALUATE_BUDGETS, ROLLUP_USAGE, JobQueue
from tenant_provisioner.gateway.sessions import ControlPlane, TenantContext, TenantPools
from tenant_provisioner.tiers import load_tiers
from tests.conftest import REPO_ROOT
from tests.support.processes import wait_until_ready


@pytest.fixture(scope="module")
def tenants(platform):
    for tenant_id in ("heavy-co", "light-co", "budget-co"):
        platform.tenant(tenant_id, "pro")
    return platform


def _run(coro):
    return asyncio.run(coro)


async def _with_queue(platform, body):
    control = ControlPlane(platform.url, provisioner_role=platform.provisioner_role)
    await control.open()
    try:
        return await body(JobQueue(control))
    finally:
        await control.close()


def _clear_jobs(platform):
    with psycopg.connect(platform.url, autocommit=True) as conn:
        conn.execute("DELETE FROM control.jobs")


def test_one_tenants_backlog_does_not_delay_anothers_first_job(tenants):
    _clear_jobs(tenants)

    async def body(queue: JobQueue):
        for n in range(300):
            await queue.enqueue("heavy-co", "noop", {"n": n})
        order = [(await queue.claim(60)).tenant.tenant_id for _ in range(3)]
        await queue.enqueue("light-co", "noop", {"n": 0})
        order += [(await queue.claim(60)).tenant.tenant_id for _ in range(3)]
        return order

    order = _run(_with_queue(tenants, body))
    assert order[:3] == ["heavy-co"] * 3
    # Enqueued behind 297 of heavy-co's jobs, light-co's first job is among the next two claimed.
    assert "light-co" in order[3:5], order


def test_dedupe_keeps_one_queued_evaluation_per_tenant(tenants):
    _clear_jobs(tenants)

    async def body(queue: JobQueue):
        return [await queue.enqueue("light-co", EVALUATE_BUDGETS, dedupe_key="all") for _ in range(5)]

    ids = _run(_with_queue(tenants, body))
    assert ids[0] is not None and ids[1:] == [None] * 4


def test_a_job_whose_worker_died_runs_again_after_its_lease(tenants):
    _clear_jobs(tenants)

    async def body(queue: JobQueue):
        job_id = await queue.enqueue("light-co", "noop")
        first = await queue.claim(2)      # the worker "dies": never completes it
        assert await queue.claim(2) is None  # leased: nobody else takes it meanwhile
        await asyncio.sleep(2.2)
        again = await queue.claim(60)
        await queue.complete(again)
        return job_id, first, again

    job_id, first, again = _run(_with_queue(tenants, body))
    assert first.id == again.id == job_id and again.attempts == 2


def _seed_spend(platform, api_key_tenant: str) -> None:
    with psycopg.connect(platform.url, autocommit=True) as conn:
        schema = conn.execute("SELECT schema_name FROM control.tenants WHERE tenant_id = %s",
                              (api_key_tenant,)).fetchone()[0]
        conn.execute(f'SET search_path = "{schema}"')
        conn.execute("INSERT INTO projects (name) VALUES ('p') ON CONFLICT DO NOTHING")
        conn.execute("INSERT INTO budgets (project_id, amount_usd) SELECT id, 10 FROM projects WHERE name = 'p'")
        conn.execute("INSERT INTO ai_usage_records (project_id, provider, model, cost_usd, occurred_at)"
                     " SELECT id, 'openai', 'gpt', 12.5, now() FROM projects WHERE name = 'p'")


def test_budget_evaluation_is_idempotent_and_runs_as_the_tenant_role(tenants):
    _clear_jobs(tenants)
    _seed_spend(tenants, "budget-co")

    async def body():
        control = ControlPlane(tenants.url, provisioner_role=tenants.provisioner_role)
        await control.open()
        pools = TenantPools(tenants.url, catalog=load_tiers(), deriver=None)
        try:
            queue = JobQueue(control)
            await queue.enqueue("budget-co", EVALUATE_BUDGETS)
            job = await queue.claim(60)
            counts = []
            for _ in range(3):  # at-least-once: the same job delivered three times
                async with pools.session(job.tenant) as conn:
                    role = (await (await conn.execute("SELECT current_user")).fetchone())[0]
                    await evaluate_budgets(conn, job.payload)
                    counts.append((await (await conn.execute(
                        "SELECT kind, count(*) FROM alerts GROUP BY kind ORDER BY kind")).fetchall()))
            return role, job, counts
        finally:
            await pools.close()
            await control.close()

    role, job, counts = _run(body())
    assert job.tenant.tenant_id == "budget-co" and role == job.tenant.role_name
    assert counts[0] == [("budget_exceeded", 1), ("budget_warning", 1)]
    assert counts[1] == counts[2] == counts[0]


def test_worker_probes_and_graceful_shutdown_lose_no_job(tenants):
    _clear_jobs(tenants)
    settings = tenants.settings(SHUTDOWN_GRACE_SECONDS=5, WORKER_CONCURRENCY=2)
    env = {**os.environ, "DATABASE_URL": tenants.url, "REDIS_URL": tenants.redis_url,
           "TENANT_PROVISIONER_ROLE": tenants.provisioner_role, "HOST": "127.0.0.1",
           "HEALTH_PORT": str(settings.health_port), "SHUTDOWN_GRACE_SECONDS": "5", "WORKER_CONCURRENCY": "2"}

    async def enqueue(queue: JobQueue):
        for tenant_id in ("heavy-co", "light-co", "budget-co"):
            for n in range(20):
                await queue.enqueue(tenant_id, EVALUATE_BUDGETS, {"n": n})

    _run(_with_queue(tenants, enqueue))
    proc = subprocess.Popen([sys.executable, "-m", "services.worker"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{settings.health_port}"
        wait_until_ready(f"{url}/readyz", proc, what="worker")
        assert httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with psycopg.connect(tenants.url, autocommit=True) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM control.jobs GROUP BY state").fetchall())
    assert states.get("running", 0) == 0 and states.get("failed", 0) == 0, states
    assert states.get("done", 0) + states.get("queued", 0) == 60


def test_usage_bursts_queue_one_evaluation_and_the_last_write_is_still_evaluated(tenants):
    _clear_jobs(tenants)
    tenant = TenantContext(tenant_id="light-co", tier="pro", state="active", role_name="", schema_name="",
                           key_id="", key_prefix="")

    async def drain(queue: JobQueue) -> list[str]:
        kinds = []
        while (job := await queue.claim(60)) is not None:
            kinds.append(job.kind)
        return sorted(kinds)

    async def body(queue: JobQueue):
        queue.debounce_seconds = 0.5
        await queue.after_usage(tenant)          # leading edge: queued at once
        first = await drain(queue)               # the worker starts on them
        for _ in range(20):                      # more writes meanwhile
            await queue.after_usage(tenant)
        meanwhile = await drain(queue)
        await asyncio.sleep(0.8)                 # trailing edge: the last writes get their jobs
        return first, meanwhile, await drain(queue)

    first, meanwhile, trailing = _run(_with_queue(tenants, body))
    assert first == trailing == sorted([EVALUATE_BUDGETS, ROLLUP_USAGE]) and meanwhile == []


def test_usage_rollup_recomputes_whole_days_and_is_idempotent(tenants):
    _seed_spend(tenants, "budget-co")

    async def body():
        pools = TenantPools(tenants.url, catalog=load_tiers(), deriver=None)
        control = ControlPlane(tenants.url, provisioner_role=tenants.provisioner_role)
        await control.open()
        try:
            with psycopg.connect(tenants.url, autocommit=True) as conn:
                row = conn.execute("SELECT tenant_id, tier, state, role_name, schema_name FROM control.tenants"
                                   " WHERE tenant_id = 'budget-co'").fetchone()
            tenant = TenantContext(*row, key_id="", key_prefix="")
            results = []
            for _ in range(2):
                async with pools.session(tenant) as conn:
                    await rollup_usage(conn, {})
                    results.append(await (await conn.execute(
                        "SELECT day, requests, cost_usd FROM usage_daily ORDER BY day")).fetchall())
                    expected = await (await conn.execute(
                        "SELECT count(*), sum(cost_usd) FROM ai_usage_records")).fetchone()
            return results, expected
        finally:
            await pools.close()
            await control.close()

    (first, second), (count, total) = _run(body())
    assert first == second and sum(r[1] for r in first) == count and sum(r[2] for r in first) == total
