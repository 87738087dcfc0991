"""Control-plane leases (tenant_provisioner/leases.py): rows tenants cannot see, freed when their
holder is done, when they expire, or when the server restarted since they were taken."""

from __future__ import annotations

from tenant_provisioner import leases


def _stale(conn, name: str, *, before_server_start: bool) -> None:
    """A lease row left by a holder that never released it, still minutes from expiring."""
    conn.execute("INSERT INTO control.leases (name, holder, expires_at, acquired_at)"
                 " VALUES (%s, 'gone', now() + interval '10 minutes',"
                 " CASE WHEN %s THEN pg_postmaster_start_time() - interval '1 second' ELSE now() END)",
                 (name, before_server_start))


def test_a_lease_taken_before_the_server_last_started_is_free_at_once(db):
    """A clean restart or a failover keeps the UNLOGGED rows but ends every holder's connection:
    the interrupted company's next signup must not wait out the TTL (120 s, seen in the drill)."""
    with db.connection() as conn:
        _stale(conn, "create:interrupted", before_server_start=True)
        assert leases.try_acquire(conn, "create:interrupted", ttl_s=120) is not None


def test_a_lease_taken_since_the_server_started_holds_until_released_or_expired(db):
    with db.connection() as conn:
        _stale(conn, "create:running", before_server_start=False)
        assert leases.try_acquire(conn, "create:running", ttl_s=120) is None
        with leases.held(conn, "create:next", ttl_s=120) as first:
            assert first and leases.try_acquire(conn, "create:next", ttl_s=120) is None
        assert leases.try_acquire(conn, "create:next", ttl_s=120) is not None
