"""Database access for the services: the control plane (as the gateway role) and tenant sessions
(as each tenant's OWN role), under a per-instance connection budget.

Tenant sessions never share a connection with another tenant and never ``SET ROLE``: each
connection logs in as the tenant's role, whose ``search_path`` is its schema and whose grants
cover nothing else, so the database — not the app — keeps tenant A's SQL (injected or not) away
from tenant B's rows.

`TenantPools` is the budget (docs/request-path.md has the arithmetic): an LRU of small
per-tenant pools, at most `tenant_cap` connections per tenant — the tier's ``db_connections``,
less what the worker holds, shared by ``replicas`` instances (``per_tenant`` lowers it further
when set) — and at most ``total`` per instance. The tier comes from ``control.tenants`` (the key
lookup), never from the role, whose ``CONNECTION LIMIT`` is the same for every tier so that
``pg_roles`` does not tell tiers apart; against clients that ignore these caps the session
reaper ends a tenant's sessions beyond its tier (tenant_provisioner/limits/reaper.py).
A request that finds its tenant at its cap, or the instance at ``total`` with nothing idle to
evict, waits up to ``wait_seconds`` in a bounded queue, then gets `PoolExhausted` (503 with
Retry-After) — never an unbounded wait. Idle connections close after ``idle_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tenant_provisioner import migrations
from tenant_provisioner.errors import TransientError
from tenant_provisioner.gateway.credentials import PasswordDeriver
from tenant_provisioner.tiers import TierCatalog

log = logging.getLogger(__name__)

APPLICATION_NAME = "saas-service"
# The worker's connections per tenant (services/worker): kept out of what the API instances share.
WORKER_CONNECTIONS_PER_TENANT = 1


def tenant_cap(*, tier_limit: int, replicas: int, held_elsewhere: int = 0, per_tenant: int | None = None) -> int:
    """One instance's cap for a tenant: its tier's ``db_connections`` less the connections
    `held_elsewhere` (the worker's), shared by `replicas` instances, at most `per_tenant` if set.
    Never below 1: a tier too small for the replicas is held to it by the session reaper (the
    newest sessions beyond it ended, each a 503)."""
    share = (tier_limit - held_elsewhere) // max(1, replicas)
    return max(1, share if per_tenant is None else min(per_tenant, share))


def gateway_role(provisioner_role: str) -> str:
    """The services' control-plane role (created by control migration 0004)."""
    return f"{provisioner_role}_gateway"


class PoolExhausted(TransientError):
    """No tenant connection within the wait: the caller answers 503 with ``Retry-After``."""

    code = "pool_exhausted"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class TenantContext:
    """The tenant a request acts for, as resolved from its API key (never from client headers)."""

    tenant_id: str
    tier: str
    state: str
    role_name: str
    schema_name: str
    key_id: str
    key_prefix: str


@dataclass(frozen=True)
class KeyRecord:
    """One ``control.api_keys`` row joined with its tenant (what the resolver caches)."""

    key_hash: bytes
    revoked: bool
    tenant: TenantContext


_LOOKUP = """
SELECT k.key_hash, k.revoked_at IS NOT NULL, k.prefix, t.tenant_id, t.tier, t.state, t.role_name, t.schema_name
FROM control.api_keys k JOIN control.tenants t USING (tenant_id)
WHERE k.key_id = %s
"""


class ControlPlane:
    """A small async pool acting as the gateway role: key lookups, readiness, the job queue."""

    def __init__(self, url: str, *, provisioner_role: str, max_size: int = 4, timeout: float = 2.0) -> None:
        self.role = gateway_role(provisioner_role)
        self.timeout = timeout
        self.pool = AsyncConnectionPool(
            url, min_size=1, max_size=max_size, open=False, timeout=timeout, name="control",
            kwargs={"autocommit": True, "application_name": APPLICATION_NAME, "connect_timeout": 5},
            configure=self._configure)

    async def _configure(self, conn: psycopg.AsyncConnection) -> None:
        await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.role)))

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        try:
            async with self.pool.connection(timeout=self.timeout) as conn:
                yield conn
        except PoolTimeout as exc:
            raise TransientError(f"control database: no connection within {self.timeout:.1f}s") from exc
        except psycopg.OperationalError as exc:
            raise TransientError(f"control database unavailable: {exc}") from exc

    async def lookup(self, key_id: str) -> KeyRecord | None:
        async with self.connection() as conn:
            row = await (await conn.execute(_LOOKUP, (key_id,))).fetchone()
        if row is None:
            return None
        key_hash, revoked, prefix, tenant_id, tier, state, role_name, schema_name = row
        return KeyRecord(key_hash=bytes(key_hash), revoked=bool(revoked), tenant=TenantContext(
            tenant_id=tenant_id, tier=tier, state=state, role_name=role_name, schema_name=schema_name,
            key_id=key_id, key_prefix=prefix))

    async def unready_reasons(self) -> list[str]:
        """Why the control plane cannot serve: migrations behind the code (empty when ready)."""
        reasons: list[str] = []
        async with self.connection() as conn:
            control = (await (await conn.execute(
                "SELECT coalesce(max(version), 0) FROM control.schema_migrations")).fetchone() or (0,))[0]
            behind = (await (await conn.execute(
                "SELECT count(*) FROM control.tenants WHERE state = 'active' AND schema_version < %s",
                (migrations.latest_version("tenant"),))).fetchone() or (0,))[0]
        if control < migrations.latest_version("control"):
            reasons.append(f"control schema at version {control}, code expects "
                           f"{migrations.latest_version('control')}: run `tenant-provisioner init`")
        if behind:
            reasons.append(f"{behind} active tenant schema(s) behind version "
                           f"{migrations.latest_version('tenant')}: run `tenant-provisioner migrate`")
        return reasons


