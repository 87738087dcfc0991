"""Settings, read once per process into typed frozen classes: with billing's and the cost report's
own classes, the only code that reads ``os.environ``.

Each Lambda function has one class (`FUNCTION_SETTINGS`): its handler calls ``from_env()``; the
stack that creates the function builds the same class from its config and sets ``to_env()``,
so a stack cannot set a variable the function does not read, nor spell one differently;
``tests/stacks/test_function_settings.py`` checks every synthesized function of every
environment against its class. The operator CLI reads `OperatorSettings` (everything optional).

Parts shared by several functions: `DatabaseSettings` (``tenant_provisioner/db.py``), `RedisSettings`, `SecretStoreSettings`,
`NotifierSettings`, `BudgetSettings`, and billing's `BillingSettings`
(``tenant_provisioner/billing/settings.py``, where billing's defaults live).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from typing import Any

import redis
from aws_lambda_powertools.utilities import parameters

from tenant_provisioner.billing.settings import BillingSettings
from tenant_provisioner.costs.settings import ReportSettings
from tenant_provisioner.db import DatabaseSettings
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.gateway.credentials import PasswordDeriver
from tenant_provisioner.limits.reaper import ReaperSettings
from tenant_provisioner.runtime import env as envvars
from tenant_provisioner.runtime.env import Env
from tenant_provisioner.drills.settings import RestoreDrillSettings

# Set on every function by its construct and read by Powertools itself.
COMMON_VARIABLES = frozenset({"POWERTOOLS_SERVICE_NAME"})
REDIS_TIMEOUT_S = 2.0
SECRET_MAX_AGE_S = 300


@dataclass(frozen=True, kw_only=True)
class RedisSettings:
    """The limiter's Redis (the primary: limiter state must never be read stale); optional where a
    function only follows suspensions (`configured`)."""

    url: str | None = None
    host: str | None = None
    port: int = 6379
    auth_secret_arn: str | None = None
    key_prefix: str = ""      # must match the limiter's (empty in production)

    @classmethod
    def from_env(cls, env: Env | None = None) -> "RedisSettings":
        env = envvars.environ(env)
        return cls(url=envvars.optional(env, "REDIS_URL"), host=envvars.optional(env, "REDIS_HOST"),
                   port=envvars.whole_number(env, "REDIS_PORT", 6379),
                   auth_secret_arn=envvars.optional(env, "REDIS_AUTH_SECRET_ARN"),
                   key_prefix=env.get("LIMITER_KEY_PREFIX", ""))

    def to_env(self) -> dict[str, str]:
        return envvars.to_env({"REDIS_URL": self.url, "REDIS_HOST": self.host,
                               "REDIS_PORT": self.port if self.host else None,
                               "REDIS_AUTH_SECRET_ARN": self.auth_secret_arn, "LIMITER_KEY_PREFIX": self.key_prefix})

    @property
    def configured(self) -> bool:
        return bool(self.url or self.host)

    def client(self) -> redis.Redis:
        """``url`` as given, or ``host`` over TLS with the AUTH token from Secrets Manager."""
        if self.url:
            return redis.Redis.from_url(self.url, socket_timeout=REDIS_TIMEOUT_S,
                                        socket_connect_timeout=REDIS_TIMEOUT_S)
        if not self.host or not self.auth_secret_arn:
            raise ConfigError("no Redis: set REDIS_URL, or REDIS_HOST and REDIS_AUTH_SECRET_ARN")
        token = parameters.get_secret(self.auth_secret_arn, max_age=SECRET_MAX_AGE_S)
        return redis.Redis(host=self.host, port=self.port, password=str(token), ssl=True,
                           socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)


@dataclass(frozen=True, kw_only=True)
class SecretStoreSettings:
    """Where per-tenant credential secrets were kept, ``<prefix>/tenants/<tenant_id>``: provisioning no
    longer writes them (passwords are derived, gateway/credentials.py); offboarding deletes one left
    from before."""

    prefix: str

    @classmethod
    def from_env(cls, env: Env | None = None) -> "SecretStoreSettings":
        env = envvars.environ(env)
        return cls(prefix=envvars.required(env, "TENANT_SECRETS_PREFIX", "where legacy tenant secrets are"))

    def to_env(self) -> dict[str, str]:
        return envvars.to_env({"TENANT_SECRETS_PREFIX": self.prefix})


@dataclass(frozen=True, kw_only=True)
class ServiceCredentialsSettings:
    """The API's and worker's secrets that ``init`` (their login) and ``sync_passwords`` (the
    tenant-password key) apply to PostgreSQL; unset locally. Read fresh at each action, so a value
    just rotated (docs/runbooks/service-credentials.md) is the one applied."""

    login_secret_arn: str | None = None
    password_key_secret_arn: str | None = None

    @classmethod
    def from_env(cls, env: Env | None = None) -> "ServiceCredentialsSettings":
        env = envvars.environ(env)
        return cls(login_secret_arn=envvars.optional(env, "SERVICES_DATABASE_SECRET_ARN"),
                   password_key_secret_arn=envvars.optional(env, "TENANT_DB_PASSWORD_KEY_SECRET_ARN"))

    def to_env(self) -> dict[str, str]:
        return envvars.to_env({"SERVICES_DATABASE_SECRET_ARN": self.login_secret_arn,
                               "TENANT_DB_PASSWORD_KEY_SECRET_ARN": self.password_key_secret_arn})

    def login(self) -> tuple[str, str] | None:
        """``(username, password)`` of the services' login, or None where no secret is configured."""
        if not self.login_secret_arn:
            return None
        secret = _json_secret(self.login_secret_arn, "username", "password")
        return str(secret["username"]), str(secret["password"])

    def password_deriver(self) -> PasswordDeriver:
        if not self.password_key_secret_arn:
            raise ConfigError("TENANT_DB_PASSWORD_KEY_SECRET_ARN is not set on this function (stacks/tenants_stack.py)")
        secret = _json_secret(self.password_key_secret_arn, "key")
        version = secret.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(f"secret {self.password_key_secret_arn}: version must be a whole number >= 1")
        return PasswordDeriver.from_text(str(secret["key"]), version)


