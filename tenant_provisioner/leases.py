"""Leases: control-plane mutual exclusion through rows of ``control.leases``.

Why not advisory locks: their key space is shared by every role of the database, so a tenant
holding ``pg_advisory_lock`` on our keys stalls the control plane, and ``pg_locks`` tells every
tenant which key (which company's signup) is held right now. Lease rows are invisible to tenants.

A lease expires after `ttl_s`, so a holder that died (Lambda timeout, crash) blocks the next one
for at most that long; holders release as soon as they are done. A lease taken before the server
last started is free at once: the holder works on the connection that took it, which the restart
ended (control migration 0011).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

import psycopg

_ACQUIRE = """
INSERT INTO control.leases (name, holder, expires_at, acquired_at)
VALUES (%s, %s, now() + make_interval(secs => %s), now())
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
                                 acquired_at = excluded.acquired_at
WHERE leases.expires_at < now() OR leases.acquired_at < pg_postmaster_start_time()
RETURNING 1
"""
POLL_INTERVAL_S = 0.02


def try_acquire(conn: psycopg.Connection, name: str, *, ttl_s: float) -> str | None:
    """The holder token if the lease `name` was free (or expired), else None. Autocommit."""
    holder = uuid.uuid4().hex
    with conn.transaction():
        row = conn.execute(_ACQUIRE, (name, holder, ttl_s)).fetchone()
    return holder if row else None


def release(conn: psycopg.Connection, name: str, holder: str) -> None:
    with conn.transaction():
        conn.execute("DELETE FROM control.leases WHERE name = %s AND holder = %s", (name, holder))


@contextmanager
def held(conn: psycopg.Connection, name: str, *, ttl_s: float, wait_s: float = 0.0) -> Iterator[bool]:
    """Hold lease `name` inside the block; yields False when it stayed taken for `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    holder = try_acquire(conn, name, ttl_s=ttl_s)
    while holder is None and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        holder = try_acquire(conn, name, ttl_s=ttl_s)
    if holder is None:
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(psycopg.OperationalError):  # connection gone: the lease expires on its own
            release(conn, name, holder)
