"""A hostile tenant (issue 10): every attack runs AS THE TENANT'S OWN ROLE — the position of an
attacker who found SQL injection in one tenant's request — against the real PostgreSQL 16.13 the
suite runs on (started with production's parameter group, tests/support/services.py).

Each test failed on the code before issue 10 and passes with its fix (docs/tenants.md, threat model).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import threading
import time
from contextlib import AsyncExitStack, contextmanager
from typing import Callable

import psycopg
import pytest
from psycopg import sql

from tenant_provisioner import audit, control
from tenant_provisioner.runtime import compose
from tenant_provisioner.tenants import provisioning, records, schema, warm_pool
from tenant_provisioner.db import admin_connect
from tenant_provisioner.gateway import keys
from tenant_provisioner.gateway.credentials import PasswordDeriver
from tenant_provisioner.gateway.sessions import ControlPlane, PoolExhausted, TenantPools
from tenant_provisioner.limits.enforcer import measure_database
from tenant_provisioner.limits.reaper import ReaperSettings, reap_sessions, repair_roles
from tenant_provisioner.tenants.provisioning import CreateRequest
from tenant_provisioner.tiers import load_tiers
from tests.support import databases

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later

OLD_LOCK_NAMESPACE = 32330  # the advisory-lock keys the control plane used before issue 10
FAST = ReaperSettings(idle_in_transaction_s=0.5, statement_s=1, transaction_s=60, max_locks=500)
FOUR_MB = 4 * 1024 * 1024


def _create(db, tenant_id: str, tier: str = "starter"):
    with db.connection() as conn:
        request = CreateRequest.parse({"tenant_id": tenant_id, "tier": tier, "admin_email": "a@example.com"})
        return lifecycle.create(conn, request, actor="test").tenant


@contextmanager
def _session(url: str):
    conn = psycopg.connect(url, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()  # not `with`: a session the reaper ended cannot commit on the way out


def _as_tenant(tenant_db, tenant, dbname: str | None = None):
    url = tenant_db.login_url(tenant.role_name)
    return _session(databases.url_for_database(url, dbname) if dbname else url)


def _finishes(work: Callable[[], object], within_s: float) -> object:
    """Run `work` in a thread; fail if it is still running after `within_s` (it would hang)."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within_s)
    assert not thread.is_alive(), f"still blocked after {within_s}s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


def _dead(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


# 1. Stalls -------------------------------------------------------------------------------------

def test_lock_table_on_its_own_tables_does_not_stall_measurement(tenant_db, db, tenant_ids):
    attacker, other = _create(db, tenant_ids("locker")), _create(db, tenant_ids("bystander"))
    with _as_tenant(tenant_db, attacker) as evil:
        evil.execute("BEGIN")
        evil.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")  # and stays idle

        def measure_both():
            with db.connection() as conn:
                return [measure_database(conn, tenant, conn.execute("SELECT current_date").fetchone()[0])
                        for tenant in (attacker, other)]

        (locked_size, locked_seats), (size, seats) = _finishes(measure_both, within_s=10)
        assert size > 0 and seats == 0
        assert locked_size > 0 and locked_seats == 0  # estimated from the catalog, never waited for
        evil.execute("ROLLBACK")


def test_old_advisory_keys_held_by_a_tenant_stall_nothing(tenant_db, db, tenant_ids):
    attacker = _create(db, tenant_ids("squatter"))
    victim = tenant_ids("victim")
    with _as_tenant(tenant_db, attacker) as evil:
        for key in (1, 2):
            evil.execute("SELECT pg_advisory_lock(%s, %s)", (OLD_LOCK_NAMESPACE, key))
        evil.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (OLD_LOCK_NAMESPACE, victim))

        def init():
            with admin_connect(tenant_db.url) as conn:
                return control.init(conn, tenant_db.provisioner_role)

        _finishes(init, within_s=10)
        with db.connection() as conn:
            assert warm_pool.refill(conn, 1).ran
        started = time.monotonic()
        assert _create(db, victim).state == "active"
        assert time.monotonic() - started < 5


