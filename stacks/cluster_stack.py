"""The EKS cluster for the API and worker services (native eks_v2 resources, no kubectl Lambda)."""

from __future__ import annotations

import datetime as dt

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import EnvConfig, require_standard_support
from stacks.constructs.outputs import publish
from stacks.constructs.retention import retention_days
from stacks.constructs.workload_identity import PodIdentity
from stacks.data_stack import DataStack
from stacks.nag import acknowledge
from stacks.network_stack import NetworkStack
from stacks.security_stack import SecurityStack

ALL_CONTROL_PLANE_LOGS = (
    eks.ClusterLoggingTypes.API, eks.ClusterLoggingTypes.AUDIT, eks.ClusterLoggingTypes.AUTHENTICATOR,
    eks.ClusterLoggingTypes.CONTROLLER_MANAGER, eks.ClusterLoggingTypes.SCHEDULER,
)
CLUSTER_ROLE_POLICIES = {
    "AmazonEKSClusterPolicy": "the control plane manages ENIs, load balancers and KMS envelope encryption",
}
AUTO_MODE_CLUSTER_ROLE_POLICIES = {
    "AmazonEKSComputePolicy": "Auto Mode launches and terminates the nodes of its node pools",
    "AmazonEKSBlockStoragePolicy": "Auto Mode attaches EBS volumes for persistent volumes",
    "AmazonEKSLoadBalancingPolicy": "Auto Mode creates the load balancers for Services and Ingresses",
    "AmazonEKSNetworkingPolicy": "Auto Mode manages the node and pod network interfaces",
}
NODE_ROLE_POLICIES = {
    "AmazonEKSWorkerNodePolicy": "nodes register with the cluster and read their own EC2 metadata",
    "AmazonEC2ContainerRegistryReadOnly": "nodes pull the service images and EKS add-ons from ECR",
}
NODEGROUP_ROLE_POLICIES = {
    **NODE_ROLE_POLICIES,
    "AmazonEKS_CNI_Policy": "the VPC CNI assigns pod IP addresses from the private subnets",
}


