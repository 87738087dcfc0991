"""CPU per request of the tenant path vs the floor, in-process (no HTTP server, no load generator):
the same GET /v1/projects through the whole ASGI stack, 3,000 times after a warm-up, timed with
process CPU time — a figure the machine's other load barely moves, unlike req/s.

    .venv/bin/python bench/request_cost.py
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.floor import FLOOR_SCHEMA, create_floor_app  # noqa: E402
from bench.loadtest import seed, seed_floor  # noqa: E402
from services.api.app import create_app  # noqa: E402
from services.settings import ServiceSettings  # noqa: E402
from tenant_provisioner import control  # noqa: E402
from tenant_provisioner.db import admin_connect  # noqa: E402
from tests.support import databases, services  # noqa: E402

REQUESTS = 3000


async def call(app: Any, key: str | None) -> int:
    headers = [(b"host", b"bench")] + ([(b"authorization", f"Bearer {key}".encode())] if key else [])
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/v1/projects", "raw_path": b"/v1/projects", "query_string": b"limit=20", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    status = 0

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def lifespan(app: Any, phase: str) -> asyncio.Task:
    done, messages = asyncio.Event(), asyncio.Queue()
    messages.put_nowait({"type": f"lifespan.{phase}"})

    async def receive() -> dict:
        return await messages.get()  # one message, then wait (as a server does until shutdown)

    async def send(_: dict) -> None:
        done.set()

    task = asyncio.get_running_loop().create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                                      receive, send))
    await done.wait()
    return task  # the caller holds it: a collected lifespan task would shut the app down


async def cost(app: Any, keys: list[str | None]) -> float:
    running = await lifespan(app, "startup")
    for n in range(200):
        await call(app, keys[n % len(keys)])
    started = time.process_time()
    statuses = {await call(app, keys[n % len(keys)]) for n in range(REQUESTS)}
    assert statuses == {200}, statuses
    running.cancel()
    return (time.process_time() - started) * 1000 / REQUESTS


def unlimited_tiers() -> Path:
    """The tiers file with rates and bursts × 1,000: every measured request is admitted (a 429 costs
    less than a 200 and would flatter the tenant path), the limiter's round trip still paid."""
    tiers = yaml.safe_load((ROOT / "config" / "tiers.yaml").read_text())
    for tier in tiers["tiers"].values():
        tier["rate_per_second"] *= 1000
        tier["burst"] *= 1000
    path = Path(tempfile.mkdtemp(prefix="reqcost-")) / "tiers.yaml"
    path.write_text(yaml.safe_dump(tiers))
    return path


def main() -> int:
    logging.disable(logging.INFO)
    admin_url, redis_url = services.postgres_admin_url(), services.redis_url()
    url = databases.create_database(admin_url, prefix="reqcost")
    role = f"rc_{uuid.uuid4().hex[:8]}"
    tiers_file = unlimited_tiers()
    try:
        with admin_connect(url) as conn:
            control.init(conn, role)
        plan = seed(url, role)
        seed_floor(url)
        settings = ServiceSettings.from_env({
            "DATABASE_URL": url, "REDIS_URL": redis_url, "TENANT_PROVISIONER_ROLE": role, "SERVICE_REPLICAS": "1",
            "REDIS_KEY_PREFIX": f"reqcost:{uuid.uuid4().hex[:6]}:", "TIERS_FILE": str(tiers_file)})
        tenant_keys: list[str | None] = [t["key"] for t in plan if t["tier"] == "business"]
        tenant = asyncio.run(cost(create_app(settings), tenant_keys))
        floor = asyncio.run(cost(create_floor_app(url, FLOOR_SCHEMA, 40), [None]))
        print(f"GET /v1/projects, {REQUESTS} requests in-process: tenant path {tenant:.2f} ms CPU/request, "
              f"floor {floor:.2f} ms; floor / tenant = {floor / tenant:.0%} (the throughput ratio when CPU-bound)")
    finally:
        shutil.rmtree(tiers_file.parent, ignore_errors=True)
        databases.drop_database(admin_url, url, extra_roles=(f"{role}_gateway", f"{role}_tenants", role))
    return 0


if __name__ == "__main__":
    sys.exit(main())