def test_a_tenant_cannot_see_who_is_signing_up(tenant_db, db, tenant_ids):
    spy = _create(db, tenant_ids("spy"))
    seen: list[tuple] = []

    class LookAtLocks:
        name = "look"

        def apply(self, ctx):  # mid-signup, the spy reads the lock table
            with _as_tenant(tenant_db, spy) as conn:
                seen.extend(conn.execute("SELECT locktype, classid, objid FROM pg_locks"
                                         " WHERE locktype = 'advisory'").fetchall())

        def undo(self, ctx):
            pass

    with db.connection() as conn:
        request = CreateRequest.parse({"tenant_id": tenant_ids("secret"), "tier": "pro", "admin_email": "a@b.io"})
        lifecycle.create(conn, request, actor="test",
                         steps=(provisioning.DatabaseStep(), LookAtLocks(), provisioning.ActivateStep()))
    assert seen == []


def test_a_session_filling_the_shared_lock_table_is_terminated(tenant_db, db, tenant_ids):
    attacker = _create(db, tenant_ids("hoarder"))
    with _as_tenant(tenant_db, attacker) as evil:
        evil.execute("SELECT count(pg_advisory_lock(i)) FROM generate_series(1, 2000) i")
        with db.connection() as conn:
            ended = reap_sessions(conn, FAST, actor="test")
            assert [(t.tenant_id, t.reason.split(" (")[0]) for t in ended] == [
                (attacker.tenant_id, "holds 2000 locks")]
            assert audit.entries(conn, attacker.tenant_id, action="tenant.session_terminated")
        assert _dead(evil)


# 2. Undeletable ---------------------------------------------------------------------------------

def test_large_objects_and_default_privileges_do_not_make_a_tenant_undeletable(tenant_db, db, tenant_ids, tmp_path):
    attacker = _create(db, tenant_ids("limpet"))
    with _as_tenant(tenant_db, attacker) as evil:
        oid = evil.execute("SELECT lo_from_bytea(0, 'x')").fetchone()[0]
        evil.execute("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC")
    # What a tenant could leave in another database before `init` closed it (here made as admin).
    with psycopg.connect(databases.url_for_database(tenant_db.admin_url, "postgres"), autocommit=True) as admin:
        elsewhere = admin.execute("SELECT lo_from_bytea(0, 'y')").fetchone()[0]
        admin.execute(sql.SQL("ALTER LARGE OBJECT {} OWNER TO {}").format(
            sql.Literal(elsewhere), sql.Identifier(attacker.role_name)))
    with db.connection() as conn:
        result = lifecycle.offboard(conn, attacker.tenant_id, actor="test", export_to=str(tmp_path))
        assert result.tenant.state == "offboarded" and result.rows["large_objects"] == 1
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (attacker.role_name,)).fetchone() is None
        assert conn.execute("SELECT 1 FROM pg_largeobject_metadata WHERE oid = %s", (oid,)).fetchone() is None
    exported = next(tmp_path.iterdir()) / "large_objects" / f"{oid}.bin"
    assert exported.read_bytes() == b"x"


