"""The Redis-protocol cache (Valkey or Redis 7) that holds rate-limiter and breaker state."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import CacheConfig
from stacks.constructs.retention import retention_days
from stacks.nag import acknowledge

CACHE_PORT = 6379


class Cache(Construct):
    """A replication group: TLS required, CMK at rest, AUTH token kept in Secrets Manager.

    ``maxmemory-policy noeviction``: a full cache must refuse writes, never silently drop a
    tenant's limiter or breaker keys (that would reset its quota). The template carries only a
    dynamic reference to the token, never the token itself.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: CacheConfig, identifier: str,
                 auth_secret_name: str, vpc: ec2.IVpc, data_key: kms.IKey, secrets_key: kms.IKey,
                 logs_key: kms.IKey, log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        highly_available = config.replicas_per_shard > 0
        self.port = CACHE_PORT
        self.security_group = ec2.SecurityGroup(self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
                                                description=f"{identifier}: cache clients only")
        subnets = elasticache.CfnSubnetGroup(
            self, "Subnets", description=f"{identifier}: isolated subnets",
            subnet_ids=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids)
        parameters = elasticache.CfnParameterGroup(
            self, "Parameters", description=f"{identifier}: limiter keys must never be evicted",
            cache_parameter_group_family=f"{config.engine}{config.engine_version.split('.')[0]}",
            properties={"maxmemory-policy": "noeviction"})
        self.auth_secret = secretsmanager.Secret(
            self, "AuthToken", secret_name=auth_secret_name, encryption_key=secrets_key,
            description=f"{identifier}: AUTH token (clients connect with TLS and this token)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False))
        slow_log = logs.LogGroup(self, "SlowLog", encryption_key=logs_key,
                                 retention=retention_days(log_retention_days),
                                 removal_policy=cdk.RemovalPolicy.DESTROY)
        self.replication_group = elasticache.CfnReplicationGroup(
            self, "ReplicationGroup",
            replication_group_id=identifier,
            replication_group_description=f"{identifier}: rate limiter and circuit-breaker state",
            engine=config.engine,
            engine_version=config.engine_version,
            cache_node_type=config.node_type,
            num_node_groups=1,
            replicas_per_node_group=config.replicas_per_shard,
            automatic_failover_enabled=highly_available,
            multi_az_enabled=highly_available,
            port=CACHE_PORT,
            cache_subnet_group_name=subnets.ref,
            security_group_ids=[self.security_group.security_group_id],
            cache_parameter_group_name=parameters.ref,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            kms_key_id=data_key.key_arn,
            auth_token=self.auth_secret.secret_value.unsafe_unwrap(),
            snapshot_retention_limit=config.snapshot_retention_days,
            snapshot_window=config.snapshot_window,
            auto_minor_version_upgrade=True,
            log_delivery_configurations=[elasticache.CfnReplicationGroup.LogDeliveryConfigurationRequestProperty(
                destination_type="cloudwatch-logs", log_format="json", log_type="slow-log",
                destination_details=elasticache.CfnReplicationGroup.DestinationDetailsProperty(
                    cloud_watch_logs_details=elasticache.CfnReplicationGroup.CloudWatchLogsDestinationDetailsProperty(
                        log_group=slow_log.log_group_name)))],
        )
        # A property change that replaces the group (node type, engine, subnet group...) keeps a
        # snapshot of the old one; deleting the stack keeps one only where the config says so.
        self.replication_group.cfn_options.update_replace_policy = cdk.CfnDeletionPolicy.SNAPSHOT
        self.replication_group.cfn_options.deletion_policy = (
            cdk.CfnDeletionPolicy.SNAPSHOT if config.snapshot_on_delete else cdk.CfnDeletionPolicy.DELETE)
        self.endpoint_address = self.replication_group.attr_primary_end_point_address
        self._acknowledge(highly_available)

    def _acknowledge(self, highly_available: bool) -> None:
        acknowledge(self.auth_secret.node.default_child, "AwsSolutions-SMG4",
                    "ElastiCache cannot take a rotated AUTH token from Secrets Manager by itself; rotation is "
                    "the two-step ROTATE/SET procedure in docs/runbooks/secret-rotation.md.")
        if not highly_available:
            acknowledge(self.replication_group, "AwsSolutions-AEC4",
                        "This environment's config chooses a single cache node to save cost; after a node "
                        "replacement the enforcer re-pushes breaker state from PostgreSQL within 5 minutes; "
                        "production config is Multi-AZ with automatic failover.")
