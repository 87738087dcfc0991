"""The worker loop: claim a job fairly, run it as the tenant's role, mark it done.

``concurrency`` tasks each claim one job at a time. On SIGTERM the worker stops claiming,
gives running jobs ``SHUTDOWN_GRACE_SECONDS`` to finish, then hands unfinished ones back to the
queue (they run again elsewhere: at-least-once, handlers idempotent). Probes on ``HEALTH_PORT``:
``/healthz`` is 200 while the claim loops keep turning (a wedged worker is restarted),
``/readyz`` is 200 while the database answers and the worker is not draining.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from services.settings import ServiceSettings
from services.worker.handlers import HANDLERS
from tenant_provisioner.errors import TransientError
from tenant_provisioner.gateway.jobs import Job, JobQueue
from tenant_provisioner.gateway.sessions import WORKER_CONNECTIONS_PER_TENANT, ControlPlane, TenantPools
from tenant_provisioner.tiers import load_tiers

log = logging.getLogger("saas.worker")
IDLE_POLL_SECONDS = 0.25
STALL_SECONDS = 30.0


class Worker:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        catalog = load_tiers(settings.tiers_file)
        self.control = ControlPlane(settings.database_url, provisioner_role=settings.provisioner_role,
                                    max_size=settings.control_pool_size)
        self.pools = TenantPools(settings.database_url, catalog=catalog, deriver=settings.password_deriver,
                                 total=settings.pool_total, per_tenant=WORKER_CONNECTIONS_PER_TENANT,
                                 idle_seconds=settings.pool_idle_seconds, wait_seconds=settings.pool_wait_seconds)
        self.queue = JobQueue(self.control)
        self.stopping = asyncio.Event()
        self.heartbeat = time.monotonic()
        self.running: dict[int, Job] = {}
        self.done = 0

    # -- probes -----------------------------------------------------------------------------------
    def alive(self) -> bool:
        return time.monotonic() - self.heartbeat < STALL_SECONDS

    async def ready(self) -> bool:
        if self.stopping.is_set():
            return False
        try:
            async with self.control.connection() as conn:
                await conn.execute("SELECT 1")
            return True
        except TransientError:
            return False

    # -- the loop ---------------------------------------------------------------------------------
    async def run_one(self, job: Job) -> None:
        handler = HANDLERS.get(job.kind)
        if handler is None:
            await self.queue.give_up(job, f"unknown job kind {job.kind!r}")
            return
        if job.tenant.state != "active":
            if job.tenant.state in ("offboarding", "offboarded"):
                await self.queue.give_up(job, f"tenant is {job.tenant.state}")
            else:
                await self.queue.retry_later(job, f"tenant is {job.tenant.state}", delay_seconds=300)
            return
        try:
            async with self.pools.session(job.tenant) as conn:
                await handler(conn, job.payload)
        except Exception as exc:  # any failure: retried with backoff, then `failed`
            log.warning("job failed", extra={"fields": {"job_id": job.id, "kind": job.kind,
                                                        "tenant_id": job.tenant.tenant_id, "error": str(exc)}})
            await self.queue.retry_later(job, f"{type(exc).__name__}: {exc}", delay_seconds=2 ** job.attempts)
            return
        await self.queue.complete(job)
        self.done += 1
        log.info("job done", extra={"fields": {"job_id": job.id, "kind": job.kind, "tenant_id": job.tenant.tenant_id,
                                               "attempts": job.attempts}})

    async def _loop(self) -> None:
        while not self.stopping.is_set():
            self.heartbeat = time.monotonic()
            try:
                job = await self.queue.claim(self.settings.job_lease_seconds)
            except TransientError as exc:
                log.warning("claim failed", extra={"fields": {"error": str(exc)}})
                job = None
            if job is None:
                try:
                    await asyncio.wait_for(self.stopping.wait(), IDLE_POLL_SECONDS)
                except TimeoutError:
                    pass
                continue
            self.running[job.id] = job
            try:
                await asyncio.shield(self.run_one(job))
            finally:
                self.running.pop(job.id, None)

    async def run(self) -> None:
        await self.control.open()
        self.pools.start()
        loops = [asyncio.create_task(self._loop()) for _ in range(self.settings.worker_concurrency)]
        await self.stopping.wait()
        done, pending = await asyncio.wait(loops, timeout=self.settings.shutdown_grace_seconds)
        for task in pending:
            task.cancel()
        for job in list(self.running.values()):
            log.warning("handing back unfinished job", extra={"fields": {"job_id": job.id}})
            await self.queue.release(job)
        await asyncio.gather(*pending, return_exceptions=True)
        await self.pools.close()
        await self.control.close()


async def serve_health(worker: Worker, host: str, port: int) -> asyncio.AbstractServer:
    """A minimal HTTP/1.1 server for the kubelet: GET /healthz and /readyz, nothing else."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else ""
            if path == "/healthz":
                ok = worker.alive()
            elif path == "/readyz":
                ok = await worker.ready()
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                return
            body = b'{"status":"ok"}' if ok else b'{"status":"unavailable"}'
            status = b"200 OK" if ok else b"503 Service Unavailable"
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
                         + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            try:
                await writer.drain()
                writer.close()
            except ConnectionError:
                pass

    return await asyncio.start_server(handle, host, port)


async def main(settings: ServiceSettings) -> None:
    worker = Worker(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stopping.set)
    server = await serve_health(worker, settings.host, settings.health_port)
    log.info("worker started", extra={"fields": {"health_port": settings.health_port,
                                                 "concurrency": settings.worker_concurrency}})
    try:
        await worker.run()
    finally:
        server.close()
        log.info("worker stopped", extra={"fields": {"jobs_done": worker.done}})


def run(settings: ServiceSettings) -> Any:
    import uvloop

    return uvloop.run(main(settings))
