"""One throwaway platform on 127.0.0.1 for the failure drills: PostgreSQL 16.13 and Redis of its
own (``tests/support/services.py``'s throwaway servers, never the shared 5432/6379), the control
schema and a few tenants with API keys, the reference API and worker as real processes, and a
locust load against the API.

Everything is started by :class:`Platform` and removed when it exits, also when a drill fails or
the drills are stopped (``python -m drills`` turns SIGTERM/SIGINT into an exception that unwinds
through the platform). Each child process runs in a process group of its own, stopped as a whole:
SIGTERM, then SIGKILL after :data:`STOP_GRACE_SECONDS`, so nothing it started survives either.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import psycopg
import redis
import stripe
from psycopg import sql

from tenant_provisioner import control
from tenant_provisioner.billing.catalog import sync_catalog
from tenant_provisioner.billing.settings import BillingSettings
from tenant_provisioner.db import Database, admin_connect
from tenant_provisioner.drills.interruption import Sample
from tenant_provisioner.gateway import keys
from tenant_provisioner.runtime import compose
from tenant_provisioner.tenants.lifecycle import Lifecycle
from tenant_provisioner.tenants.provisioning import CreateRequest
from tenant_provisioner.tiers import load_tiers
from tests.billing.stripe_server import FakeStripe
from tests.support.databases import url_for_database
from tests.support.processes import wait_until_ready
from tests.support.services import ThrowawayPostgres, ThrowawayRedis, _free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
PROVISIONER_ROLE = "tenant_provisioner"
STRIPE_KEY = "sk_test_drill_0000"
STRIPE_WEBHOOK_SECRET = "whsec_drill_0000"
ACTOR = "drill"
# SIGTERM to SIGKILL when a child process is stopped (the services drain for SHUTDOWN_GRACE_SECONDS=2).
STOP_GRACE_SECONDS = 5.0
# Tenants of every paid tier; the load's users are spread over them round robin.
TENANTS = (("drill-starter-a", "starter"), ("drill-starter-b", "starter"), ("drill-pro-a", "pro"),
           ("drill-pro-b", "pro"), ("drill-business-a", "business"))


@dataclass(frozen=True)
class Timing:
    """How long each phase of a drill lasts, and the load."""

    users: int
    warmup: float          # load running, nothing broken yet
    outage: float          # the dependency is away
    settle: float          # after it returns, the load keeps running
    recover_within: float  # the stated bound: back to normal within this many seconds


FULL = Timing(users=50, warmup=10, outage=15, settle=30, recover_within=20)
SHORT = Timing(users=10, warmup=8, outage=4, settle=20, recover_within=18)


@dataclass
class LoadRun:
    """Samples of one locust run (wall-clock seconds), filled when the run ends."""

    samples: list[dict] = field(default_factory=list)

    def as_samples(self, *, tenant_requests_only: bool = True) -> list[Sample]:
        return [Sample(at=s["at"], status=s["status"], path=s["name"]) for s in self.samples
                if not tenant_requests_only or " /v1/" in s["name"]]


class Platform:
    """Servers, schema, tenants, API (and optionally the worker) — and their removal."""

    def __init__(self, timing: Timing, *, workdir: Path | None = None, billing: bool = False) -> None:
        self.timing = timing
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="drill-"))
        self.pg: ThrowawayPostgres | None = None
        self.redis: ThrowawayRedis | None = None
        self.api: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.api_port = _free_port()
        self.health_port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.keys: dict[str, str] = {}
        self.catalog = load_tiers()
        # billing: tenants get Stripe customers and subscriptions in the stateful test Stripe server.
        self.stripe: FakeStripe | None = FakeStripe() if billing else None
        self.billing_settings: BillingSettings | None = None
        self.stripe_client: stripe.StripeClient | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> "Platform":
        try:
            self.pg = ThrowawayPostgres.create()
            self.redis = ThrowawayRedis().start()
            with psycopg.connect(self.pg.url, autocommit=True) as conn:
                conn.execute("CREATE DATABASE app")
            self.database_url = url_for_database(self.pg.url, "app")
            with admin_connect(self.database_url) as conn:
                control.init(conn, PROVISIONER_ROLE)
            self.lifecycle = self._lifecycle()
            with self.database() as db, db.connection() as conn:
                for tenant_id, tier in TENANTS:
                    self.lifecycle.create(conn, CreateRequest.parse(
                        {"tenant_id": tenant_id, "tier": tier, "admin_email": "ops@example.com"}), actor=ACTOR)
                    self.keys[tenant_id] = keys.create(conn, tenant_id, name="drill", actor=ACTOR).api_key
            self.start_api()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _lifecycle(self) -> Lifecycle:
        """The tenant lifecycle around this platform's Redis and (billing) the Stripe test server,
        its catalog synced first."""
        self.redis_client = redis.Redis.from_url(self.redis.url)
        if self.stripe is None:
            return compose.lifecycle(redis_client=self.redis_client)
        self.stripe.start()
        self.billing_settings = BillingSettings(api_base=self.stripe.url, max_network_retries=0)
        self.stripe_client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": self.stripe.url},
                                                 max_network_retries=0)
        sync_catalog(self.stripe_client, self.catalog, self.billing_settings)
        return compose.lifecycle(billing=self.billing_settings, stripe_client=self.stripe_client,
                                 redis_client=self.redis_client)

    def __exit__(self, *exc: object) -> None:
        for process in (self.api, self.worker):
            if process is not None:
                stop_process_group(process)
        if self.stripe is not None:
            self.stripe.stop()
        if self.redis is not None:
            if getattr(self, "redis_client", None) is not None:
                self.redis_client.close()
            self.redis.remove()
        if self.pg is not None:
            self.pg.remove()

    def database(self) -> Database:
        return Database(self.database_url, provisioner_role=PROVISIONER_ROLE, max_size=2, timeout=5)

    def _service_env(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url,
                "TENANT_PROVISIONER_ROLE": PROVISIONER_ROLE, "HOST": "127.0.0.1", "PORT": str(self.api_port),
                "HEALTH_PORT": str(self.health_port), "SHUTDOWN_GRACE_SECONDS": "2", "LOG_LEVEL": "WARNING",
                "JOB_LEASE_SECONDS": "3", "PYTHONPATH": str(REPO_ROOT)}

    def _spawn(self, module: str, log_name: str) -> subprocess.Popen:
        log = open(self.workdir / log_name, "ab")   # noqa: SIM115 - owned by the process for its lifetime
        return subprocess.Popen([sys.executable, "-m", module], env=self._service_env(), cwd=REPO_ROOT,
                                stdout=log, stderr=subprocess.STDOUT, process_group=0)

    def start_api(self) -> None:
        self.api = self._spawn("services.api", "api.log")
        wait_until_ready(f"{self.api_url}/readyz", self.api, what="API", seconds=90, see=str(self.workdir))

    def start_worker(self) -> None:
        self.worker = self._spawn("services.worker", "worker.log")
        wait_until_ready(f"http://127.0.0.1:{self.health_port}/readyz", self.worker, what="worker", seconds=90,
                         see=str(self.workdir))

    def kill_worker(self) -> None:
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()


    # --- load ----------------------------------------------------------------------------------
    @contextmanager
    def load(self, seconds: float) -> Iterator[LoadRun]:
        """A headless locust run of ``seconds`` with ``timing.users`` users; samples when it ends."""
        run = LoadRun()
        samples = self.workdir / f"samples-{time.monotonic_ns()}.jsonl"
        env = {**os.environ, "DRILL_KEYS": json.dumps(self.keys), "DRILL_SAMPLES": str(samples)}
        users = str(self.timing.users)
        locust = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", users, "-r", users,
             "-t", f"{int(seconds) + 3}s", "--host", self.api_url, "--only-summary", "--stop-timeout", "3",
             "--loglevel", "ERROR", "--skip-log-setup"],
            env=env, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=open(self.workdir / "locust.log", "ab"),
            process_group=0)
        try:
            started = Path(f"{samples}.started")
            deadline = time.monotonic() + 60
            while not started.exists():
                if locust.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the load did not start; see {self.workdir / 'locust.log'}")
                time.sleep(0.1)
            yield run
            locust.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            raise RuntimeError("locust did not finish its run") from None
        finally:   # also when the drill failed or the drills were stopped: no waiting for the run's end
            stop_process_group(locust)
        if samples.exists():
            run.samples = [json.loads(line) for line in samples.read_text().splitlines() if line]
        if not run.samples:
            raise RuntimeError(f"the load produced no samples; see {self.workdir / 'locust.log'}")

    def call(self, method: str, path: str, tenant_id: str, body: dict | None = None) -> dict:
        """One JSON request as ``tenant_id`` (setup of a drill, not load); raises on a non-2xx."""
        request = urllib.request.Request(
            f"{self.api_url}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.keys[tenant_id]}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:   # noqa: S310 - 127.0.0.1 only
            return json.loads(response.read() or b"null")

    # --- checks --------------------------------------------------------------------------------
    def lost_writes(self, run: LoadRun) -> list[str]:
        """Writes the API acknowledged (201 with an id) that the database does not hold."""
        created: dict[tuple[str, str], set[int]] = {}
        for sample in run.samples:
            if sample.get("created_id") is not None:
                table = "ai_usage_records" if sample["name"] == "POST /v1/usage" else "projects"
                created.setdefault((sample["tenant"], table), set()).add(int(sample["created_id"]))
            elif sample.get("status") == 201:
                return [f"{sample['name']}: a 201 without an id"]
        lost = []
        with admin_connect(self.database_url) as conn:
            schemas = dict(conn.execute("SELECT tenant_id, schema_name FROM control.tenants").fetchall())
            for (tenant, table), ids in sorted(created.items()):
                found = {row[0] for row in conn.execute(
                    sql.SQL("SELECT id FROM {}.{} WHERE id = ANY(%s)").format(
                        sql.Identifier(schemas[tenant]), sql.Identifier(table)), (sorted(ids),))}
                lost += [f"{tenant}.{table} id {i}" for i in sorted(ids - found)]
        return lost


def stop_process_group(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop ``process`` (started with ``process_group=0``) and everything in its process group:
    SIGTERM, then SIGKILL to whatever is left after ``grace`` seconds; ``process`` is reaped."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with suppress(ProcessLookupError):   # the process or what it started ignored SIGTERM
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
