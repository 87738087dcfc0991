"""Tenant provisioning: the ``provision_tenant`` Lambda, its signup rule and its dead-letter queue.

The function runs in private subnets with the control-plane security group (admitted to RDS),
logs in with the RDS master secret and works as the provisioner role, and reads the services'
tenant-password key to set each new role's derived password: it writes no secret (the per-tenant
secrets of earlier versions are only deleted, by ``tenant_operations`` at offboarding). Callers: the API's role synchronously (``invoker_role_arns`` or a
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
from stacks.constructs.control_plane_function import ControlPlaneFunction
from stacks.data_stack import DataStack
from stacks.nag import acknowledge, partition_in_findings
from stacks.security_stack import SecurityStack
from tenant_provisioner.runtime.settings import (ProvisionTenantSettings, SecretStoreSettings,
                                                 ServiceCredentialsSettings, TenantOperationsSettings)

SIGNUP_DETAIL_TYPE = "tenant.signup"
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

        service_secrets = data.service_credentials
        settings = ProvisionTenantSettings(
            database=data.database_settings,
            billing=billing.stripe_settings() if billing is not None else config.billing,
            # New tenants' passwords derived from the services' key, so the API/worker reach them at once.
            credentials=ServiceCredentialsSettings(password_key_secret_arn=service_secrets.password_key.secret_arn))
        function = ControlPlaneFunction(
            self, "ProvisionTenant", name="provision_tenant",
            description="Provision a tenant: schema, role, password, billing (idempotent; tenant.signup)",
            settings=settings, network=data.control_plane_network, log_key=security.logs_key,
            secrets_key=security.secrets_key, timeout=cdk.Duration.seconds(tenants.provisioner_timeout_seconds),
            memory_size=512, reserved_concurrency=config.concurrency.provision_tenant,
            dead_letter_queue=self.dead_letter_queue, max_event_age=RETRY_WINDOW)
        self.function = function.function
        function.read_secrets("ProvisionPermissions", [data.database_secret.secret_arn])
        function.read_secrets("PasswordKeyRead", [service_secrets.password_key.secret_arn])
        if billing is not None:  # the billing step creates the tenant's Stripe customer and subscription
            billing.grant_api_key_read(function.role)

        operations = ControlPlaneFunction(
            self, "TenantOperations", name="tenant_operations",
            description="Tenant fleet operations: init, migrate, warm-pool refill, drop due offboardings",
            settings=TenantOperationsSettings(
                database=data.database_settings,
                secrets=SecretStoreSettings(prefix=tenants.secrets_prefix),
                credentials=ServiceCredentialsSettings(login_secret_arn=service_secrets.database_login.secret_arn,
                                                       password_key_secret_arn=service_secrets.password_key.secret_arn)),
            network=data.control_plane_network, log_key=security.logs_key, secrets_key=security.secrets_key,
            timeout=cdk.Duration.seconds(tenants.operations_timeout_seconds), memory_size=512,
            reserved_concurrency=config.concurrency.tenant_operations,
            dead_letter_queue=self.dead_letter_queue, max_event_age=RETRY_WINDOW)
        self.operations = operations.function
        self._grant_operations(operations, data)
        # `init` applies the services' login password, `sync_passwords` the tenant-password key.
        operations.read_secrets("ServiceCredentialsRead", [service_secrets.database_login.secret_arn,
                                                           service_secrets.password_key.secret_arn])
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

    def _grant_operations(self, function: ControlPlaneFunction, data: DataStack) -> None:
        """Read the master secret (the key only to decrypt it, through Secrets Manager); delete the
        per-tenant secrets earlier versions wrote, at offboarding — no create or read of them."""
        tenant_secrets = self.format_arn(service="secretsmanager", resource="secret",
                                         resource_name=f"{self.tenant_secrets_prefix}*",
                                         arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
        policy = function.read_secrets("OperationsPermissions", [data.database_secret.secret_arn], statements=[
            iam.PolicyStatement(actions=["secretsmanager:DescribeSecret", "secretsmanager:DeleteSecret"],
                                resources=[tenant_secrets])])
        in_finding = (f"arn:{partition_in_findings(self)}:secretsmanager:{self.region}:{self.account}:secret:"
                      f"{self.tenant_secrets_prefix}*")
        acknowledge(policy, f"AwsSolutions-IAM5[Resource::{in_finding}]",
                    "Legacy tenant secrets are deleted at offboarding, so their names are only known as the tenant "
                    "prefix; the wildcard is confined to <prefix>/tenants/ and to Describe/DeleteSecret")
