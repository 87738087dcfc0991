"""The limiter follows suspend/resume at once (a lifecycle listener, wired by the composition root).

Without it a suspension made by an operator (CLI) or by billing would reach Redis only at the
next enforcer cycle (up to 5 minutes). Where the process has no Redis (the client is None) the
listener says so and the enforcer converges later; ``key_prefix`` must match the limiter's
(empty in production).
"""

from __future__ import annotations

import logging

import psycopg
import redis

from tenant_provisioner.limits.state import set_suspended
from tenant_provisioner.tenants.events import LifecycleListener
from tenant_provisioner.tenants.records import Tenant

log = logging.getLogger(__name__)


class LimiterListener(LifecycleListener):
    def __init__(self, client: redis.Redis | None, *, key_prefix: str = "") -> None:
        self.client = client
        self.key_prefix = key_prefix

    def after_suspend(self, conn: psycopg.Connection, tenant: Tenant) -> None:
        self._push(tenant, suspended=True)

    def after_resume(self, conn: psycopg.Connection, tenant: Tenant) -> None:
        self._push(tenant, suspended=False)

    def _push(self, tenant: Tenant, *, suspended: bool) -> None:
        change = "suspended" if suspended else "resumed"
        if self.client is None:
            log.warning("no Redis configured: the limiter learns that %s is %s at the next enforcer cycle",
                        tenant.tenant_id, change)
            return
        try:
            set_suspended(self.client, tenant.tenant_id, suspended, key_prefix=self.key_prefix)
        except redis.RedisError:
            log.warning("Redis unreachable: the limiter learns that %s is %s at the next enforcer cycle",
                        tenant.tenant_id, change)
            raise
