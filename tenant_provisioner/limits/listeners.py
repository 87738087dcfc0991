"""Lifecycle after-commit hooks (`pipeline.run_after_hooks`): the limiter follows suspend/resume at once.

Without them a suspension made by an operator (CLI) or by billing would reach Redis only at the
next enforcer cycle (up to 5 minutes). Where no Redis is configured (``REDIS_URL`` or
``REDIS_HOST`` + ``REDIS_AUTH_SECRET_ARN``) the hook says so and the enforcer converges later;
``LIMITER_KEY_PREFIX`` must match the limiter's prefix (empty in production).
"""

from __future__ import annotations

import logging
import os

import psycopg
import redis

from tenant_provisioner.runtime import clients
from tenant_provisioner.limits.state import set_suspended
from tenant_provisioner.tenants.records import Tenant

log = logging.getLogger(__name__)


def _push(tenant: Tenant, suspended: bool) -> None:
    if not (os.environ.get("REDIS_URL") or os.environ.get("REDIS_HOST")):
        log.warning("no Redis configured: the limiter learns that %s is %s at the next enforcer cycle",
                    tenant.tenant_id, "suspended" if suspended else "resumed")
        return
    client = clients.redis_client()
    try:
        set_suspended(client, tenant.tenant_id, suspended, key_prefix=os.environ.get("LIMITER_KEY_PREFIX", ""))
    except redis.RedisError:
        log.warning("Redis unreachable: the limiter learns that %s is %s at the next enforcer cycle",
                    tenant.tenant_id, "suspended" if suspended else "resumed")
        raise
    finally:
        client.close()


def after_suspend(conn: psycopg.Connection, tenant: Tenant) -> None:  # noqa: ARG001 - hook signature
    _push(tenant, True)


def after_resume(conn: psycopg.Connection, tenant: Tenant) -> None:  # noqa: ARG001 - hook signature
    _push(tenant, False)
