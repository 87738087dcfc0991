"""The named extension points of the tenant lifecycle: what other components may follow, and when.

The lifecycle emits these and never imports who listens; the composition root
(`tenant_provisioner.runtime.compose`) hands the listeners to `Lifecycle` (the model is
django-tenants' ``signals.py``). A listener subclasses `LifecycleListener` and overrides the
events it follows:

| event | when | a failure |
| --- | --- | --- |
| ``before_tier_change(conn, tenant, tier, origin=...)`` | inside the change's transaction, before the database change | undoes the change (e.g. Stripe down: retry later) |
| ``before_offboard(conn, tenant)`` | inside the offboarding transaction, before login is disabled | undoes the offboarding step |
| ``after_suspend(conn, tenant)`` / ``after_resume(conn, tenant)`` | once the change is committed | is logged; the change stands and the component converges on its own |

``origin`` says where a change comes from, so a listener does not echo a change back to its
source: ``Origin.STRIPE`` when Stripe's webhook moved the subscription, ``Origin.PLATFORM``
for every other caller (operator CLI, Lambdas, enforcer).
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Sequence

import psycopg

from tenant_provisioner.tenants.records import Tenant
from tenant_provisioner.tiers import Tier

log = logging.getLogger(__name__)


class Origin(str, Enum):
    """Where a lifecycle change comes from."""

    PLATFORM = "platform"
    STRIPE = "stripe"


class LifecycleListener:
    """Base of every listener: each event does nothing unless overridden."""

    def before_tier_change(self, conn: psycopg.Connection, tenant: Tenant, tier: Tier, *, origin: Origin) -> None:
        """The tenant moves from ``tenant.tier`` to `tier`; raise to refuse."""

    def before_offboard(self, conn: psycopg.Connection, tenant: Tenant) -> None:
        """The tenant stops for good; raise to refuse."""

    def after_suspend(self, conn: psycopg.Connection, tenant: Tenant) -> None:
        """The suspension is committed."""

    def after_resume(self, conn: psycopg.Connection, tenant: Tenant) -> None:
        """The resumption is committed."""


class TenantEvents:
    """Emits each event to the listeners in order."""

    def __init__(self, listeners: Sequence[LifecycleListener] = ()) -> None:
        self.listeners = tuple(listeners)

    def before_tier_change(self, conn: psycopg.Connection, tenant: Tenant, tier: Tier, *, origin: Origin) -> None:
        for listener in self.listeners:
            listener.before_tier_change(conn, tenant, tier, origin=origin)

    def before_offboard(self, conn: psycopg.Connection, tenant: Tenant) -> None:
        for listener in self.listeners:
            listener.before_offboard(conn, tenant)

    def after_suspend(self, conn: psycopg.Connection, tenant: Tenant) -> None:
        self._after("after_suspend", conn, tenant)

    def after_resume(self, conn: psycopg.Connection, tenant: Tenant) -> None:
        self._after("after_resume", conn, tenant)

    def _after(self, event: str, conn: psycopg.Connection, tenant: Tenant) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, event)(conn, tenant)
            except Exception:  # the committed change must not be reported as failed
                log.exception("%s listener %s failed for tenant %s", event, type(listener).__name__,
                              tenant.tenant_id)
