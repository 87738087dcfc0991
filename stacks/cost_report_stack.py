"""The daily cost report: a Lambda on an EventBridge Scheduler cron in the configured time zone.

Scheduler (not an EventBridge rule) because it takes a time zone, so "07:00 Europe/Berlin" stays
07:00 across daylight-saving changes, and because it passes its own scheduled time to the
function, which keys the once-per-date idempotency record. Failed invocations are retried (by
Scheduler and by Lambda's asynchronous retries) and then land in one dead-letter queue.
"""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from constructs import Construct

from stacks.account_stack import sender_identity
from stacks.config import CostReportConfig, EnvConfig
from stacks.constructs.dead_letter_queue import DeadLetterQueue
from stacks.constructs.control_plane_function import ControlPlaneFunction, via_service
from stacks.data_stack import DataStack
from stacks.nag import acknowledge
from stacks.security_stack import SecurityStack
from tenant_provisioner.costs.settings import ReportSettings

# Every retry of one date ends well within this; the idempotency record must outlive them.
RETRY_WINDOW = cdk.Duration.hours(6)


class CostReportStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig,
                 security: SecurityStack, data: DataStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        report = config.cost_report
        _check_schedule(report)

        self.sender_identity = sender_identity(self, "SenderIdentity", report.sender)
        self.idempotency_table = dynamodb.TableV2(
            self, "Idempotency",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            time_to_live_attribute="expiration",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            encryption=dynamodb.TableEncryptionV2.customer_managed_key(security.data_key),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.dead_letter_queue = DeadLetterQueue(self, "DeadLetters", purpose="cost-report Lambda and its schedule")

        function = ControlPlaneFunction(
            self, "CostReport", name="cost_report",
            description="Daily AWS cost report: Cost Explorer -> tenant unit economics -> SES email",
            settings=ReportSettings(
                environment=config.name, recipients=tuple(report.recipients), sender=report.sender,
                monthly_budget_usd=Decimal(str(config.limits.monthly_budget_usd)),
                timezone=ZoneInfo(report.timezone),
                anomaly_min_share=Decimal(str(report.anomaly_min_increase_share)),
                anomaly_min_usd=Decimal(str(report.anomaly_min_increase_usd)),
                tag_key=report.tenant_tag_key, scope_tag=report.scope_tag_key,
                idempotency_table=self.idempotency_table.table_name, database=data.database_settings),
            network=data.control_plane_network, log_key=security.logs_key, secrets_key=security.secrets_key,
            timeout=cdk.Duration.minutes(5), memory_size=512,
            reserved_concurrency=config.concurrency.cost_report,
            dead_letter_queue=self.dead_letter_queue, max_event_age=RETRY_WINDOW)
        self.function = function.function
        self._grant(function, security, data)

        scheduler_role = iam.Role(self, "SchedulerRole", assumed_by=iam.ServicePrincipal(
            "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": self.account}}),
            description="EventBridge Scheduler: invoke the cost report, park undeliverable runs in the DLQ")
        self.schedule = scheduler.Schedule(
            self, "Daily",
            description=f"Daily cost report at {report.schedule_hour:02d}:{report.schedule_minute:02d} "
                        f"{report.timezone}",
            schedule=scheduler.ScheduleExpression.cron(
                minute=str(report.schedule_minute), hour=str(report.schedule_hour),
                time_zone=cdk.TimeZone.of(report.timezone)),
            target=targets.LambdaInvoke(
                self.function,
                input=scheduler.ScheduleTargetInput.from_object(
                    {"scheduled_time": scheduler.ContextAttribute.scheduled_time}),
                dead_letter_queue=self.dead_letter_queue, retry_attempts=3, max_event_age=RETRY_WINDOW,
                role=scheduler_role),
        )
        self.dead_letter_queue.grant_encrypted_send(scheduler_role)
        function_arn = f"<{self.get_logical_id(self.function.node.default_child)}.Arn>"
        acknowledge(scheduler_role, f"AwsSolutions-IAM5[Resource::{function_arn}:*]",
                    "Function.grant_invoke also allows the function's qualified ARNs (versions and aliases, "
                    "'<arn>:*'); the statement names only the cost-report function and only lambda:InvokeFunction")
        cdk.CfnOutput(self, "FunctionName", value=self.function.function_name,
                      description="Invoke with {\"date\": \"YYYY-MM-DD\"} to (re)send one day's report")
        cdk.CfnOutput(self, "DeadLetterQueueUrl", value=self.dead_letter_queue.queue_url,
                      description="Failed cost-report runs (see docs/runbooks/cost-spike.md)")

    def _grant(self, function: ControlPlaneFunction, security: SecurityStack, data: DataStack) -> None:
        """Exactly what a run does: read costs, read the DB secret, keep its idempotency record, send.

        Written as statements on the role (not ``key.grant_*``), so the keys' policies in the
        security stack never name this stack's role (which would make the stacks depend on each other).
        """
        costs = iam.Policy(self, "CostExplorerRead", statements=[iam.PolicyStatement(
            actions=["ce:GetCostAndUsage", "ce:GetCostForecast"], resources=["*"])])
        costs.attach_to_role(function.role)
        acknowledge(costs, "AwsSolutions-IAM5[Resource::*]",
                    "Cost Explorer has no resource-level permissions: GetCostAndUsage and GetCostForecast "
                    "accept only Resource '*' (Service Authorization Reference); the statement allows these two "
                    "read actions only")
        function.read_secrets("RunPermissions", [data.database_secret.secret_arn], statements=[
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                resources=[self.idempotency_table.table_arn]),
            via_service(self, security.data_key, "dynamodb", ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]),
        ])
        self.sender_identity.grant_send_email(function.role)


def _check_schedule(report: CostReportConfig) -> None:
    """Fail the synth, not the deployment, on a time Scheduler would refuse."""
    try:
        ZoneInfo(report.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"cost_report.timezone {report.timezone!r} is not an IANA time zone") from None
    if not (0 <= report.schedule_hour <= 23 and 0 <= report.schedule_minute <= 59):
        raise ValueError(f"cost_report schedule {report.schedule_hour}:{report.schedule_minute} is not a time of day")