def _json_secret(arn: str, *fields_: str) -> dict[str, Any]:
    value = parameters.get_secret(arn, transform="json", force_fetch=True)
    if not isinstance(value, dict) or any(not value.get(name) for name in fields_):
        raise ConfigError(f"secret {arn} must be a JSON object with {', '.join(fields_)}")
    return value


@dataclass(frozen=True, kw_only=True)
class NotifierSettings:
    """Breaker notices: email to the tenant admin from `sender`, a message to the ops topic."""

    sender: str
    ops_topic_arn: str

    @classmethod
    def from_env(cls, env: Env | None = None) -> "NotifierSettings":
        env = envvars.environ(env)
        why = "breaker notifications need LIMITS_SENDER_EMAIL and OPS_TOPIC_ARN"
        return cls(sender=envvars.required(env, "LIMITS_SENDER_EMAIL", why),
                   ops_topic_arn=envvars.required(env, "OPS_TOPIC_ARN", why))

    def to_env(self) -> dict[str, str]:
        return envvars.to_env({"LIMITS_SENDER_EMAIL": self.sender, "OPS_TOPIC_ARN": self.ops_topic_arn})


@dataclass(frozen=True, kw_only=True)
class BudgetSettings:
    """The platform budget the breaker reads, whom it tells, and what it may stop."""

    account_id: str
    budget_name: str
    ops_topic_arn: str
    nonprod_db_instances: tuple[str, ...] = ()
    nonprod_nodegroups: tuple[str, ...] = ()    # "<cluster>/<nodegroup>"

    @classmethod
    def from_env(cls, env: Env | None = None) -> "BudgetSettings":
        env = envvars.environ(env)
        why = "the budget breaker reads and reports this budget"
        return cls(account_id=envvars.required(env, "BUDGET_ACCOUNT_ID", why),
                   budget_name=envvars.required(env, "BUDGET_NAME", why),
                   ops_topic_arn=envvars.required(env, "OPS_TOPIC_ARN", why),
                   nonprod_db_instances=envvars.names(env, "NONPROD_DB_INSTANCES"),
                   nonprod_nodegroups=envvars.names(env, "NONPROD_NODEGROUPS"))

    def to_env(self) -> dict[str, str]:
        return envvars.to_env({"BUDGET_ACCOUNT_ID": self.account_id, "BUDGET_NAME": self.budget_name,
                               "OPS_TOPIC_ARN": self.ops_topic_arn, "NONPROD_DB_INSTANCES": self.nonprod_db_instances,
                               "NONPROD_NODEGROUPS": self.nonprod_nodegroups})


