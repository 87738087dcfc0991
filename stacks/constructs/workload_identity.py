"""EKS Pod Identity for one Kubernetes service account: an IAM role the pod can assume, nothing more."""

from __future__ import annotations

from typing import Sequence

from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"


class PodIdentity(Construct):
    """Role trusted by the EKS Pod Identity service (AssumeRole + TagSession) and bound to
    ``namespace/service_account`` of ``cluster_name`` by an association, no OIDC provider needed."""

    def __init__(self, scope: Construct, construct_id: str, *, cluster_name: str, namespace: str,
                 service_account: str, description: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self, "Role", description=description,
            assumed_by=iam.SessionTagsPrincipal(iam.ServicePrincipal(POD_IDENTITY_PRINCIPAL)))
        self.association = eks.CfnPodIdentityAssociation(
            self, "Association", cluster_name=cluster_name, namespace=namespace,
            service_account=service_account, role_arn=self.role.role_arn)

    def allow_secrets(self, secret_arns: Sequence[str], *, decrypt_key_arn: str, region: str) -> iam.Policy:
        """Read exactly these secrets; the key may decrypt only on behalf of Secrets Manager."""
        policy = iam.Policy(self, "SecretsPolicy", statements=[
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                                resources=list(secret_arns)),
            iam.PolicyStatement(actions=["kms:Decrypt"], resources=[decrypt_key_arn],
                                conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}}),
        ])
        policy.attach_to_role(self.role)
        return policy

    def allow_tracing(self) -> iam.Policy:
        """Send trace segments and OTLP spans to X-Ray (ADOT in the images); X-Ray's write actions
        have no resource-level permissions, so the resource is ``*``."""
        policy = iam.Policy(self, "TracingPolicy", statements=[iam.PolicyStatement(
            actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:PutSpans",
                     "xray:GetSamplingRules", "xray:GetSamplingTargets"],
            resources=["*"])])
        policy.attach_to_role(self.role)
        return policy
