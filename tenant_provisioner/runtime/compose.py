"""The composition root: every client is built here, once, and the tenant lifecycle is wired here.

Who talks to what can be read from this file alone:

- the database (`Database`, acting as the provisioner role) — every process;
- Stripe (`stripe.StripeClient`, None without a key: billing is then skipped loudly) — billing's
  provisioning step, its tier-change/offboarding listener and the enforcer's usage reporter;
- Redis (None where a function has none: the limiter then learns of a suspension at the next
  enforcer cycle) — the limiter listener and the enforcer;
- the tenant secret store (Secrets Manager; None in local CLI runs) — provisioning and offboarding.

`wire` takes the clients (tests pass their own: the fake Stripe server, a Redis on a key prefix);
the ``for_*`` functions build them from a process's settings (`tenant_provisioner.runtime.settings`).
The lifecycle knows its extension steps and listeners only as the objects passed in here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import boto3
import redis
import stripe

from tenant_provisioner.billing.accounts import Accounts
from tenant_provisioner.billing.listeners import StripeSubscriptionListener
from tenant_provisioner.billing.reporters import PaymentGrace, UsageReport
from tenant_provisioner.billing.settings import BillingSettings
from tenant_provisioner.billing.steps import StripeStep
from tenant_provisioner.costs.cost_explorer import cost_explorer_client
from tenant_provisioner.costs.service import ReportRun, cost_source, platform_loader
from tenant_provisioner.costs.settings import ReportSettings
from tenant_provisioner.db import Database
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.gateway.credentials import PasswordDeriver
from tenant_provisioner.limits.budget import Actuators, NonProdTargets
from tenant_provisioner.limits.enforcer import Notifier, Reporter
from tenant_provisioner.limits.listeners import LimiterListener
from tenant_provisioner.limits.notify import AwsNotifier
from tenant_provisioner.limits.reaper import ReaperSettings
from tenant_provisioner.limits.steps import LimitsStep
from tenant_provisioner.runtime.settings import (BudgetBreakerSettings, EnforceLimitsSettings, OperatorSettings,
                                                 ServiceCredentialsSettings,
                                                 ProvisionTenantSettings, StripeWebhookSettings,
                                                 TenantOperationsSettings)
from tenant_provisioner.secrets import AwsSecretStore, SecretStore
from tenant_provisioner.tenants.events import TenantEvents
from tenant_provisioner.tenants.lifecycle import Lifecycle


@dataclass(frozen=True, kw_only=True)
class Platform:
    """The clients and the lifecycle one process works with."""

    database: Database
    lifecycle: Lifecycle
    billing: BillingSettings
    stripe: stripe.StripeClient | None = None
    redis: redis.Redis | None = None
    key_prefix: str = ""
    notifier: Notifier | None = None      # breaker notices (the enforcer)
    reaper: ReaperSettings | None = None  # the enforcer's session reaper thresholds
    service_credentials: ServiceCredentialsSettings | None = None  # tenant_operations: init, sync_passwords

    def reporters(self) -> list[Reporter]:
        """Billing's work after each enforcement cycle, in order: payment grace, then usage to Stripe."""
        return [PaymentGrace(self.lifecycle), UsageReport(self.stripe, self.billing)]

    def close(self) -> None:
        self.database.close()
        if self.redis is not None:
            self.redis.close()


def lifecycle(*, billing: BillingSettings | None = None, stripe_client: stripe.StripeClient | None = None,
              redis_client: redis.Redis | None = None, key_prefix: str = "",
              secret_store: SecretStore | None = None,
              password_deriver: Callable[[], PasswordDeriver] | None = None) -> Lifecycle:
    """The lifecycle with billing's and the limits' steps and listeners around the given clients."""
    accounts = Accounts(stripe_client, billing or BillingSettings()) if stripe_client is not None else None
    return Lifecycle(
        extension_steps=[StripeStep(accounts), LimitsStep()],
        events=TenantEvents([StripeSubscriptionListener(accounts),
                             LimiterListener(redis_client, key_prefix=key_prefix)]),
        secret_store=secret_store, password_deriver=password_deriver)