class FunctionSettings:
    """A function's settings made of parts (each field a settings class with ``from_env`` /
    ``to_env``): read part by part, written as the union of the parts' variables."""

    @classmethod
    def from_env(cls, env: Env | None = None) -> Any:
        env = envvars.environ(env)
        parts = typing.get_type_hints(cls)
        settings = cls(**{part.name: parts[part.name].from_env(env) for part in fields(cls)})  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """Rules across parts (override); a broken one is a `ConfigError`."""

    def to_env(self) -> dict[str, str]:
        variables: dict[str, str] = {}
        for part in fields(self):  # type: ignore[arg-type]
            variables.update(getattr(self, part.name).to_env())
        return variables


@dataclass(frozen=True, kw_only=True)
class ProvisionTenantSettings(FunctionSettings):
    """``lambdas/provision_tenant``: signups, warm pool, due offboardings, init and migrations."""

    database: DatabaseSettings
    billing: BillingSettings = field(default_factory=BillingSettings)
    credentials: ServiceCredentialsSettings = field(default_factory=ServiceCredentialsSettings)


@dataclass(frozen=True, kw_only=True)
class TenantOperationsSettings(FunctionSettings):
    """``lambdas/tenant_operations``: init, fleet migrations, warm pool, due offboardings."""

    database: DatabaseSettings
    secrets: SecretStoreSettings
    credentials: ServiceCredentialsSettings = field(default_factory=ServiceCredentialsSettings)


@dataclass(frozen=True, kw_only=True)
class EnforceLimitsSettings(FunctionSettings):
    """``lambdas/enforce_limits``: the enforcement cycle, then billing's post-cycle work."""

    database: DatabaseSettings
    redis: RedisSettings
    notifier: NotifierSettings
    billing: BillingSettings = field(default_factory=BillingSettings)
    reaper: ReaperSettings = field(default_factory=ReaperSettings)

    def check(self) -> None:
        if not self.redis.configured:
            raise ConfigError("the enforcer needs Redis: set REDIS_URL, or REDIS_HOST and REDIS_AUTH_SECRET_ARN")


@dataclass(frozen=True, kw_only=True)
class BudgetBreakerSettings(FunctionSettings):
    """``lambdas/budget_breaker``: AWS Budgets level → actions, each once a month."""

    database: DatabaseSettings
    budget: BudgetSettings


@dataclass(frozen=True, kw_only=True)
class StripeWebhookSettings(FunctionSettings):
    """``lambdas/stripe_webhook``: signed Stripe events → tenant state."""

    database: DatabaseSettings
    billing: BillingSettings


@dataclass(frozen=True, kw_only=True)
class OperatorSettings:
    """The operator CLI's environment: every part optional (options may name the database)."""

    billing: BillingSettings
    redis: RedisSettings
    secrets: SecretStoreSettings      # offboarding with ``--secrets aws``: a legacy tenant secret

    @classmethod
    def from_env(cls, env: Env | None = None) -> "OperatorSettings":
        env = envvars.environ(env)
        return cls(billing=BillingSettings.from_env(env), redis=RedisSettings.from_env(env),
                   secrets=SecretStoreSettings(prefix=env.get("TENANT_SECRETS_PREFIX") or "/saas/local"))


# Every Lambda function (the directory under lambdas/) and the settings class its handler reads.
FUNCTION_SETTINGS: dict[str, type[Any]] = {
    "provision_tenant": ProvisionTenantSettings,
    "tenant_operations": TenantOperationsSettings,
    "enforce_limits": EnforceLimitsSettings,
    "budget_breaker": BudgetBreakerSettings,
    "stripe_webhook": StripeWebhookSettings,
    "cost_report": ReportSettings,
    "restore_drill": RestoreDrillSettings,
}