def test_one_tenant_that_cannot_be_dropped_does_not_keep_the_others(tenant_db, db, tenant_ids, tmp_path):
    stuck, leaving = _create(db, tenant_ids("stuck")), _create(db, tenant_ids("leaving"))
    unreachable = databases.create_database(tenant_db.admin_url, prefix="unreachable")
    name = psycopg.conninfo.conninfo_to_dict(unreachable)["dbname"]
    with psycopg.connect(unreachable, autocommit=True) as admin:  # like rdsadmin: objects we cannot reach
        lo = admin.execute("SELECT lo_from_bytea(0, 'z')").fetchone()[0]
        admin.execute(sql.SQL("ALTER LARGE OBJECT {} OWNER TO {}").format(
            sql.Literal(lo), sql.Identifier(stuck.role_name)))
    with psycopg.connect(tenant_db.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
    try:
        with db.connection() as conn:
            for tenant in (stuck, leaving):
                lifecycle.offboard(conn, tenant.tenant_id, actor="test", export_to=str(tmp_path), retention_days=1)
            conn.execute("UPDATE control.tenants SET drop_after = now() - interval '1 minute'"
                         " WHERE tenant_id = ANY(%s)", ([stuck.tenant_id, leaving.tenant_id],))
            result = lifecycle.drop_due(conn, actor="test")
        assert leaving.tenant_id in result.dropped
        assert list(result.failed) == [stuck.tenant_id] and name in result.failed[stuck.tenant_id]
    finally:
        with psycopg.connect(tenant_db.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


# 3. Storage outside the quota ------------------------------------------------------------------

def test_large_objects_count_towards_the_storage_quota(tenant_db, db, tenant_ids):
    attacker = _create(db, tenant_ids("hider"))
    with db.connection() as conn:
        today = conn.execute("SELECT current_date").fetchone()[0]
        before, _ = measure_database(conn, attacker, today)
    with _as_tenant(tenant_db, attacker) as evil:
        evil.execute("SELECT lo_from_bytea(0, decode(repeat('ab', %s), 'hex'))", (FOUR_MB,))
    with db.connection() as conn:
        after, _ = measure_database(conn, attacker, today)
    assert after - before >= FOUR_MB


# 4. Shared resources ---------------------------------------------------------------------------

def test_temp_files_are_bounded_and_the_bound_cannot_be_lifted(tenant_db, db, tenant_ids):
    attacker = _create(db, tenant_ids("spiller"))
    with _as_tenant(tenant_db, attacker) as evil:
        evil.execute("SET work_mem = '64kB'")
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="temp_file_limit"):
            evil.execute("SELECT count(*) FROM (SELECT g FROM generate_series(1, 2000000) g ORDER BY g DESC) s")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            evil.execute("SET temp_file_limit = -1")


def test_a_statement_with_raised_work_mem_and_no_timeout_does_not_outlive_the_reaper(tenant_db, db, tenant_ids):
    attacker = _create(db, tenant_ids("hog"))
    with _as_tenant(tenant_db, attacker) as evil:
        evil.execute("SET work_mem = '8GB'")          # accepted: PostgreSQL cannot cap a user setting
        evil.execute("SET statement_timeout = 0")
        worker = threading.Thread(target=lambda: _dead_after(evil, "SELECT pg_sleep(60)"), daemon=True)
        worker.start()
        time.sleep(FAST.statement_s + 0.5)
        with db.connection() as conn:
            ended = reap_sessions(conn, FAST, actor="test")
        worker.join(10)
        assert not worker.is_alive()
        assert [t.tenant_id for t in ended] == [attacker.tenant_id] and "statement running" in ended[0].reason


def _dead_after(conn: psycopg.Connection, statement: str) -> None:
    try:
        conn.execute(statement)
    except psycopg.OperationalError:
        pass


def test_an_idle_transaction_holding_the_xmin_horizon_is_ended(tenant_db, db, tenant_ids):
    attacker = _create(db, tenant_ids("holder"))
    with _as_tenant(tenant_db, attacker) as evil:
        evil.execute("SET idle_in_transaction_session_timeout = 0")  # lifts the parameter group's default
        evil.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        evil.execute("SELECT count(*) FROM users")
        with db.connection() as conn:
            held = conn.execute("SELECT backend_xmin IS NOT NULL FROM pg_stat_activity WHERE pid = %s",
                                (evil.info.backend_pid,)).fetchone()
            assert held == (True,)
            time.sleep(FAST.idle_in_transaction_s + 0.3)
            ended = reap_sessions(conn, FAST, actor="test")
            assert [t.tenant_id for t in ended] == [attacker.tenant_id] and "idle in transaction" in ended[0].reason
            assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                (evil.info.backend_pid,)).fetchone() == (0,)