def wire(*, database: Database, billing: BillingSettings, stripe_client: stripe.StripeClient | None = None,
         redis_client: redis.Redis | None = None, key_prefix: str = "", secret_store: SecretStore | None = None,
         notifier: Notifier | None = None,
         reaper: ReaperSettings | None = None,
         password_deriver: Callable[[], PasswordDeriver] | None = None) -> Platform:
    """A process's platform around the given clients."""
    return Platform(database=database, billing=billing, stripe=stripe_client, redis=redis_client,
                    key_prefix=key_prefix, notifier=notifier, reaper=reaper,
                    lifecycle=lifecycle(billing=billing, stripe_client=stripe_client, redis_client=redis_client,
                                        key_prefix=key_prefix, secret_store=secret_store,
                                        password_deriver=password_deriver))


def for_provisioning(settings: ProvisionTenantSettings) -> Platform:
    """New tenants get passwords derived from the services' key when it is configured (read per
    signup, so a rotated key applies at once), else none; no per-tenant secret is written."""
    credentials = settings.credentials
    return wire(database=settings.database.pool(), billing=settings.billing, stripe_client=settings.billing.client(),
                password_deriver=credentials.password_deriver if credentials.password_key_secret_arn else None)


def for_enforcement(settings: EnforceLimitsSettings) -> Platform:
    return wire(database=settings.database.pool(), billing=settings.billing, stripe_client=settings.billing.client(),
                redis_client=settings.redis.client(), key_prefix=settings.redis.key_prefix,
                notifier=AwsNotifier(sender=settings.notifier.sender, ops_topic_arn=settings.notifier.ops_topic_arn),
                reaper=settings.reaper)


def for_tenant_operations(settings: TenantOperationsSettings) -> Platform:
    """Operator and schedule actions: no Stripe or Redis (a due offboarding was cancelled in Stripe
    when it started), the tenant secret store for the drop (secrets of tenants provisioned before
    issue 12's follow-up), the services' secrets for init/sync."""
    platform = wire(database=settings.database.pool(), billing=BillingSettings(),
                    secret_store=AwsSecretStore(settings.secrets.prefix))
    return dataclasses.replace(platform, service_credentials=settings.credentials)


def for_stripe_webhook(settings: StripeWebhookSettings) -> Platform:
    """No Stripe client: every change the webhook makes comes from Stripe (`Origin.STRIPE`)."""
    return wire(database=settings.database.pool(application_name="stripe-webhook"), billing=settings.billing)


def for_operator(settings: OperatorSettings, *, database: Database, secret_store: SecretStore | None) -> Platform:
    """The operator CLI: Stripe and Redis when its environment names them."""
    return wire(database=database, billing=settings.billing, stripe_client=settings.billing.client(),
                redis_client=settings.redis.client() if settings.redis.configured else None,
                key_prefix=settings.redis.key_prefix, secret_store=secret_store)


@dataclass(frozen=True, kw_only=True)
class BudgetBreaker:
    """The budget breaker's clients: the database, AWS Budgets and what it may act on."""

    database: Database
    budgets: Any
    actuators: Actuators
    settings: BudgetBreakerSettings


def for_budget_breaker(settings: BudgetBreakerSettings) -> BudgetBreaker:
    budget = settings.budget
    return BudgetBreaker(
        database=settings.database.pool(), budgets=boto3.client("budgets"), settings=settings,
        actuators=Actuators(sns=boto3.client("sns"), ops_topic_arn=budget.ops_topic_arn, rds=boto3.client("rds"),
                            eks=boto3.client("eks"),
                            nonprod=NonProdTargets(db_instances=list(budget.nonprod_db_instances),
                                                   nodegroups=list(budget.nonprod_nodegroups))))


@dataclass(frozen=True, kw_only=True)
class CostReport:
    """The daily cost report's clients: Cost Explorer, SES, and the control database (read per run)."""

    settings: ReportSettings
    cost_explorer: Any
    ses: Any
    idempotency_table: str

    def run(self) -> ReportRun:
        """One run: a fresh Cost Explorer request budget over the shared client."""
        return ReportRun(self.settings, cost_source(self.settings, self.cost_explorer), platform_loader(self.settings))


def for_cost_report(settings: ReportSettings) -> CostReport:
    if not settings.idempotency_table:
        raise ConfigError("IDEMPOTENCY_TABLE must name the DynamoDB table that keeps one report per date")
    return CostReport(settings=settings, cost_explorer=cost_explorer_client(), ses=boto3.client("sesv2"),
                      idempotency_table=settings.idempotency_table)
