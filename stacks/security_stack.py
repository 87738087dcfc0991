"""Customer-managed KMS keys, one per kind of data, so each key policy stays small and auditable."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import EnvConfig


class SecurityStack(cdk.Stack):
    """Keys for data at rest (RDS, ElastiCache, PI), secrets, EKS secrets, CloudWatch Logs and images."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.data_key = self._key("Data", config, "RDS storage, Performance Insights and ElastiCache at rest")
        self.secrets_key = self._key("Secrets", config, "Secrets Manager secrets (RDS master, cache AUTH, tenants)")
        self.eks_key = self._key("Eks", config, "envelope encryption of Kubernetes secrets in EKS")
        self.logs_key = self._key("Logs", config, "CloudWatch Logs log groups (flow logs, Lambda, EKS)")
        self.images_key = self._key("Images", config, "ECR repositories of the API and worker images")
        self._allow_cloudwatch_logs(self.logs_key)

    def _key(self, name: str, config: EnvConfig, purpose: str) -> kms.Key:
        return kms.Key(
            self, f"{name}Key",
            alias=f"alias/saas-{config.name}-{name.lower()}",
            description=f"saas {config.name}: {purpose}",
            enable_key_rotation=True,
            pending_window=cdk.Duration.days(30),
            removal_policy=cdk.RemovalPolicy.RETAIN,   # data encrypted with it must stay readable
        )

    def _allow_cloudwatch_logs(self, key: kms.Key) -> None:
        """CloudWatch Logs encrypts with the key only for log groups of this account and region."""
        key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchLogsOfThisAccount",
            principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={"ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": f"arn:{self.partition}:logs:{self.region}:{self.account}:log-group:*",
            }},
        ))
