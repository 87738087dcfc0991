"""Billing settings: Stripe credentials and the billing defaults (the one place they live).

In AWS the API key and the webhook signing secret come from Secrets Manager
(``STRIPE_API_KEY_SECRET_ID`` / ``STRIPE_WEBHOOK_SECRET_ID``); locally ``STRIPE_API_KEY`` /
``STRIPE_WEBHOOK_SECRET`` may hold them instead. With no key at all, `BillingSettings.client`
returns None and the callers say so loudly: billing is optional for local work, but its absence
must never go unnoticed (a production Lambda without a key logs an error every call). A secret
still holding the placeholder CDK generated counts as "no key". The stacks build this class from
their config and set `BillingSettings.to_env` on the functions that talk to Stripe.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, TypeVar

import stripe
from aws_lambda_powertools.utilities import parameters

from tenant_provisioner.billing.errors import StripeRejected
from tenant_provisioner.errors import ConfigError, TransientError
from tenant_provisioner.runtime import env as envvars

T = TypeVar("T")

DEFAULT_PREFIX = "saas"
API_KEY_PREFIXES = ("sk_live_", "sk_test_", "rk_live_", "rk_test_")
WEBHOOK_SECRET_PREFIX = "whsec_"


@dataclass(frozen=True, kw_only=True)
class BillingSettings:
    """What the billing code needs; the defaults suit every environment."""

    catalog_prefix: str = DEFAULT_PREFIX      # product ids, lookup keys and meter event name start with it
    payment_grace_days: int = 7               # first failed payment -> suspension
    offboard_after_days: int = 30             # after Stripe ended a subscription: export, then drop
    api_base: str | None = None               # only for a local/test Stripe-compatible server
    api_version: str = stripe.api_version     # the version the SDK is built for; the webhook endpoint's too
    max_network_retries: int = 2
    report_concurrency: int = 8               # meter events in flight at once (Stripe: 1,000/s live)
    api_key: str | None = None                # local runs; Lambdas read the secret below
    api_key_secret_id: str | None = None
    webhook_secret: str | None = None
    webhook_secret_id: str | None = None

    def __post_init__(self) -> None:
        if not self.catalog_prefix.replace("_", "").isalnum() or not self.catalog_prefix.islower():
            raise ConfigError(f"billing catalog prefix must be lower-case letters, digits and _: "
                              f"{self.catalog_prefix!r}")
        if self.report_concurrency < 1:
            raise ConfigError("billing report_concurrency must be >= 1")
        if self.payment_grace_days < 0 or self.offboard_after_days < 0:
            raise ConfigError("BILLING_PAYMENT_GRACE_DAYS and BILLING_OFFBOARD_AFTER_DAYS must be >= 0")

    @property
    def meter_event_name(self) -> str:
        return f"{self.catalog_prefix}_api_requests"

    @classmethod
    def from_env(cls, env: envvars.Env | None = None) -> "BillingSettings":
        env = envvars.environ(env)
        return cls(catalog_prefix=env.get("BILLING_CATALOG_PREFIX") or DEFAULT_PREFIX,
                   payment_grace_days=envvars.whole_number(env, "BILLING_PAYMENT_GRACE_DAYS", 7),
                   offboard_after_days=envvars.whole_number(env, "BILLING_OFFBOARD_AFTER_DAYS", 30),
                   api_base=envvars.optional(env, "STRIPE_API_BASE"),
                   api_version=env.get("STRIPE_API_VERSION") or stripe.api_version,
                   max_network_retries=envvars.whole_number(env, "STRIPE_MAX_NETWORK_RETRIES", 2),
                   api_key=envvars.optional(env, "STRIPE_API_KEY"),
                   api_key_secret_id=envvars.optional(env, "STRIPE_API_KEY_SECRET_ID"),
                   webhook_secret=envvars.optional(env, "STRIPE_WEBHOOK_SECRET"),
                   webhook_secret_id=envvars.optional(env, "STRIPE_WEBHOOK_SECRET_ID"))

    def to_env(self) -> dict[str, str]:
        """What a function's environment says (credentials only as secret ids, never values)."""
        return envvars.to_env({
            "BILLING_CATALOG_PREFIX": self.catalog_prefix if self.catalog_prefix != DEFAULT_PREFIX else None,
            "BILLING_PAYMENT_GRACE_DAYS": self.payment_grace_days,
            "BILLING_OFFBOARD_AFTER_DAYS": self.offboard_after_days, "STRIPE_API_VERSION": self.api_version,
            "STRIPE_API_KEY_SECRET_ID": self.api_key_secret_id, "STRIPE_WEBHOOK_SECRET_ID": self.webhook_secret_id})

    def api_key_value(self) -> str | None:
        """The Stripe secret key, or None when none is configured (placeholder values count as none)."""
        value = _read(self.api_key, self.api_key_secret_id)
        return value if value and value.startswith(API_KEY_PREFIXES) else None

    def webhook_signing_secret(self) -> str:
        """The endpoint's signing secret (``whsec_...``); ConfigError when it is missing or a placeholder."""
        value = _read(self.webhook_secret, self.webhook_secret_id)
        if not value or not value.startswith(WEBHOOK_SECRET_PREFIX):
            raise ConfigError("the Stripe webhook signing secret is not configured: put the endpoint's whsec_... "
                              "value into the secret named by STRIPE_WEBHOOK_SECRET_ID "
                              "(docs/runbooks/stripe-setup.md)")
        return value

    def client(self) -> stripe.StripeClient | None:
        """A configured client, or None when no key is configured (callers say so: `skipped_notice`)."""
        key = self.api_key_value()
        if key is None:
            return None
        base = {"api": self.api_base} if self.api_base else None
        return stripe.StripeClient(key, base_addresses=base, stripe_version=self.api_version,
                                   max_network_retries=self.max_network_retries)


