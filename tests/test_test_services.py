"""The suite's fallback when no PostgreSQL/Redis is running: throwaway servers from local binaries."""

from __future__ import annotations

import psycopg
import pytest
import redis

from tests.support import services


def test_throwaway_postgres_and_redis_start_and_answer():
    pg_url = services._start_throwaway_postgres()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SHOW max_locks_per_transaction").fetchone() == ("256",)
    redis_url = services._start_throwaway_redis()
    assert redis.Redis.from_url(redis_url).ping()


def test_a_set_but_dead_url_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("TEST_REDIS_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(services.ServiceUnavailable, match="TEST_REDIS_URL is set but Redis there does not answer"):
        services.redis_url()