def test_alter_role_current_user_is_put_back(tenant_db, db, tenant_ids):
    attacker = _create(db, tenant_ids("drifter"))
    with db.connection() as conn:  # the verifier the platform stored at provisioning
        stored = schema.scram_verifier(conn, attacker.role_name, "stored-password")
        conn.execute("UPDATE control.tenants SET password_verifier = %s WHERE tenant_id = %s",
                     (stored, attacker.tenant_id))
    with _as_tenant(tenant_db, attacker) as evil:
        evil.execute("ALTER ROLE CURRENT_USER SET statement_timeout = 0")
        evil.execute("ALTER ROLE CURRENT_USER SET work_mem = '8GB'")
        evil.execute(sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} SET work_mem = '8GB'").format(
            sql.Identifier(evil.info.dbname)))
        evil.execute("ALTER ROLE CURRENT_USER PASSWORD 'hijacked'")
    with db.connection() as conn:
        assert repair_roles(conn) >= 1
    with psycopg.connect(tenant_db.admin_url, autocommit=True) as admin:
        settings = admin.execute("SELECT s.setdatabase, s.setconfig FROM pg_db_role_setting s"
                                 " WHERE s.setrole = %s::regrole", (attacker.role_name,)).fetchall()
        password = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                                 (attacker.role_name,)).fetchone()[0]
    assert settings == [(0, [f"search_path={attacker.schema_name}"])]
    assert password == stored


# 5. Other databases ----------------------------------------------------------------------------

@pytest.mark.parametrize("database", ["postgres", "template1"])
def test_a_tenant_cannot_log_in_to_the_other_databases(tenant_db, db, tenant_ids, database):
    attacker = _create(db, tenant_ids("roamer"))
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        with _as_tenant(tenant_db, attacker, dbname=database):
            pass


def test_where_connect_cannot_be_revoked_the_reaper_ends_the_session(tenant_db, db, tenant_ids):
    """RDS does not let the master user revoke CONNECT on every database (rdsadmin's): simulated
    by giving template1 back to PUBLIC; a tenant session there would make CREATE DATABASE fail."""
    attacker = _create(db, tenant_ids("sitter"))
    with psycopg.connect(tenant_db.admin_url, autocommit=True) as admin:
        admin.execute("GRANT CONNECT ON DATABASE template1 TO PUBLIC")
        try:
            with _as_tenant(tenant_db, attacker, dbname="template1") as evil:
                with db.connection() as conn:
                    ended = reap_sessions(conn, FAST, actor="test")
                assert [t.tenant_id for t in ended] == [attacker.tenant_id] and "template1" in ended[0].reason
                assert _dead(evil)
        finally:
            admin.execute("REVOKE ALL ON DATABASE template1 FROM PUBLIC")


# 6. The business in the catalog -----------------------------------------------------------------

# What any role reads about a role (pg_roles, its memberships and per-database settings), with its
# own name taken out of its search_path: the name itself (opaque, `t_<16 hex>`) is all that may differ.
_VISIBLE_ROLE = """
SELECT r.rolname,
       to_jsonb(r) - 'rolname' - 'oid' - 'rolconfig' AS attributes,
       replace(array_to_string(r.rolconfig, ','), r.rolname, '<own name>') AS config,
       ARRAY(SELECT concat_ws(':', m.roleid::regrole, m.grantor::regrole, m.admin_option, m.inherit_option,
                              m.set_option)
             FROM pg_auth_members m WHERE m.member = r.oid ORDER BY 1) AS member_of,
       (SELECT count(*) FROM pg_auth_members m WHERE m.roleid = r.oid) AS members,
       (SELECT count(*) FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase <> 0) AS database_settings
FROM pg_roles r WHERE r.rolname = ANY(%s)
"""


