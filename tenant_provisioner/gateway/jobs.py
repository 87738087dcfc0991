"""The durable tenant job queue in PostgreSQL (``control.jobs``), claimed with SKIP LOCKED.

Why PostgreSQL and not Redis Streams: the jobs read and write tenant rows in the same database,
the queue is as durable as the data (Multi-AZ, backups, PITR) — the limiter's Redis is a cache
with ``noeviction`` that we do not want to make a system of record — and fairness across tenants
is one ``ORDER BY`` instead of one stream per tenant plus a scheduler.

- Fair: a job's ``fair_rank`` is ``max(its tenant's last queued rank + 1, the lowest queued rank)``
  — virtual-time round robin: a tenant with 10,000 queued jobs holds ranks r…r+9,999, another
  tenant's first job gets rank r and runs after at most one job of each busier tenant.
- At-least-once: a claim sets a lease (``locked_until``); a job whose worker died is claimed again
  when the lease passes. Handlers are idempotent (they check what they already did).
- Deduplicated: at most one *queued* job per (tenant, kind, dedupe_key), so a burst of usage
  writes queues one budget evaluation, not thousands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from tenant_provisioner.gateway.sessions import ControlPlane, TenantContext

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
EVALUATE_BUDGETS = "evaluate_budgets"
ROLLUP_USAGE = "rollup_usage"

_ENQUEUE = """
INSERT INTO control.jobs (tenant_id, kind, payload, dedupe_key, fair_rank)
SELECT %(tenant)s, %(kind)s, %(payload)s, %(dedupe)s, greatest(
    coalesce((SELECT max(fair_rank) FROM control.jobs
              WHERE tenant_id = %(tenant)s AND state IN ('queued', 'running')), 0) + 1,
    coalesce((SELECT min(fair_rank) FROM control.jobs WHERE state IN ('queued', 'running')), 1))
ON CONFLICT (tenant_id, kind, dedupe_key) WHERE state = 'queued' AND dedupe_key IS NOT NULL DO NOTHING
RETURNING id
"""

_CLAIM = """
UPDATE control.jobs j
SET state = 'running', attempts = j.attempts + 1, locked_until = now() + make_interval(secs => %s)
FROM control.tenants t
WHERE t.tenant_id = j.tenant_id AND j.id = (
    SELECT id FROM control.jobs
    WHERE state IN ('queued', 'running')
      AND ((state = 'queued' AND run_after <= now()) OR (state = 'running' AND locked_until < now()))
    ORDER BY fair_rank, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING j.id, j.kind, j.payload, j.attempts, t.tenant_id, t.tier, t.state, t.role_name, t.schema_name
"""


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    tenant: TenantContext


class JobQueue:
    """`after_usage` debounces per tenant: at most one enqueue per `debounce_seconds` per instance,
    plus one trailing enqueue at the end of the window, so the last write of a burst is always
    evaluated and a busy tenant costs one queue write per second, not one per usage record."""

    def __init__(self, control: ControlPlane, *, debounce_seconds: float = 1.0) -> None:
        self.control = control
        self.debounce_seconds = debounce_seconds
        self._last: dict[str, float] = {}
        self._trailing: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def enqueue(self, tenant_id: str, kind: str, payload: dict[str, Any] | None = None,
                      dedupe_key: str | None = None) -> int | None:
        """The new job's id, or None when an identical job is already queued."""
        async with self.control.connection() as conn:
            row = await (await conn.execute(_ENQUEUE, {"tenant": tenant_id, "kind": kind,
                                                       "payload": Jsonb(payload or {}),
                                                       "dedupe": dedupe_key})).fetchone()
        return int(row[0]) if row else None

    async def after_usage(self, tenant: TenantContext) -> None:
        tenant_id, now = tenant.tenant_id, time.monotonic()
        since = now - self._last.get(tenant_id, -self.debounce_seconds)
        if since >= self.debounce_seconds:
            self._last[tenant_id] = now
            if len(self._last) > 10_000:
                self._last = {t: at for t, at in self._last.items() if now - at < self.debounce_seconds}
            await self._evaluate(tenant_id)
        elif tenant_id not in self._trailing:
            self._trailing[tenant_id] = asyncio.get_running_loop().call_later(
                self.debounce_seconds - since, self._start_trailing, tenant_id)

    async def _evaluate(self, tenant_id: str) -> None:
        """What new usage triggers: a budget evaluation and a rollup (each queued once at most)."""
        await self.enqueue(tenant_id, EVALUATE_BUDGETS, dedupe_key="all")
        await self.enqueue(tenant_id, ROLLUP_USAGE, dedupe_key="recent")

    def _start_trailing(self, tenant_id: str) -> None:
        self._trailing.pop(tenant_id, None)
        self._last[tenant_id] = time.monotonic()
        task = asyncio.get_running_loop().create_task(self._evaluate_logged(tenant_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _evaluate_logged(self, tenant_id: str) -> None:
        try:
            await self._evaluate(tenant_id)
        except Exception:  # a background enqueue has no request to fail; the next write retries
            log.warning("budget evaluation enqueue failed", exc_info=True,
                        extra={"fields": {"tenant_id": tenant_id}})

    async def flush(self) -> None:
        """On shutdown: enqueue the evaluations still waiting for their window."""
        for tenant_id, handle in list(self._trailing.items()):
            handle.cancel()
            self._trailing.pop(tenant_id, None)
            await self._evaluate_logged(tenant_id)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def claim(self, lease_seconds: float) -> Job | None:
        async with self.control.connection() as conn:
            row = await (await conn.execute(_CLAIM, (lease_seconds,))).fetchone()
        if row is None:
            return None
        job_id, kind, payload, attempts, tenant_id, tier, state, role_name, schema_name = row
        return Job(id=job_id, kind=kind, payload=payload, attempts=attempts, tenant=TenantContext(
            tenant_id=tenant_id, tier=tier, state=state, role_name=role_name, schema_name=schema_name,
            key_id="", key_prefix=""))

    async def complete(self, job: Job) -> None:
        async with self.control.connection() as conn:
            await conn.execute("UPDATE control.jobs SET state = 'done', finished_at = now(), locked_until = NULL"
                               " WHERE id = %s AND state = 'running'", (job.id,))

    async def retry_later(self, job: Job, error: str, *, delay_seconds: float) -> None:
        """Back to the queue after `delay_seconds`, or ``failed`` after `MAX_ATTEMPTS`."""
        async with self.control.connection() as conn:
            await conn.execute(
                "UPDATE control.jobs SET state = CASE WHEN attempts >= %s THEN 'failed' ELSE 'queued' END,"
                " finished_at = CASE WHEN attempts >= %s THEN now() END, locked_until = NULL,"
                " run_after = now() + make_interval(secs => %s), last_error = left(%s, 500)"
                " WHERE id = %s AND state = 'running'",
                (MAX_ATTEMPTS, MAX_ATTEMPTS, delay_seconds, error, job.id))

    async def release(self, job: Job) -> None:
        """Give an unfinished job back at once (graceful shutdown), without counting the attempt."""
        async with self.control.connection() as conn:
            await conn.execute("UPDATE control.jobs SET state = 'queued', locked_until = NULL,"
                               " attempts = greatest(attempts - 1, 0) WHERE id = %s AND state = 'running'",
                               (job.id,))

    async def give_up(self, job: Job, reason: str) -> None:
        async with self.control.connection() as conn:
            await conn.execute("UPDATE control.jobs SET state = 'failed', finished_at = now(), locked_until = NULL,"
                               " last_error = %s WHERE id = %s", (reason, job.id))