@dataclass
class _Slot:
    """One tenant's share of the budget: idle connections (most recent last) and the open count."""

    cap: int
    idle: list[tuple[psycopg.AsyncConnection, float]] = field(default_factory=list)
    opened: int = 0


class TenantPools:
    """Per-instance LRU of small per-tenant pools with idle eviction and a hard total."""

    def __init__(self, url: str, *, catalog: TierCatalog, deriver: PasswordDeriver | None,
                 total: int = 40, per_tenant: int | None = None, replicas: int = 1, held_elsewhere: int = 0,
                 idle_seconds: float = 60.0,
                 wait_seconds: float = 2.0, max_waiters: int = 200, statement_timeout_ms: int = 5000) -> None:
        base = conninfo_to_dict(url)
        base.pop("user", None)
        base.pop("password", None)
        self._base: dict[str, Any] = base
        self._catalog = catalog
        self._deriver = deriver
        self.total = total
        self.per_tenant = per_tenant
        self.replicas = max(1, replicas)
        self.held_elsewhere = held_elsewhere
        self.idle_seconds = idle_seconds
        self.wait_seconds = wait_seconds
        self.max_waiters = max_waiters
        self._options = f"-c statement_timeout={int(statement_timeout_ms)} -c idle_in_transaction_session_timeout=10000"
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._opened = 0
        self.counters = {"connects": 0, "evictions": 0, "exhausted": 0}
        self._waiters = 0
        self._cond = asyncio.Condition()
        self._closing: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None

    # -- budget ---------------------------------------------------------------------------------
    def cap_for(self, tier: str) -> int:
        """Per-instance cap of a tenant of `tier` (`tenant_cap` of the tier's ``db_connections``)."""
        return tenant_cap(tier_limit=self._catalog.get(tier).db_connections, replicas=self.replicas,
                          held_elsewhere=self.held_elsewhere, per_tenant=self.per_tenant)

    def stats(self) -> dict[str, int]:
        return {**self.counters, "open": self._opened, "tenants": len(self._slots), "waiting": self._waiters,
                "idle": sum(len(s.idle) for s in self._slots.values())}

    def _close_later(self, conn: psycopg.AsyncConnection) -> None:
        task = asyncio.get_running_loop().create_task(conn.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _forget(self, role: str, slot: _Slot, count: int = 1) -> None:
        slot.opened -= count
        self._opened -= count
        if slot.opened <= 0 and not slot.idle:
            self._slots.pop(role, None)

    def _evict_idle(self, keep: str) -> bool:
        """Close the least recently used idle connection of another tenant; False if none."""
        for role, slot in self._slots.items():
            if role != keep and slot.idle:
                conn, _ = slot.idle.pop(0)
                self._close_later(conn)
                self._forget(role, slot)
                self.counters["evictions"] += 1
                return True
        return False

    async def _reserve(self, tenant: TenantContext) -> tuple[_Slot, psycopg.AsyncConnection | None]:
        """An idle connection of the tenant, or a reserved slot to open one (None), within the wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        role = tenant.role_name
        async with self._cond:
            waited = False
            try:
                while True:
                    slot = self._slots.get(role)
                    if slot is None:
                        slot = self._slots[role] = _Slot(cap=self.cap_for(tenant.tier))
                    self._slots.move_to_end(role)
                    while slot.idle:
                        conn, _ = slot.idle.pop()
                        if not (conn.closed or conn.broken):
                            return slot, conn
                        self._forget(role, slot)
                        slot = self._slots.setdefault(role, slot)
                    if slot.opened < slot.cap and (self._opened < self.total or self._evict_idle(role)):
                        slot = self._slots.setdefault(role, slot)
                        slot.opened += 1
                        self._opened += 1
                        return slot, None
                    remaining = deadline - loop.time()
                    if remaining <= 0 or (not waited and self._waiters >= self.max_waiters):
                        self.counters["exhausted"] += 1
                        raise PoolExhausted(
                            f"tenant {tenant.tenant_id}: no database connection within {self.wait_seconds:.1f}s "
                            f"({slot.opened}/{slot.cap} for the tenant, {self._opened}/{self.total} on this instance)")
                    if not waited:
                        waited = True
                        self._waiters += 1
                    try:
                        await asyncio.wait_for(self._cond.wait(), remaining)
                    except TimeoutError:
                        pass
            finally:
                if waited:
                    self._waiters -= 1

    async def _connect(self, tenant: TenantContext) -> psycopg.AsyncConnection:
        params = dict(self._base, user=tenant.role_name, application_name=APPLICATION_NAME,
                      connect_timeout=5, options=self._options)
        if self._deriver is not None:
            params["password"] = self._deriver.password(tenant.role_name)
        self.counters["connects"] += 1
        try:
            return await psycopg.AsyncConnection.connect(**params, autocommit=True)
        except psycopg.OperationalError as exc:
            text = str(exc)
            if "too many connections" in text:  # the role's CONNECTION LIMIT (every tier's), cluster-wide
                raise PoolExhausted(f"tenant {tenant.tenant_id}: its connection limit is in use "
                                    "by other instances") from exc
            raise TransientError(f"tenant {tenant.tenant_id}: cannot connect as its role: "
                                 f"{text.strip().splitlines()[-1] if text.strip() else type(exc).__name__}") from exc

    async def _release(self, role: str, slot: _Slot, conn: psycopg.AsyncConnection) -> None:
        reusable = not (conn.closed or conn.broken) and conn.info.transaction_status == TransactionStatus.IDLE
        async with self._cond:
            if reusable:
                slot.idle.append((conn, time.monotonic()))
                self._slots.setdefault(role, slot)
            else:
                self._close_later(conn)
                self._forget(role, slot)
            self._cond.notify_all()

    @asynccontextmanager
    async def session(self, tenant: TenantContext) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection logged in as `tenant`'s role (autocommit; use ``conn.transaction()``)."""
        slot, conn = await self._reserve(tenant)
        if conn is None:
            try:
                conn = await self._connect(tenant)
            except BaseException:
                async with self._cond:
                    self._forget(tenant.role_name, slot)
                    self._cond.notify_all()
                raise
        try:
            yield conn
        finally:
            await self._release(tenant.role_name, slot, conn)

    # -- idle eviction ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, self.idle_seconds / 4))
            await self.reap()

    async def reap(self, older_than: float | None = None) -> int:
        """Close connections idle longer than `older_than` (default ``idle_seconds``)."""
        cutoff = time.monotonic() - (self.idle_seconds if older_than is None else older_than)
        closed = 0
        async with self._cond:
            for role, slot in list(self._slots.items()):
                keep = [(c, at) for c, at in slot.idle if at > cutoff]
                for conn, _ in slot.idle:
                    if all(conn is not k for k, _ in keep):
                        self._close_later(conn)
                        closed += 1
                dropped = len(slot.idle) - len(keep)
                slot.idle = keep
                if dropped:
                    self._forget(role, slot, dropped)
            self._cond.notify_all()
        return closed

    async def close(self) -> None:
        log.info("tenant pools closing", extra={"fields": self.stats()})
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        await self.reap(older_than=-1.0)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