def _can_log_in(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError as exc:
        assert "password authentication failed" in str(exc), exc  # the password, not NOLOGIN, refuses it
        return False


def test_the_catalog_tells_a_tenant_neither_tier_nor_state_of_the_others(tenant_db, db, tenant_ids, tmp_path):
    """Issue 10.6: each role's CONNECTION LIMIT was its tier, NOLOGIN meant suspended (or not yet
    active, or leaving), and pg_roles is readable by every tenant."""
    spy = _create(db, tenant_ids("census"), tier="starter")
    others = {"business": _create(db, tenant_ids("big"), tier="business"),
              "suspended": _create(db, tenant_ids("late"), tier="pro"),
              "leaving": _create(db, tenant_ids("gone"), tier="pro")}
    with db.connection() as conn:
        lifecycle.suspend(conn, others["suspended"].tenant_id, reason="payment failed", actor="test")
        lifecycle.offboard(conn, others["leaving"].tenant_id, actor="test", export_to=str(tmp_path), retention_days=1)
        schema.set_password(conn, others["business"].role_name, "a-password")
        request = CreateRequest.parse({"tenant_id": tenant_ids("new"), "tier": "business", "admin_email": "a@b.io"})
        others["provisioning"] = lifecycle.create(conn, request, actor="test",
                                                  steps=(provisioning.DatabaseStep(),)).tenant  # never activated
        states = {t.tenant_id: t.state for t in records.all_tenants(conn)}
    assert [states[t.tenant_id] for t in others.values()] == ["active", "suspended", "offboarding", "provisioning"]
    with _as_tenant(tenant_db, spy) as evil:
        seen = evil.execute(_VISIBLE_ROLE, ([spy.role_name, *(t.role_name for t in others.values())],)).fetchall()
    assert len(seen) == 5
    assert len({tuple(map(str, row[1:])) for row in seen}) == 1, seen
    attributes = seen[0][1]
    assert attributes["rolcanlogin"] is True and attributes["rolconnlimit"] == load_tiers().role_connection_limit


def test_login_is_the_password_alone_and_follows_the_state(db, tenant_ids, password_login, tmp_path):
    """With every role LOGIN, a tenant that must not log in (not yet active, suspended, leaving) has
    no password; activation and resume give it the stored one again."""
    deriver = PasswordDeriver.from_text("k" * 64)
    before_activation: list[bool] = []

    class TryToLogIn:  # between the password step and activation: the password exists, unusable
        name = "try"

        def apply(self, ctx):
            role = ctx.tenant.role_name
            before_activation.append(_can_log_in(password_login(role, deriver.password(role))))

        def undo(self, ctx):
            pass

    with db.connection() as conn:
        request = CreateRequest.parse({"tenant_id": tenant_ids("keyed"), "tier": "pro", "admin_email": "a@b.io"})
        tenant = lifecycle.create(conn, request, actor="test", steps=(
            provisioning.DatabaseStep(), provisioning.PasswordStep(lambda: deriver), TryToLogIn(),
            provisioning.ActivateStep())).tenant
    url = password_login(tenant.role_name, deriver.password(tenant.role_name))
    assert before_activation == [False]
    assert _can_log_in(url) and not _can_log_in(password_login(tenant.role_name, "guessed"))
    with _session(url) as session, db.connection() as conn:
        lifecycle.suspend(conn, tenant.tenant_id, reason="payment failed", actor="test")
        assert _dead(session)
    assert not _can_log_in(url)
    with db.connection() as conn:
        repair_roles(conn)  # the reaper's repair keeps a suspended tenant without a password
    assert not _can_log_in(url)
    with db.connection() as conn:
        lifecycle.resume(conn, tenant.tenant_id, actor="test")
    assert _can_log_in(url)
    with db.connection() as conn:
        lifecycle.offboard(conn, tenant.tenant_id, actor="test", export_to=str(tmp_path), retention_days=1)
    assert not _can_log_in(url)


def test_one_reaper_cycle_gives_roles_made_before_the_common_shape(tenant_db, db, tenant_ids):
    """Roles provisioned before issue 10.6 (the tier's CONNECTION LIMIT; NOLOGIN but the password
    kept while suspended) look like every other after one repair, and the suspended one has no password."""
    active, suspended = _create(db, tenant_ids("old"), tier="starter"), _create(db, tenant_ids("old-late"), tier="pro")
    with db.connection() as conn:
        for tenant in (active, suspended):
            schema.set_password(conn, tenant.role_name, "the-password")
        lifecycle.suspend(conn, suspended.tenant_id, reason="payment failed", actor="test")
        kept = conn.execute("SELECT password_verifier FROM control.tenants WHERE tenant_id = %s",
                            (suspended.tenant_id,)).fetchone()[0]
    with tenant_db.admin() as admin:
        admin.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT 5").format(sql.Identifier(active.role_name)))
        admin.execute(sql.SQL("ALTER ROLE {} NOLOGIN CONNECTION LIMIT 20 PASSWORD {}").format(
            sql.Identifier(suspended.role_name), sql.Literal(kept)))
    with db.connection() as conn:
        assert repair_roles(conn) >= 2
        shapes = conn.execute("SELECT rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname = ANY(%s)",
                              ([active.role_name, suspended.role_name],)).fetchall()
    assert shapes == [(True, load_tiers().role_connection_limit)] * 2
    assert tenant_db.verifier(active.role_name) is not None and tenant_db.verifier(suspended.role_name) is None


async def _gateway_sessions(tenant_db, key_id: str, wanted: int) -> int:
    """How many sessions the services' pools open at once for the tenant of `key_id` (resolved
    from control.tenants, as a request is), up to `wanted`."""
    control_plane = ControlPlane(tenant_db.url, provisioner_role=tenant_db.provisioner_role)
    pools = TenantPools(tenant_db.url, catalog=load_tiers(), deriver=None, per_tenant=100, wait_seconds=0.2)
    await control_plane.open()
    try:
        record = await control_plane.lookup(key_id)
        assert record is not None
        async with AsyncExitStack() as held:
            for opened in range(wanted):
                try:
                    await held.enter_async_context(pools.session(record.tenant))
                except PoolExhausted:
                    return opened
        return wanted
    finally:
        await pools.close()
        await control_plane.close()


def test_a_tier_change_moves_the_connection_cap_that_the_role_no_longer_shows(tenant_db, db, tenant_ids):
    tenant = _create(db, tenant_ids("grower"), tier="starter")  # 5 connections; pro: 20
    with db.connection() as conn:
        key = keys.create(conn, tenant.tenant_id, name="test", actor="test")
    assert asyncio.run(_gateway_sessions(tenant_db, key.key_id, 7)) == 5
    sessions = [psycopg.connect(tenant_db.login_url(tenant.role_name), autocommit=True) for _ in range(7)]
    try:
        with db.connection() as conn:
            ended = reap_sessions(conn, FAST, actor="test")
        assert sorted(t.pid for t in ended) == sorted(s.info.backend_pid for s in sessions[5:])  # the newest two
        assert all("tier 'starter' allows 5" in t.reason for t in ended)
        assert [_dead(s) for s in sessions] == [False] * 5 + [True] * 2
        with db.connection() as conn:
            lifecycle.change_tier(conn, tenant.tenant_id, "pro", actor="test")
        sessions += [psycopg.connect(tenant_db.login_url(tenant.role_name), autocommit=True) for _ in range(2)]
        with db.connection() as conn:
            assert reap_sessions(conn, FAST, actor="test") == []
            lifecycle.change_tier(conn, tenant.tenant_id, "starter", actor="test")
        # A fleet of 6 service pods may each hold one session of a starter tenant (5): 7 open, 1 ended.
        with db.connection() as conn:
            fleet = dataclasses.replace(FAST, fleet_sessions=6)
            assert [t.reason for t in reap_sessions(conn, fleet, actor="test")] == \
                ["7 sessions open, tier 'starter' allows 6 (the newest are ended)"]
        with db.connection() as conn:
            lifecycle.change_tier(conn, tenant.tenant_id, "pro", actor="test")
    finally:
        for session in sessions:
            session.close()
    assert asyncio.run(_gateway_sessions(tenant_db, key.key_id, 7)) == 7


# 9. Exports ------------------------------------------------------------------------------------

def test_offboarding_exports_are_readable_by_their_owner_only(db, tenant_ids, tmp_path):
    leaving = _create(db, tenant_ids("exported"))
    previous = os.umask(0o022)  # the usual umask: before issue 10 the export was world-readable
    try:
        with db.connection() as conn:
            lifecycle.offboard(conn, leaving.tenant_id, actor="test", export_to=str(tmp_path / "exports"),
                                 retention_days=30)
    finally:
        os.umask(previous)
    (folder,) = (tmp_path / "exports").iterdir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}
    assert "manifest.json" in modes and "users.csv" in modes
    assert set(modes.values()) == {0o600}
