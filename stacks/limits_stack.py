"""Tier limits in the cloud: the quota enforcer on a schedule, the platform budget breaker, ops alerts.

- ``enforce_limits`` Lambda (VPC: RDS + Redis) every ``enforce_every_minutes`` from an EventBridge
  rule; retried, then parked in a dead-letter queue (a re-run is safe: the cycle is idempotent).
- AWS Budgets monthly cost budget with notifications at 90 / 100 / 200 % of actual spend and
  100 % of forecast → SNS topic (KMS-encrypted; its key and topic policy let budgets.amazonaws.com
  publish) → ``budget_breaker`` Lambda; ops also get the budget emails directly, so a broken
  Lambda cannot hide a budget breach.
- Ops topic with the configured email subscriptions: breaker notices from both functions.
- Billing's post-cycle reporters run inside the enforcer, so it may read the Stripe API key
  (``BillingStack.grant_api_key_read``).

The alert topics use a key of this stack (rotation on), because its policy must name the
Budgets service; keys of the security stack are never edited from here.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as event_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.account_stack import sender_identity
from stacks.billing_stack import BillingStack
from stacks.config import EnvConfig
from stacks.constructs.dead_letter_queue import DeadLetterQueue
from stacks.constructs.control_plane_function import ControlPlaneFunction, via_service
from stacks.data_stack import DataStack
from stacks.security_stack import SecurityStack
from tenant_provisioner.gateway.sessions import WORKER_CONNECTIONS_PER_TENANT
from tenant_provisioner.limits.reaper import ReaperSettings
from tenant_provisioner.runtime.settings import (BudgetBreakerSettings, BudgetSettings, EnforceLimitsSettings,
                                                 NotifierSettings)

BUDGET_THRESHOLDS = (("ACTUAL", 90), ("ACTUAL", 100), ("ACTUAL", 200), ("FORECASTED", 100))
RETRY_WINDOW = cdk.Duration.hours(1)


class LimitsStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig,
                 security: SecurityStack, data: DataStack, billing: BillingStack | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        limits = config.limits
        self.budget_name = f"saas-{config.name}-platform"

        self.alerts_key = kms.Key(self, "AlertsKey", enable_key_rotation=True,
                                  description="Ops and budget-alert SNS topics of the limits component",
                                  removal_policy=cdk.RemovalPolicy.DESTROY)
        self.alerts_key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
            actions=["kms:GenerateDataKey*", "kms:Decrypt"], resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": self.account}}))
        self.ops_topic = sns.Topic(self, "Ops", display_name=f"saas {config.name} ops",
                                   master_key=self.alerts_key, enforce_ssl=True)
        for email in limits.ops_emails:
            self.ops_topic.add_subscription(subscriptions.EmailSubscription(email))
        self.budget_topic = sns.Topic(self, "BudgetAlerts", display_name=f"saas {config.name} budget alerts",
                                      master_key=self.alerts_key, enforce_ssl=True)
        self.budget_topic.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("budgets.amazonaws.com")], actions=["sns:Publish"],
            resources=[self.budget_topic.topic_arn],
            conditions={"StringEquals": {"aws:SourceAccount": self.account}}))

        self.dead_letter_queue = DeadLetterQueue(
            self, "DeadLetters", purpose="enforcer schedule, limits Lambdas, budget-topic subscription")
        for service in ("events.amazonaws.com", "sns.amazonaws.com"):  # the schedule, the budget subscription
            self.dead_letter_queue.allow_delivery_from(service)
        self.sender = sender_identity(self, "SenderIdentity", limits.notification_sender)

        enforcer = ControlPlaneFunction(
            self, "Enforcer", name="enforce_limits",
            description="Quota enforcer: measure usage, apply 90/100/200 % breakers, push state to Redis",
            settings=EnforceLimitsSettings(
                database=data.database_settings, redis=data.redis_settings,
                notifier=NotifierSettings(sender=limits.notification_sender, ops_topic_arn=self.ops_topic.topic_arn),
                # billing's post-cycle reporters (usage to Stripe, payment grace) run in the enforcer
                billing=billing.stripe_settings() if billing is not None else config.billing,
                reaper=ReaperSettings(idle_in_transaction_s=limits.reaper_idle_in_transaction_seconds,
                                      statement_s=limits.reaper_statement_seconds,
                                      transaction_s=limits.reaper_transaction_seconds,
                                      max_locks=limits.reaper_max_locks,
                                      # one session per API pod, the worker's per worker pod, at full scale-out
                                      fleet_sessions=config.workloads.api.max_replicas
                                      + config.workloads.worker.max_replicas * WORKER_CONNECTIONS_PER_TENANT)),
            network=data.control_plane_network, log_key=security.logs_key, secrets_key=security.secrets_key,
            timeout=cdk.Duration.minutes(4), memory_size=512,
            reserved_concurrency=config.concurrency.enforce_limits,
            dead_letter_queue=self.dead_letter_queue, max_event_age=RETRY_WINDOW)
        self.enforcer = enforcer.function
        self.schedule = events.Rule(
            self, "EnforceSchedule", description=f"Enforce tier limits every {limits.enforce_every_minutes} minutes",
            schedule=events.Schedule.rate(cdk.Duration.minutes(limits.enforce_every_minutes)),
            targets=[event_targets.LambdaFunction(self.enforcer, dead_letter_queue=self.dead_letter_queue,
                                                  retry_attempts=2, max_event_age=RETRY_WINDOW)])
        enforcer.read_secrets("EnforcerRun", [data.database_secret.secret_arn, data.cache_auth_secret.secret_arn],
                              statements=self._publish_to_ops())
        self.sender.grant_send_email(enforcer.role)
        if billing is not None:
            billing.grant_api_key_read(enforcer.role)

        breaker = ControlPlaneFunction(
            self, "BudgetBreaker", name="budget_breaker",
            description="Platform budget breaker: AWS Budgets level -> notify / freeze / block signups, once a month",
            settings=BudgetBreakerSettings(database=data.database_settings, budget=BudgetSettings(
                account_id=self.account, budget_name=self.budget_name, ops_topic_arn=self.ops_topic.topic_arn,
                nonprod_db_instances=tuple(limits.nonprod_db_instances),
                nonprod_nodegroups=tuple(limits.nonprod_nodegroups))),
            network=data.control_plane_network, log_key=security.logs_key, secrets_key=security.secrets_key,
            timeout=cdk.Duration.minutes(1), memory_size=256, reserved_concurrency=config.concurrency.budget_breaker,
            dead_letter_queue=self.dead_letter_queue, retry_attempts=None)   # SNS's retries, then the DLQ
        self.budget_breaker = breaker.function
        self.budget_topic.add_subscription(subscriptions.LambdaSubscription(
            self.budget_breaker, dead_letter_queue=self.dead_letter_queue))
        breaker.read_secrets("BudgetBreakerRun", [data.database_secret.secret_arn], statements=self._publish_to_ops())
        self._grant_budget_actions(breaker.role, config)

        self.budget = budgets.CfnBudget(
            self, "PlatformBudget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=self.budget_name, budget_type="COST", time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=limits.monthly_budget_usd, unit="USD")),
            notifications_with_subscribers=[
                budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        notification_type=kind, comparison_operator="GREATER_THAN", threshold=percent,
                        threshold_type="PERCENTAGE"),
                    subscribers=[budgets.CfnBudget.SubscriberProperty(subscription_type="SNS",
                                                                      address=self.budget_topic.topic_arn),
                                 *(budgets.CfnBudget.SubscriberProperty(subscription_type="EMAIL", address=email)
                                   for email in limits.ops_emails[:10])])
                for kind, percent in BUDGET_THRESHOLDS])
        self.budget.node.add_dependency(self.budget_topic)

        # Its failures (enforcer errors, dead letters, a degraded limiter) page through the
        # observability stack's alarm topic, like every other control-plane Lambda's.
        cdk.CfnOutput(self, "OpsTopicArn", value=self.ops_topic.topic_arn,
                      description="Breaker notices and budget levels (subscribe paging here)")
        cdk.CfnOutput(self, "EnforcerFunctionName", value=self.enforcer.function_name,
                      description='Invoke with {"tenant_ids": ["<id>"]} to enforce now (e.g. after a resume)')
        cdk.CfnOutput(self, "DeadLetterQueueUrl", value=self.dead_letter_queue.queue_url,
                      description="Failed enforcer / budget-breaker runs (docs/runbooks/tenant-limits.md)")

    def _publish_to_ops(self) -> list[iam.PolicyStatement]:
        """Publish to the ops topic (its key only through SNS)."""
        return [iam.PolicyStatement(actions=["sns:Publish"], resources=[self.ops_topic.topic_arn]),
                via_service(self, self.alerts_key, "sns", ["kms:GenerateDataKey", "kms:Decrypt"])]

    def _grant_budget_actions(self, role: iam.IRole, config: EnvConfig) -> None:
        """Read this budget; stop/scale exactly the configured non-prod resources."""
        statements = [iam.PolicyStatement(
            actions=["budgets:ViewBudget"],
            resources=[f"arn:{self.partition}:budgets::{self.account}:budget/{self.budget_name}"])]
        if config.limits.nonprod_db_instances:
            statements.append(iam.PolicyStatement(actions=["rds:StopDBInstance"], resources=[
                f"arn:{self.partition}:rds:{self.region}:{self.account}:db:{name}"
                for name in config.limits.nonprod_db_instances]))
        if config.limits.nonprod_nodegroups:
            statements.append(iam.PolicyStatement(actions=["eks:UpdateNodegroupConfig"], resources=[
                f"arn:{self.partition}:eks:{self.region}:{self.account}:nodegroup/{target}/*"
                for target in config.limits.nonprod_nodegroups]))
        iam.Policy(self, "BudgetActions", roles=[role], statements=statements)
