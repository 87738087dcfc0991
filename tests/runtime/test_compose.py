"""The composition root: what the lifecycle is made of, visible without running anything."""

from __future__ import annotations

from tenant_provisioner.billing.listeners import StripeSubscriptionListener
from tenant_provisioner.limits.listeners import LimiterListener
from tenant_provisioner.runtime import compose
from tenant_provisioner.gateway.credentials import PasswordDeriver


class NoStore:
    """Stands for a secret store; composing never calls it."""


def test_steps_run_database_password_billing_limits_activate_and_never_a_secret():
    without_key = compose.lifecycle(secret_store=NoStore())  # type: ignore[arg-type]
    assert [s.name for s in without_key.steps()] == ["database", "stripe", "limits", "activate"]
    with_key = compose.lifecycle(secret_store=NoStore(),  # type: ignore[arg-type]
                                 password_deriver=lambda: PasswordDeriver.from_text("k" * 32))
    assert [s.name for s in with_key.steps()] == ["database", "password", "stripe", "limits", "activate"]


def test_listeners_get_the_clients_they_were_given_and_nothing_else():
    redis_client = object()
    lifecycle = compose.lifecycle(redis_client=redis_client, key_prefix="t1:")  # type: ignore[arg-type]
    billing, limiter = lifecycle.events.listeners
    assert isinstance(billing, StripeSubscriptionListener) and billing.accounts is None   # no Stripe client
    assert isinstance(limiter, LimiterListener)
    assert (limiter.client, limiter.key_prefix) == (redis_client, "t1:")
