"""The shared PostgreSQL 16 instance that holds the control schema and one schema per tenant."""

from __future__ import annotations

import re

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import DatabaseConfig
from stacks.constructs.retention import retention_days
from stacks.nag import acknowledge, skip_checkov

POSTGRES_PORT = 5432
# The control plane's login; it may SET ROLE to the provisioner (people log in otherwise: database-access.md).
MASTER_USERNAME = "postgres"
LOG_EXPORTS = ("postgresql", "upgrade")
# The characters RDS refuses in a master password; generator and rotation must agree on them.
PASSWORD_EXCLUDED = " %+~`#$&*()|[]{}:;<>?!'/@\"\\"


def performance_insights_retention(days: int) -> rds.PerformanceInsightRetention:
    """7 days is free; longer retention is sold in whole months of 31 days, or two years."""
    if days == 7:
        return rds.PerformanceInsightRetention.DEFAULT
    if days == 731:
        return rds.PerformanceInsightRetention.LONG_TERM
    if days % 31 == 0 and 1 <= days // 31 <= 23:
        return getattr(rds.PerformanceInsightRetention, f"MONTHS_{days // 31}")
    raise ValueError(f"Performance Insights retention of {days} days is not offered; use 7, n*31 (n<=23) or 731")


class PostgresDatabase(Construct):
    """RDS PostgreSQL in isolated subnets: TLS forced, CMK-encrypted, rotated master secret.

    The security group admits nobody by default; callers admit exactly the groups that need it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: DatabaseConfig, identifier: str,
                 database_name: str, master_secret_name: str, vpc: ec2.IVpc, data_key: kms.IKey,
                 secrets_key: kms.IKey, logs_key: kms.IKey, log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        major = config.engine_version.split(".")[0]
        engine = rds.DatabaseInstanceEngine.postgres(
            version=rds.PostgresEngineVersion.of(config.engine_version, major))
        self.security_group = ec2.SecurityGroup(self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
                                                description=f"{identifier}: PostgreSQL clients only")
        parameters = rds.ParameterGroup(
            self, "Parameters", engine=engine, description=f"{identifier}: TLS only, sized for many schemas",
            # Connections and the lock table sized from the instance class's memory; temp files and
            # timeouts bounded for every session (DatabaseConfig.server_parameters says why).
            parameters={"rds.force_ssl": "1", **config.server_parameters()},
        )
        # Create the export log groups ourselves (CMK, retention) instead of a LogRetention Lambda.
        log_groups = [
            logs.LogGroup(self, f"{kind.capitalize()}Logs", log_group_name=f"/aws/rds/instance/{identifier}/{kind}",
                          encryption_key=logs_key, retention=retention_days(log_retention_days),
                          removal_policy=cdk.RemovalPolicy.DESTROY)
            for kind in LOG_EXPORTS
        ]
        self.instance = rds.DatabaseInstance(
            self, "Instance",
            instance_identifier=identifier,
            engine=engine,
            instance_type=ec2.InstanceType(config.instance_type),
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.security_group],
            port=POSTGRES_PORT,
            multi_az=config.multi_az,
            publicly_accessible=False,
            storage_type=rds.StorageType.GP3,
            allocated_storage=config.allocated_storage_gb,
            max_allocated_storage=config.max_allocated_storage_gb,
            storage_encrypted=True,
            storage_encryption_key=data_key,
            credentials=rds.Credentials.from_generated_secret(
                MASTER_USERNAME, secret_name=master_secret_name, encryption_key=secrets_key,
                exclude_characters=PASSWORD_EXCLUDED),
            database_name=database_name,
            parameter_group=parameters,
            ca_certificate=rds.CaCertificate.RDS_CA_RSA2048_G1,
            backup_retention=cdk.Duration.days(config.backup_retention_days),
            preferred_backup_window="02:00-03:00",
            preferred_maintenance_window="sun:03:30-sun:04:30",
            copy_tags_to_snapshot=True,
            delete_automated_backups=False,
            deletion_protection=config.deletion_protection,
            removal_policy=cdk.RemovalPolicy.SNAPSHOT if config.snapshot_on_delete else cdk.RemovalPolicy.DESTROY,
            enable_performance_insights=True,
            performance_insight_encryption_key=data_key,
            performance_insight_retention=performance_insights_retention(config.performance_insights_retention_days),
            monitoring_interval=cdk.Duration.seconds(config.monitoring_interval_seconds),
            cloudwatch_logs_exports=list(LOG_EXPORTS),
            auto_minor_version_upgrade=True,
            iam_authentication=True,
        )
        for group in log_groups:
            self.instance.node.add_dependency(group)
        self._protect_data(config)
        self.secret: secretsmanager.ISecret = self.instance.secret  # type: ignore[assignment]
        self._rotate_master_secret(vpc, config.master_secret_rotation_days)
        self.proxy = self._add_proxy(identifier, vpc, secrets_key) if config.rds_proxy else None
        self.client_security_groups = [self.security_group, *([self.proxy_security_group] if self.proxy else [])]
        self._acknowledge(config)

    def _protect_data(self, config: DatabaseConfig) -> None:
        """A replacement always leaves a snapshot of the old instance (even where deleting the
        stack does not); optionally, automated backups are replicated to a second region."""
        cfn: rds.CfnDBInstance = self.instance.node.default_child  # type: ignore[assignment]
        cfn.cfn_options.update_replace_policy = cdk.CfnDeletionPolicy.SNAPSHOT
        replication = config.backup_replication
        if replication is None:
            return
        region = cdk.Stack.of(self).region
        if replication.region == region:
            raise ValueError(f"database.backup_replication.region must differ from the environment's region {region}")
        if not 1 <= replication.retention_days <= 35:
            raise ValueError(f"database.backup_replication.retention_days must be 1-35, got {replication.retention_days}")
        if not re.match(rf"^arn:aws[a-z-]*:kms:{re.escape(replication.region)}:\d{{12}}:(key|alias)/", replication.kms_key_arn):
            raise ValueError(f"database.backup_replication.kms_key_arn must be a KMS key in {replication.region}, "
                             f"got {replication.kms_key_arn!r}")
        cfn.automatic_backup_replication_region = replication.region
        cfn.automatic_backup_replication_kms_key_id = replication.kms_key_arn
        cfn.automatic_backup_replication_retention_period = replication.retention_days

    def _add_proxy(self, identifier: str, vpc: ec2.IVpc, secrets_key: kms.IKey) -> rds.DatabaseProxy:
        """RDS Proxy for the master (control-plane) credentials: bursts of Lambda invocations share
        a bounded pool instead of exhausting ``max_connections``. Tenant roles connect directly
        (their tier's ``db_connections`` is the budget), so the proxy takes at most half.

        The proxy role gets kms:Decrypt in its own policy: letting CDK grant it through the
        secret would write this stack's role into the security stack's key policy (a cycle)."""
        role = iam.Role(self, "ProxyRole", assumed_by=iam.ServicePrincipal("rds.amazonaws.com"),
                        description=f"{identifier} proxy: read the master secret")
        role.add_to_policy(iam.PolicyStatement(
            actions=["kms:Decrypt"], resources=[secrets_key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{cdk.Stack.of(self).region}.amazonaws.com"}}))
        master_secret = secretsmanager.Secret.from_secret_complete_arn(self, "ProxySecret", self.secret.secret_arn)
        self.proxy_security_group = ec2.SecurityGroup(self, "ProxySecurityGroup", vpc=vpc, allow_all_outbound=False,
                                                      description=f"{identifier} proxy: clients in, PostgreSQL out")
        self.proxy_security_group.connections.allow_to(self.security_group, ec2.Port.tcp(POSTGRES_PORT),
                                                       "proxy to PostgreSQL")
        return self.instance.add_proxy(
            "Proxy", vpc=vpc, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.proxy_security_group], secrets=[master_secret], role=role, require_tls=True,
            db_proxy_name=f"{identifier}-proxy", max_connections_percent=50,
            idle_client_timeout=cdk.Duration.minutes(30))

    def _rotate_master_secret(self, vpc: ec2.IVpc, every_days: int) -> None:
        """AWS-hosted rotation (Secrets Manager transform): no Lambda code of ours, no Docker to build it."""
        rotation_sg = ec2.SecurityGroup(self, "RotationSecurityGroup", vpc=vpc, allow_all_outbound=False,
                                        description="Master secret rotation: PostgreSQL and Secrets Manager only")
        rotation_sg.add_egress_rule(ec2.Peer.ipv4(vpc.vpc_cidr_block), ec2.Port.tcp(443),
                                    "Secrets Manager through its VPC endpoint")
        rotation_sg.connections.allow_to(self.security_group, ec2.Port.tcp(POSTGRES_PORT),
                                         "rotate the master password")
        self.secret.add_rotation_schedule(
            "Rotation",
            automatically_after=cdk.Duration.days(every_days),
            hosted_rotation=secretsmanager.HostedRotation.postgre_sql_single_user(
                vpc=vpc,
                vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
                security_groups=[rotation_sg],
                exclude_characters=PASSWORD_EXCLUDED,
            ),
        )

    def _acknowledge(self, config: DatabaseConfig) -> None:
        cfn = self.instance.node.default_child
        acknowledge(self.instance.node.find_child("MonitoringRole"),
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole]",
                    "Enhanced monitoring requires exactly this AWS-maintained service-role policy; it only "
                    "lets RDS write OS metrics to the RDSOSMetrics log group.")
        acknowledge(cfn, "AwsSolutions-RDS11",
                    "Port 5432 is kept so every client and driver works unchanged; a non-default port is "
                    "obscurity only, the security group admits just its client groups (cluster, control plane, "
                    "the operators' SSM tunnel).")
        if not config.multi_az:
            why = ("This environment's config chooses a single-AZ instance to save cost; it holds no "
                   "customer data and is rebuilt from migrations; production config is Multi-AZ.")
            acknowledge(cfn, "AwsSolutions-RDS3", why)
            skip_checkov(cfn, "CKV_AWS_157", why)
        if not config.deletion_protection:
            acknowledge(cfn, "AwsSolutions-RDS10",
                        "This environment's config allows deletion so a throwaway stack can be torn down; "
                        "production config turns deletion protection on and snapshots on delete.")
