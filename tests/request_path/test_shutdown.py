"""`python -m services.api` drains on SIGTERM: readiness turns 503 at once while requests are
still served for SHUTDOWN_DELAY_SECONDS (the load balancer's time to stop sending), requests in
flight are answered, and the process exits within the grace time — no accepted request is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx

from tests.conftest import REPO_ROOT
from tests.request_path.conftest import free_port
from tests.support.processes import wait_until_ready


def test_sigterm_drains_in_flight_requests_and_loses_none(platform):
    key = platform.tenant("drain-co", "business")
    port = free_port()
    env = {**os.environ, "DATABASE_URL": platform.url, "REDIS_URL": platform.redis_url,
           "TENANT_PROVISIONER_ROLE": platform.provisioner_role, "REDIS_KEY_PREFIX": platform.redis_prefix,
           "HOST": "127.0.0.1", "PORT": str(port), "SHUTDOWN_GRACE_SECONDS": "10", "SHUTDOWN_DELAY_SECONDS": "5", "LOG_LEVEL": "INFO"}
    proc = subprocess.Popen([sys.executable, "-m", "services.api"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/readyz", proc, what="API")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=20) as http:
            project = http.post("/v1/projects", json={"name": "drain"}).json()["id"]
        answered: list[int] = []
        lost: list[str] = []
        refused = 0
        stop = threading.Event()

        def load_balancer() -> None:
            """Like a Service's endpoints: stop sending new requests once readiness fails."""
            while not stop.is_set():
                try:
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 503:
                        stop.set()
                except httpx.TransportError:
                    stop.set()
                time.sleep(0.05)

        def client_loop() -> None:
            nonlocal refused
            # A fresh connection per request: an error is then either "never accepted"
            # (connect refused) or a lost request (accepted, then dropped).
            while not stop.is_set():
                try:
                    response = httpx.post(f"{url}/v1/usage", timeout=20, headers={
                        "Authorization": f"Bearer {key}", "Connection": "close"},
                        json={"project_id": project, "provider": "p", "model": "m", "cost_usd": "0.01"})
                    answered.append(response.status_code)
                except httpx.ConnectError:
                    refused += 1
                    time.sleep(0.01)
                except httpx.TransportError as exc:
                    lost.append(type(exc).__name__)

        threads = [threading.Thread(target=client_loop) for _ in range(8)] + [threading.Thread(target=load_balancer)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once drained, so a clean drain exits "killed by SIGTERM".
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert time.monotonic() - signalled >= 5  # it kept serving through the delay
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert len(answered) > 10
        assert lost == []
        assert set(answered) <= {201, 429}, set(answered)
    finally:
        if proc.poll() is None:
            proc.kill()
    import psycopg

    with psycopg.connect(platform.url, autocommit=True) as conn:
        schema = conn.execute("SELECT schema_name FROM control.tenants WHERE tenant_id = 'drain-co'").fetchone()[0]
        stored = conn.execute(f'SELECT count(*) FROM "{schema}".ai_usage_records').fetchone()[0]
    assert stored == answered.count(201)
