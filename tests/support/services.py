"""Find (or start) the real PostgreSQL and Redis the test suite runs against.

Order, for each service: the ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` variable if set; the
local default (127.0.0.1:5432 as ``postgres``, 127.0.0.1:6379); a throwaway server started from
local binaries in a temporary directory; otherwise the session stops with one line saying what
to install. Never a mock.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg
import redis

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class ServiceUnavailable(RuntimeError):
    """No server could be found or started; the message says what to install."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def _wait(check, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise ServiceUnavailable(f"started a throwaway {what} but it did not answer within {seconds:.0f}s")


def _start_throwaway_postgres() -> str:
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    initdb = next((os.path.join(d, "initdb") for d in bindirs if os.path.exists(os.path.join(d, "initdb"))),
                  shutil.which("initdb"))
    if not initdb:
        raise ServiceUnavailable(
            "PostgreSQL is not reachable and no initdb was found: install PostgreSQL 15+ "
            "(apt-get install postgresql) or set TEST_DATABASE_URL")
    bindir = os.path.dirname(initdb)
    root = tempfile.mkdtemp(prefix="test-pg-")
    data = os.path.join(root, "data")
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root; use the postgres system user
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    port = _free_port()
    subprocess.run([*run_as, os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(root, "log"),
                    "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                          "-c max_locks_per_transaction=256 -c fsync=off",
                    "-w", "start"], check=True, capture_output=True)
    atexit.register(lambda: subprocess.run(
        [*run_as, os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "stop"],
        capture_output=True))
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    _wait(lambda: _postgres_reachable(url), "PostgreSQL")
    return url


def _start_throwaway_redis() -> str:
    server = shutil.which("redis-server")
    if not server:
        raise ServiceUnavailable(
            "Redis is not reachable and no redis-server was found: install Redis 7+ "
            "(apt-get install redis-server) or set TEST_REDIS_URL")
    port = _free_port()
    root = tempfile.mkdtemp(prefix="test-redis-")
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", root],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(proc.terminate)
    url = f"redis://127.0.0.1:{port}/0"
    _wait(lambda: _redis_reachable(url), "Redis")
    return url


def _resolve(variable: str, default: str, reachable, start_throwaway, name: str) -> str:
    """`variable`'s URL if set (it must answer), else `default` if it answers, else a throwaway."""
    explicit = os.environ.get(variable)
    if explicit:
        if not reachable(explicit):
            raise ServiceUnavailable(f"{variable} is set but {name} there does not answer: {explicit}")
        return explicit
    if reachable(default):
        return default
    return start_throwaway()


def postgres_admin_url() -> str:
    """A superuser URL of a reachable PostgreSQL server."""
    return _resolve("TEST_DATABASE_URL", DEFAULT_DATABASE_URL, _postgres_reachable, _start_throwaway_postgres,
                    "PostgreSQL")


def redis_url() -> str:
    """The URL of a reachable Redis server."""
    return _resolve("TEST_REDIS_URL", DEFAULT_REDIS_URL, _redis_reachable, _start_throwaway_redis, "Redis")
