"""Who may operate the cluster, and the one audited way people reach its private API endpoint and
the database.

- **Access entries** from config: administrators (cluster-admin), viewers (read-only, no Secrets),
  the environment's release role (the GitHub deploy pipeline applies the manifests with it) and its
  drift role (view, for the scheduled drift check).
- **The tunnel**: a t4g.nano in a private subnet with no inbound rule, no SSH key and no public IP.
  People open an SSM Session Manager *port-forwarding* session through it to the EKS endpoint
  (``tools/cluster_access.py``, docs/runbooks/cluster-access.md); kubectl then authenticates as the
  person's own IAM role. Audit: CloudTrail records every ``StartSession`` with the caller, and the
  cluster's audit log (enabled in the cluster stack) records every Kubernetes request by IAM ARN.
  The instance holds no cluster permission itself: it is only a network hop.
- **The database tunnel**: the same instance forwards a second kind of session to the PostgreSQL
  instance (``python -m tools.cluster_access --database``, docs/runbooks/database-access.md), so the
  ``tenant-provisioner`` CLI runs from a laptop. Its group reaches 5432 of the database's group only
  (and the database admits it on 5432 only); the session carries TLS the instance cannot read.
- **ClusterAccess** managed policy: what an operator's (or the release role's) IAM role needs to use
  the tunnel — describe this cluster, start a port-forwarding session on this instance with exactly
  the port-forwarding document (no shell), end its own sessions, read the two parameters the tool
  needs. Attach it to the administrators' and viewers' roles (or their permission sets).
- **DatabaseAccess** managed policy: the same sessions on the same instance, the database's
  parameters and ``rds-db:connect`` as exactly the operators' login of exactly this instance (its
  ``DbiResourceId``): an IAM authentication token for that login, which ``tenant-provisioner init``
  creates with no password and no right but ``SET ROLE`` to the provisioner. Never the master
  secret. Attach it to the administrators' roles only: the provisioner owns every tenant.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.cicd_stack import CicdStack
from stacks.cluster_stack import ClusterStack
from stacks.config import DRIFT_READERS_GROUP, EnvConfig
from stacks.constructs.database import POSTGRES_PORT
from stacks.constructs.outputs import parameter_name, publish
from stacks.data_stack import DataStack
from stacks.nag import acknowledge, partition_in_findings
from stacks.network_stack import NetworkStack

PORT_FORWARDING_DOCUMENT = "AWS-StartPortForwardingSessionToRemoteHost"
ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"
VIEWER_POLICY = "AmazonEKSViewPolicy"      # every object but Secrets; AmazonEKSAdminViewPolicy would show Secrets
TUNNEL_PARAMETERS = ("tunnel-instance-id", "cluster-name")
DATABASE_PARAMETERS = ("tunnel-instance-id", "db-endpoint", "db-port", "db-name", "db-operator-login")


class AccessStack(cdk.Stack):
    """Access entries, the SSM tunnel instance and the policies that let a role use it."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, network: NetworkStack,
                 data: DataStack, cluster: ClusterStack, cicd: CicdStack,
                 **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        cfg = config.cluster
        eks_cluster = cluster.cluster
        grants = [*((f"Admin{i}", arn, ADMIN_POLICY) for i, arn in enumerate(cfg.admin_role_arns)),
                  *((f"Viewer{i}", arn, VIEWER_POLICY) for i, arn in enumerate(cfg.viewer_role_arns)),
                  # The release role applies namespaces, RBAC-free workloads and the ingress. Cluster
                  # admin adds nothing its GitHub environment's jobs do not already hold: the same jobs
                  # assume the deploy role, whose CloudFormation execution role administers the account.
                  ("Release", cicd.release_role.role_arn, ADMIN_POLICY),
                  # The scheduled drift check compares live objects with the last release's manifests:
                  # view (no Secrets), plus the cluster-scoped kinds the chart lets DRIFT_READERS_GROUP read.
                  ("Drift", cicd.drift_role.role_arn, VIEWER_POLICY)]
        self.access_entries = {
            construct_id: eks.AccessEntry(
                self, construct_id, cluster=eks_cluster, principal=principal,
                access_policies=[eks.AccessPolicy.from_access_policy_name(
                    policy, access_scope_type=eks.AccessScopeType.CLUSTER)])
            for construct_id, principal, policy in grants}
        drift: eks.CfnAccessEntry = self.access_entries["Drift"].node.default_child  # type: ignore[assignment]
        drift.kubernetes_groups = [DRIFT_READERS_GROUP]

        self.tunnel = self._tunnel(config, network, cluster, data)
        self.access_policy = self._tunnel_policy(
            "ClusterAccess", config, TUNNEL_PARAMETERS,
            description=f"Reach the private EKS API of saas-{config.name} through the SSM tunnel",
            statements=[iam.PolicyStatement(actions=["eks:DescribeCluster"], resources=[eks_cluster.cluster_arn])])
        # (the description predates IAM authentication: changing it would replace the policy)
        self.database_access_policy = self._tunnel_policy(
            "DatabaseAccess", config, DATABASE_PARAMETERS,
            description=f"Reach the PostgreSQL instance of saas-{config.name} as the operator login (RDS IAM authentication) through the SSM tunnel",
            statements=[iam.PolicyStatement(actions=["rds-db:connect"], resources=[
                f"arn:{self.partition}:rds-db:{self.region}:{self.account}:dbuser:"
                f"{data.database.instance_resource_id}/{data.operator_login}"])])
        self.access_policy.attach_to_role(cicd.release_role)
        self.access_policy.attach_to_role(cicd.drift_role)

        publish(self, config.name, "tunnel-instance-id", self.tunnel.instance_id,
                "SSM tunnel to the private EKS endpoint (docs/runbooks/cluster-access.md)")
        publish(self, config.name, "cluster-access-policy-arn", self.access_policy.managed_policy_arn,
                "Attach to operator roles: describe the cluster and open the SSM tunnel")
        publish(self, config.name, "database-access-policy-arn", self.database_access_policy.managed_policy_arn,
                "Attach to administrator roles: the database tunnel as the operators' login (database-access.md)")

    def _tunnel(self, config: EnvConfig, network: NetworkStack, cluster: ClusterStack, data: DataStack) -> ec2.Instance:
        group = ec2.SecurityGroup(
            self, "TunnelSecurityGroup", vpc=network.vpc, allow_all_outbound=False,
            # (the description predates the database rule: changing it would replace the group)
            description="SSM tunnel: no inbound; HTTPS out to Systems Manager and the EKS API only")
        group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443),
                              "Systems Manager (through NAT or its endpoints) and the EKS API endpoint")
        # Group to group, both directions on 5432 only: the egress here, the database's ingress
        # created in this stack too (a remote rule), so the data stack never depends on this one.
        group.connections.allow_to(data.database_security_group, ec2.Port.tcp(POSTGRES_PORT),
                                   "tenant-provisioner through the SSM database tunnel")
        ec2.CfnSecurityGroupIngress(
            self, "ClusterApiFromTunnel", group_id=cluster.cluster.cluster_security_group_id,
            source_security_group_id=group.security_group_id, ip_protocol="tcp", from_port=443, to_port=443,
            description="kubectl through the SSM tunnel")
        tunnel = ec2.Instance(
            self, "Tunnel",
            instance_type=ec2.InstanceType(config.cluster.tunnel_instance_type),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(cpu_type=ec2.AmazonLinuxCpuType.ARM_64),
            vpc=network.vpc, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_group=group, require_imdsv2=True, ssm_session_permissions=True,
            associate_public_ip_address=False,
            block_devices=[ec2.BlockDevice(device_name="/dev/xvda", volume=ec2.BlockDeviceVolume.ebs(
                8, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3, delete_on_termination=True))],
        )
        cdk.Tags.of(tunnel).add("saas:purpose", "cluster-tunnel")
        # EC2 takes the AZ from the subnet; CDK's literal copy of it is what cfn-lint's W3010 flags.
        tunnel.instance.add_property_deletion_override("AvailabilityZone")
        acknowledge(tunnel.role, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                    "AmazonSSMManagedInstanceCore]",
                    "AmazonSSMManagedInstanceCore is the AWS-maintained policy the SSM agent needs to register "
                    "and carry Session Manager sessions; the instance has no other permission.")
        acknowledge(tunnel, "AwsSolutions-EC28",
                    "The tunnel runs no workload: basic 5-minute metrics and the StatusCheckFailed alarm suffice; "
                    "detailed monitoring would cost more than the instance.")
        acknowledge(tunnel, "AwsSolutions-EC29",
                    "The tunnel is stateless (no key, no data, nothing on its disk); a terminated one is "
                    "recreated by the next deploy, and termination protection would block stack teardown.")
        return tunnel

    def _tunnel_policy(self, construct_id: str, config: EnvConfig, parameters: tuple[str, ...], *,
                       description: str, statements: list[iam.PolicyStatement]) -> iam.ManagedPolicy:
        """``statements``, plus: port-forwarding sessions (only that document: no shell) on the
        tunnel, ending one's own sessions, and reading the tool's ``parameters``."""
        region, account, partition = self.region, self.account, self.partition
        tunnel_arn = f"arn:{partition}:ec2:{region}:{account}:instance/{self.tunnel.instance_id}"
        document_arn = f"arn:{partition}:ssm:{region}::document/{PORT_FORWARDING_DOCUMENT}"
        own_sessions = f"arn:{partition}:ssm:{region}:{account}:session/${{aws:userid}}-*"
        policy = iam.ManagedPolicy(
            self, construct_id, description=description,
            statements=[
                *statements,
                iam.PolicyStatement(actions=["ssm:StartSession"], resources=[tunnel_arn, document_arn],
                                    conditions={"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}}),
                iam.PolicyStatement(actions=["ssm:TerminateSession", "ssm:ResumeSession"], resources=[own_sessions]),
                iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[
                    f"arn:{partition}:ssm:{region}:{account}:parameter{parameter_name(config.name, key)}"
                    for key in parameters]),
            ])
        acknowledge(policy, f"AwsSolutions-IAM5[Resource::arn:{partition_in_findings(self)}:ssm:{region}:{account}:"
                            "session/<aws:userid>-*]",
                    "Session ids are generated by SSM when a session starts; the only way to name a caller's "
                    "own sessions is the documented ${aws:userid}- prefix, so no one can end another's session.")
        return policy