def _from_secrets_manager(secret_id: str) -> str:
    """A secret's string value, cached for 5 minutes per process (Powertools parameters)."""
    try:
        value = parameters.get_secret(secret_id, max_age=300)
    except parameters.exceptions.GetParameterError as exc:
        raise TransientError(f"could not read secret {secret_id}: {exc}") from exc
    return value if isinstance(value, str) else ""


def _read(value: str | None, secret_id: str | None) -> str | None:
    if value:
        return value.strip()
    if secret_id:
        return _from_secrets_manager(secret_id).strip()
    return None


def skipped_notice(what: str) -> None:
    """Say loudly on stderr (the terminal, or the function's log in Lambda) that billing was skipped;
    one marked line a log metric filter can count."""
    message = (f"BILLING SKIPPED ({what}): no Stripe API key configured (STRIPE_API_KEY or "
               "STRIPE_API_KEY_SECRET_ID). No customer, subscription or usage reaches Stripe.")
    print(f"*** {message} ***", file=sys.stderr, flush=True)


def is_transient(exc: stripe.StripeError) -> bool:
    """Errors a later retry may fix: network, Stripe 5xx, rate limiting, lock conflicts."""
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return True
    return isinstance(exc, stripe.APIError) or (exc.http_status or 0) >= 500 or exc.http_status == 409


def translate(exc: stripe.StripeError, doing: str) -> Exception:
    """A Stripe failure as one of our typed errors (TransientError when a retry may help)."""
    if is_transient(exc):
        return TransientError(f"Stripe unavailable while {doing}: {exc.user_message or exc}")
    if isinstance(exc, stripe.AuthenticationError):
        return ConfigError(f"Stripe rejected the API key while {doing}: {exc.user_message or exc}")
    return StripeRejected(f"Stripe refused {doing}: {exc.user_message or exc}")


def unless_missing(doing: str, call: Callable[[], T]) -> T | None:
    """`call()`, or None when Stripe answers that the object does not exist; other errors typed."""
    try:
        return call()
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_missing":
            return None
        raise translate(exc, doing) from exc
    except stripe.StripeError as exc:
        raise translate(exc, doing) from exc
