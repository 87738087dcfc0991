"""Fixtures for the service tests: an initialised database with tenants and keys, and the API
served by uvicorn on 127.0.0.1 (a free port, in a thread) against real PostgreSQL and Redis."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

import httpx
import pytest
import uvicorn

from services.api.app import create_app
from services.settings import ServiceSettings
from tenant_provisioner import control
from tenant_provisioner.runtime import compose
from tenant_provisioner.db import Database, admin_connect
from tenant_provisioner.gateway import keys
from tenant_provisioner.tenants.provisioning import CreateRequest
from tests.support import databases

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later


@dataclass
class Platform:
    """An initialised database (own provisioner role) plus the Redis prefix of one module."""

    url: str
    admin_url: str
    provisioner_role: str
    redis_url: str
    redis_prefix: str
    api_keys: dict[str, str] = field(default_factory=dict)

    def database(self) -> Database:
        return Database(self.url, provisioner_role=self.provisioner_role, max_size=2)

    def tenant(self, tenant_id: str, tier: str) -> str:
        """Create an active tenant with one key; returns the key."""
        with self.database() as db, db.connection() as conn:
            lifecycle.create(conn, CreateRequest.parse({"tenant_id": tenant_id, "tier": tier,
                                                        "admin_email": "ops@example.com"}), actor="test")
            issued = keys.create(conn, tenant_id, name="test", actor="test")
        self.api_keys[tenant_id] = issued.api_key
        return issued.api_key

    def settings(self, **overrides: Any) -> ServiceSettings:
        env = {"DATABASE_URL": self.url, "REDIS_URL": self.redis_url, "TENANT_PROVISIONER_ROLE": self.provisioner_role,
               "REDIS_KEY_PREFIX": self.redis_prefix, "HOST": "127.0.0.1", "PORT": str(free_port()),
               "HEALTH_PORT": str(free_port()), "SHUTDOWN_GRACE_SECONDS": "5", "LOG_LEVEL": "WARNING",
               **{k: str(v) for k, v in overrides.items()}}
        return ServiceSettings.from_env(env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def platform(pg_admin_url, redis_server_url) -> Iterator[Platform]:
    url = databases.create_database(pg_admin_url, prefix="services")
    role = f"prov_{uuid.uuid4().hex[:10]}"
    with admin_connect(url) as conn:
        control.init(conn, role)
    yield Platform(url=url, admin_url=pg_admin_url, provisioner_role=role, redis_url=redis_server_url,
                   redis_prefix=f"test:{uuid.uuid4().hex[:10]}:")
    databases.drop_database(pg_admin_url, url, extra_roles=(f"{role}_gateway", f"{role}_tenants", role))


class ServedApi:
    """The API on 127.0.0.1 in a background thread (uvicorn, like production)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.app = create_app(settings)
        self.url = f"http://127.0.0.1:{settings.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=settings.port, lifespan="on",
                                                    log_config=None, access_log=False,
                                                    timeout_graceful_shutdown=int(settings.shutdown_grace_seconds)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ServedApi":
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def api(platform) -> Iterator[ServedApi]:
    with ServedApi(platform.settings()) as served:
        yield served
