"""Tenant provisioning: the ``provision_tenant`` Lambda, its signup rule and its dead-letter queue.

The function runs in private subnets with the control-plane security group (admitted to RDS),
logs in with the RDS master secret and works as the provisioner role, and may write secrets only
under ``<prefix>/tenants/``. Callers: the API's role synchronously (``invoker_role_arns`` or a
later ``grant_invoke``), and an EventBridge rule on ``tenant.signup`` events, whose failed
deliveries and failed asynchronous runs land in one dead-letter queue. Operator and schedule
actions run in a second function, ``tenant_operations``, which only the schedules and the
operator roles may invoke (never the API's role): schedules keep the warm pool of pre-built
tenant schemas filled (``warm_pool_size``; 0 = no pool) and the tenants-by-state gauge fresh
every few minutes and, daily, drop offboarded tenants whose retention period has passed.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.billing_stack import BillingStack
from stacks.config import EnvConfig
from stacks.constructs.outputs import publish
from stacks.constructs.dead_letter_queue import DeadLetterQueue
from stacks.constructs.python_function import PythonFunction
from stacks.data_stack import DataStack
from stacks.nag import acknowledge, partition_in_findings
from stacks.security_stack import SecurityStack

SIGNUP_DETAIL_TYPE = "tenant.signup"
PROVISION_SECRET_ACTIONS = ("secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                            "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
                            "secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret",
                            "secretsmanager:TagResource")
# Retries of one signup (EventBridge delivery, then Lambda's asynchronous retries) end within this.
RETRY_WINDOW = cdk.Duration.hours(2)


class TenantsStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig,
                 security: SecurityStack, data: DataStack, billing: BillingStack | None = None,
                 **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        tenants = config.tenants
        self.tenant_secrets_prefix = f"{tenants.secrets_prefix}/tenants/"
        self.dead_letter_queue = DeadLetterQueue(self, "DeadLetters", purpose="provisioning Lambda and its rules")
        self.dead_letter_queue.allow_delivery_from("events.amazonaws.com")  # signup, warm-pool, offboarding rules

        function = PythonFunction(
            self, "ProvisionTenant", name="provision_tenant",
            description="Provision a tenant: schema, role, secret, billing (idempotent; tenant.signup)",
            environment={
                "DATABASE_SECRET_ARN": data.database_secret.secret_arn,
                "DATABASE_NAME": tenants.database_name,
                "DATABASE_SSLMODE": "require",
                "TENANT_PROVISIONER_ROLE": tenants.provisioner_role,
                "TENANT_SECRETS_PREFIX": tenants.secrets_prefix,
                "TENANT_SECRETS_KMS_KEY_ID": security.secrets_key.key_arn,
                "POWERTOOLS_METRICS_NAMESPACE": "SaaS/Tenants",
            },
            timeout=cdk.Duration.seconds(tenants.provisioner_timeout_seconds),
            memory_size=512,
            network=data.control_plane_network,
            log_key=security.logs_key,
            reserved_concurrency=tenants.max_concurrent_provisions,
            dead_letter_queue=self.dead_letter_queue,
        )
        self.function = function.function
        self.dead_letter_queue.grant_encrypted_send(function.role)
        self.function.configure_async_invoke(retry_attempts=2, max_event_age=RETRY_WINDOW)
        self._grant(function.role, security, data)
        if billing is not None:  # the billing step creates the tenant's Stripe customer and subscription
            for name, value in billing.grant_api_key_read(function.role).items():
                self.function.add_environment(name, value)

        operations = PythonFunction(
            self, "TenantOperations", name="tenant_operations",
            description="Tenant fleet operations: init, migrate, warm-pool refill, drop due offboardings",
            environment={
                "DATABASE_SECRET_ARN": data.database_secret.secret_arn,
                "DATABASE_NAME": tenants.database_name,
                "TENANT_PROVISIONER_ROLE": tenants.provisioner_role,
                "TENANT_SECRETS_PREFIX": tenants.secrets_prefix,
                "TENANT_SECRETS_KMS_KEY_ID": security.secrets_key.key_arn,
                "POWERTOOLS_METRICS_NAMESPACE": "SaaS/Tenants",
            },
            timeout=cdk.Duration.seconds(tenants.operations_timeout_seconds),
            memory_size=512,
            network=data.control_plane_network,
            log_key=security.logs_key,
            reserved_concurrency=2,  # a schedule and an operator at once; never a crowd of DDL
            dead_letter_queue=self.dead_letter_queue,
        )
        self.operations = operations.function
        self.dead_letter_queue.grant_encrypted_send(operations.role)
        self.operations.configure_async_invoke(retry_attempts=2, max_event_age=RETRY_WINDOW)
        # Offboarding only deletes tenant secrets: no create/read of them, no use of the secrets key.
        self._grant(operations.role, security, data, construct_id="OperationsPermissions",
                    tenant_secret_actions=("secretsmanager:DescribeSecret", "secretsmanager:DeleteSecret"))
        for index, arn in enumerate(tenants.operator_role_arns):
            self.operations.add_permission(f"Operator{index}", principal=iam.ArnPrincipal(arn),
                                           action="lambda:InvokeFunction")

        self.signup_rule = events.Rule(
            self, "SignupRule", description="Provision a tenant for every tenant.signup event",
            event_pattern=events.EventPattern(source=[tenants.signup_event_source],
                                              detail_type=[SIGNUP_DETAIL_TYPE]),
            targets=[targets.LambdaFunction(self.function, dead_letter_queue=self.dead_letter_queue,
                                            retry_attempts=4, max_event_age=RETRY_WINDOW)])
        # Runs even with no pool (size 0 builds nothing): it also publishes the tenants-by-state gauge.
        self.warm_pool_rule = events.Rule(
            self, "WarmPoolRefill", description="Keep pre-built tenant schemas ready; publish tenants by state",
            schedule=events.Schedule.rate(cdk.Duration.minutes(tenants.warm_pool_refill_minutes)),
            targets=[targets.LambdaFunction(
                self.operations, retry_attempts=0, dead_letter_queue=self.dead_letter_queue,
                event=events.RuleTargetInput.from_object(
                    {"action": "refill_warm_pool", "size": tenants.warm_pool_size}))])
        self.offboarding_rule = events.Rule(
            self, "DropDueOffboardings", description="Drop offboarded tenants whose retention period has passed",
            schedule=events.Schedule.cron(minute="30", hour="3"),
            targets=[targets.LambdaFunction(
                self.operations, retry_attempts=2, dead_letter_queue=self.dead_letter_queue,
                event=events.RuleTargetInput.from_object({"action": "drop_due_offboardings"}))])
        for index, arn in enumerate(tenants.invoker_role_arns):
            self.function.add_permission(f"Invoker{index}", principal=iam.ArnPrincipal(arn),
                                         action="lambda:InvokeFunction")

        env = config.name
        publish(self, env, "provision-function-arn", self.function.function_arn,
                "Provisioning Lambda: invoke with {tenant_id, tier, admin_email, company_name}")
        cdk.CfnOutput(self, "OperationsFunctionName", value=self.operations.function_name,
                      description='Operator actions: invoke with {"action": "init"} after a deploy, or "migrate"')
        cdk.CfnOutput(self, "DeadLetterQueueUrl", value=self.dead_letter_queue.queue_url,
                      description="Failed signups (see docs/runbooks/failed-onboarding.md)")

    def _grant(self, role: iam.IRole, security: SecurityStack, data: DataStack, *,
               construct_id: str = "ProvisionPermissions",
               tenant_secret_actions: tuple[str, ...] = PROVISION_SECRET_ACTIONS) -> None:
        """Read the master secret; manage secrets under the tenant prefix only (`tenant_secret_actions`);
        use the secrets key only through Secrets Manager, and only when secrets are written. Statements
        on the role, so the security stack's key policy never names this stack."""
        tenant_secrets = self.format_arn(service="secretsmanager", resource="secret",
                                         resource_name=f"{self.tenant_secrets_prefix}*",
                                         arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
        via_secrets_manager = {"StringEquals": {"kms:ViaService": f"secretsmanager.{self.region}.amazonaws.com"}}
        writes_secrets = "secretsmanager:PutSecretValue" in tenant_secret_actions
        policy = iam.Policy(self, construct_id, roles=[role], statements=[
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                                resources=[data.database_secret.secret_arn]),
            iam.PolicyStatement(actions=list(tenant_secret_actions), resources=[tenant_secrets]),
            *([iam.PolicyStatement(actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                                   resources=[security.secrets_key.key_arn], conditions=via_secrets_manager)]
              if writes_secrets else []),
        ])
        in_finding = (f"arn:{partition_in_findings(self)}:secretsmanager:{self.region}:{self.account}:secret:"
                      f"{self.tenant_secrets_prefix}*")
        acknowledge(policy, f"AwsSolutions-IAM5[Resource::{in_finding}]",
                    "Tenant secrets are created at signup, so their names are only known as the tenant prefix; "
                    "the wildcard is confined to <prefix>/tenants/ and to secret-management actions")