class ClusterStack(cdk.Stack):
    """Private control plane, KMS-encrypted Kubernetes secrets, Graviton capacity, Pod Identity."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, network: NetworkStack,
                 security: SecurityStack, data: DataStack, today: dt.date | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        cfg = config.cluster
        # Synth refuses a version about to leave standard support (the dated table in stacks/config.py).
        require_standard_support(cfg.kubernetes_version, today=today or dt.datetime.now(dt.timezone.utc).date())
        cluster_name = f"saas-{config.name}"
        # EKS would create this group itself: unencrypted and never expiring. Create it first instead.
        control_plane_logs = logs.LogGroup(
            self, "ControlPlaneLogs", log_group_name=f"/aws/eks/{cluster_name}/cluster",
            encryption_key=security.logs_key, retention=retention_days(config.observability.log_retention_days),
            removal_policy=cdk.RemovalPolicy.DESTROY)
        endpoint = (eks.EndpointAccess.PUBLIC_AND_PRIVATE.only_from(*cfg.endpoint_public_cidrs)
                    if cfg.endpoint_public_cidrs else eks.EndpointAccess.PRIVATE)
        self.cluster = eks.Cluster(
            self, "Cluster",
            cluster_name=cluster_name,
            version=eks.KubernetesVersion.of(cfg.kubernetes_version),
            vpc=network.vpc,
            vpc_subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)],
            endpoint_access=endpoint,
            secrets_encryption_key=security.eks_key,
            cluster_logging=list(ALL_CONTROL_PLANE_LOGS),
            default_capacity_type=eks.DefaultCapacityType.AUTOMODE if cfg.auto_mode else eks.DefaultCapacityType.NODEGROUP,
            default_capacity=None if cfg.auto_mode else 0,   # our node group is added explicitly below
            compute=eks.ComputeConfig(node_pools=["system", "general-purpose"]) if cfg.auto_mode else None,
        )
        self.cluster.node.add_dependency(control_plane_logs)
        # The control plane wraps Kubernetes secrets' data keys with the EKS key (envelope encryption).
        self.cluster.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], resources=[security.eks_key.key_arn]))
        self.cluster.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["kms:CreateGrant"], resources=[security.eks_key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}))
        cluster_resource = self.cluster.node.default_child
        # Extended support costs six times the standard control-plane price; upgrade on time instead.
        cluster_resource.add_property_override("UpgradePolicy.SupportType", "STANDARD")
        self.nodegroup: eks.Nodegroup | None = None if cfg.auto_mode else self._add_graviton_nodegroup(config)
        # The HPAs' CPU metrics (metrics.k8s.io); an EKS community add-on, not built into Auto Mode.
        self.metrics_server = eks.Addon(self, "MetricsServer", cluster=self.cluster, addon_name="metrics-server")
        data.admit(self.cluster.cluster_security_group, f"EKS cluster saas-{config.name}")

        credentials = data.service_credentials
        # Exactly what services/settings.py reads at start: their login, the tenant-password key, the
        # cache AUTH token. No tenant secret: tenant passwords are derived from the key.
        pod_secrets = [credentials.database_login.secret_arn, credentials.password_key.secret_arn,
                       data.cache_auth_secret.secret_arn]
        self.workloads: dict[str, PodIdentity] = {}
        for name, service_account in (("Api", cfg.api_service_account), ("Worker", cfg.worker_service_account)):
            identity = PodIdentity(
                self, f"{name}Identity", cluster_name=self.cluster.cluster_name, namespace=cfg.app_namespace,
                service_account=service_account,
                description=f"Pod Identity of {cfg.app_namespace}/{service_account}: services login, "
                            "tenant-password key, cache AUTH")
            identity.allow_secrets(pod_secrets, decrypt_key_arn=security.secrets_key.key_arn, region=self.region)
            tracing = identity.allow_tracing()
            acknowledge(tracing, "AwsSolutions-IAM5[Resource::*]",
                        "X-Ray's PutTraceSegments/PutSpans/sampling actions support no resource-level "
                        "permissions; the policy holds only these write and sampling actions.")
            self.workloads[name.lower()] = identity

        publish(self, config.name, "cluster-name", self.cluster.cluster_name, "EKS cluster name")
        publish(self, config.name, "cluster-security-group-id", self.cluster.cluster_security_group_id,
                "Security group of the cluster's nodes and pods")
        for name, identity in self.workloads.items():
            publish(self, config.name, f"{name}-role-arn", identity.role.role_arn,
                    f"IAM role of the {name} service account (EKS Pod Identity)")
        self._acknowledge_managed_policies(cfg.auto_mode)

    def _add_graviton_nodegroup(self, config: EnvConfig) -> eks.Nodegroup:
        cfg = config.cluster
        nodegroup = self.cluster.add_nodegroup_capacity(
            "Graviton",
            ami_type=eks.NodegroupAmiType.AL2023_ARM_64_STANDARD,
            instance_types=[ec2.InstanceType(t) for t in cfg.node_instance_types],
            min_size=cfg.node_min, max_size=cfg.node_max, desired_size=cfg.node_desired,
            subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            enable_node_auto_repair=True,
        )
        # Pod Identity associations need the agent on the nodes (Auto Mode ships it built in).
        self.cluster.eks_pod_identity_agent  # noqa: B018 - the getter creates the add-on
        return nodegroup

    def _acknowledge_managed_policies(self, auto_mode: bool) -> None:
        """The managed policies EKS documents as required for the cluster and node roles; AWS keeps
        them in step with new EKS features, which a hand-copied policy would silently miss."""
        if auto_mode:
            roles = [(self.cluster.role, {**CLUSTER_ROLE_POLICIES, **AUTO_MODE_CLUSTER_ROLE_POLICIES}),
                     (self.cluster.node.find_child("ClusternodePoolRole"), NODE_ROLE_POLICIES)]
        else:
            roles = [(self.cluster.role, CLUSTER_ROLE_POLICIES), (self.nodegroup.role, NODEGROUP_ROLE_POLICIES)]
        for role, policies in roles:
            for policy, why in policies.items():
                acknowledge(role, f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]",
                            f"{policy} is the AWS-maintained policy EKS requires here: {why}.")

