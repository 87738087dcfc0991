"""/readyz against dependencies that hang: a throwaway PostgreSQL and Redis of this module's own,
paused (SIGSTOP) so their open connections stay up and nothing answers. Readiness must answer 503
naming the dependency within READINESS_TIMEOUT_SECONDS, never leave the kubelet's probe to time
out, and be 200 again once the dependency continues."""

from __future__ import annotations

import time
import uuid
from typing import Iterator

import httpx
import pytest

from tenant_provisioner import control
from tenant_provisioner.db import admin_connect
from tests.request_path.conftest import Platform, ServedApi
from tests.support.services import ThrowawayPostgres, ThrowawayRedis

READINESS_TIMEOUT_SECONDS = 0.5
# Far above the bound: without it a hung dependency keeps the probe waiting until this client gives up.
CLIENT_TIMEOUT_SECONDS = 5.0


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ThrowawayPostgres, ThrowawayRedis]]:
    pg = ThrowawayPostgres.create()
    cache = None
    try:
        cache = ThrowawayRedis().start()
        yield pg, cache
    finally:
        if cache is not None:
            cache.remove()
        pg.remove()


@pytest.fixture(scope="module")
def served(servers) -> Iterator[ServedApi]:
    pg, cache = servers
    role = f"prov_{uuid.uuid4().hex[:10]}"
    with admin_connect(pg.url) as conn:
        control.init(conn, role)
    platform = Platform(url=pg.url, admin_url=pg.url, provisioner_role=role, redis_url=cache.url,
                        redis_prefix="readiness:")
    # Redis's own socket timeout far above the bound, so the bound is what answers.
    settings = platform.settings(READINESS_TIMEOUT_SECONDS=READINESS_TIMEOUT_SECONDS, REDIS_TIMEOUT_SECONDS=30)
    with ServedApi(settings) as api:
        yield api


def _readyz(api: ServedApi) -> httpx.Response:
    return httpx.get(f"{api.url}/readyz", timeout=CLIENT_TIMEOUT_SECONDS)


def _ready_again(api: ServedApi, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _readyz(api).status_code == 200:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("dependency", ["PostgreSQL", "Redis"])
def test_a_hung_dependency_makes_readyz_a_prompt_503_naming_it(servers, served, dependency):
    assert _readyz(served).status_code == 200
    server = servers[0] if dependency == "PostgreSQL" else servers[1]
    server.pause()
    try:
        response = _readyz(served)
    finally:
        server.resume()
    assert response.status_code == 503, response.text
    assert f"{dependency}: no answer within {READINESS_TIMEOUT_SECONDS:g} s" in response.json()["detail"]
    assert _ready_again(served), f"/readyz not 200 again after {dependency} continued"
