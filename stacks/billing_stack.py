"""Stripe billing: the two Stripe secrets and the webhook Lambda behind a Function URL.

The secrets are created with a generated placeholder (no value in the template); an operator puts
the real values in after deploy (docs/runbooks/stripe-setup.md). Until then the code treats the
placeholder as "not configured": billing steps are skipped loudly and the webhook answers 500,
so Stripe keeps retrying until the endpoint is set up.

The Function URL has no IAM auth on purpose: Stripe cannot sign AWS requests. Each request is
authenticated by its ``Stripe-Signature`` (HMAC with the endpoint's signing secret), verified
before anything is read or written. Reserved concurrency bounds the database connections a
burst of deliveries can open (`concurrency.stripe_webhook`).
"""

from __future__ import annotations

import dataclasses

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import EnvConfig
from stacks.constructs.control_plane_function import ControlPlaneFunction, via_service
from stacks.data_stack import DataStack
from stacks.nag import acknowledge, skip_checkov
from stacks.security_stack import SecurityStack
from tenant_provisioner.billing.settings import BillingSettings
from tenant_provisioner.runtime.settings import StripeWebhookSettings

_ROTATION_REASON = ("{what} is issued by Stripe, not by AWS: it is rotated by rolling it in the Stripe "
                    "dashboard and pasting the new value (docs/runbooks/stripe-setup.md, 'Rotate'); a "
                    "Secrets Manager rotation Lambda cannot create Stripe credentials")


class BillingStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig,
                 security: SecurityStack, data: DataStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        prefix = f"{config.tenants.secrets_prefix}/platform/stripe"
        self.api_key_secret = self._placeholder_secret(
            "ApiKey", f"{prefix}/api-key", "Stripe secret API key (sk_... or restricted rk_...)", security.secrets_key)
        self.webhook_secret = self._placeholder_secret(
            "WebhookSigningSecret", f"{prefix}/webhook-signing-secret",
            "Signing secret (whsec_...) of this environment's Stripe webhook endpoint", security.secrets_key)
        self._secrets_key = security.secrets_key
        self._billing = config.billing

        webhook = ControlPlaneFunction(
            self, "StripeWebhook", name="stripe_webhook",
            description="Stripe webhook: verify signature, apply invoice/subscription events to tenants",
            settings=StripeWebhookSettings(database=data.database_settings, billing=dataclasses.replace(
                config.billing, webhook_secret_id=self.webhook_secret.secret_arn)),
            network=data.control_plane_network, log_key=security.logs_key, secrets_key=security.secrets_key,
            timeout=cdk.Duration.seconds(20), memory_size=256, reserved_concurrency=config.concurrency.stripe_webhook)
        self.webhook_function = webhook.function
        webhook.read_secrets("WebhookReads", [self.webhook_secret.secret_arn, data.database_secret.secret_arn])
        self.webhook_url = self.webhook_function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE)
        skip_checkov(self.webhook_url.node.default_child, "CKV_AWS_258",
                     "Stripe cannot sign AWS (SigV4) requests; every request is authenticated by its "
                     "Stripe-Signature HMAC, verified with the stripe library before anything is read or written")
        skip_checkov(self.webhook_function.node.default_child, "CKV_AWS_116",
                     "Invoked synchronously through its Function URL only, where a DLQ never receives anything; "
                     "Stripe itself retries every non-2xx delivery for three days")

        cdk.CfnOutput(self, "WebhookUrl", value=self.webhook_url.url,
                      description="Register as the Stripe webhook endpoint (docs/runbooks/stripe-setup.md)")
        cdk.CfnOutput(self, "ApiKeySecretName", value=prefix + "/api-key",
                      description="Put the Stripe secret key here after deploy")
        cdk.CfnOutput(self, "WebhookSigningSecretName", value=prefix + "/webhook-signing-secret",
                      description="Put the webhook endpoint's whsec_... signing secret here after deploy")

    def stripe_settings(self) -> BillingSettings:
        """Billing settings of a function that calls Stripe (with `grant_api_key_read` on its role)."""
        return dataclasses.replace(self._billing, api_key_secret_id=self.api_key_secret.secret_arn)

    def _placeholder_secret(self, construct_id: str, name: str, description: str,
                            key: kms.IKey) -> secretsmanager.Secret:
        """A secret whose initial value is generated by Secrets Manager (never in the template)."""
        secret = secretsmanager.Secret(
            self, construct_id, secret_name=name, description=f"{description}; placeholder until set by hand",
            encryption_key=key, removal_policy=cdk.RemovalPolicy.RETAIN,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=32))
        acknowledge(secret, "AwsSolutions-SMG4", _ROTATION_REASON.format(what=description))
        skip_checkov(secret.node.default_child, "CKV2_AWS_57", _ROTATION_REASON.format(what=description))
        return secret

    def grant_api_key_read(self, role: iam.IRole) -> None:
        """Let another control-plane function (provisioning, enforcer) read the Stripe API key.

        The statements go into `role`'s own policy (in its stack), so that stack depends on this
        one and never the other way round; its environment comes from `stripe_settings`.
        """
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue"], resources=[self.api_key_secret.secret_arn]))
        role.add_to_principal_policy(via_service(self, self._secrets_key, "secretsmanager", ["kms:Decrypt"]))
