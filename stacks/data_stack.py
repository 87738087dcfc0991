"""Shared state: the PostgreSQL instance and the Valkey/Redis cache, plus who may reach them."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from stacks.config import EnvConfig
from stacks.constructs.cache import Cache
from stacks.constructs.database import POSTGRES_PORT, PostgresDatabase
from stacks.constructs.outputs import publish
from stacks.constructs.python_function import LambdaNetwork
from stacks.constructs.service_credentials import ServiceCredentials
from stacks.network_stack import NetworkStack
from stacks.security_stack import SecurityStack
from tenant_provisioner.db import DatabaseSettings, operator_login_role
from tenant_provisioner.runtime.settings import RedisSettings


class DataStack(cdk.Stack):
    """Stateful resources in isolated subnets; only the control-plane group (here) and the cluster
    (admitted by the cluster stack) may connect."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, network: NetworkStack,
                 security: SecurityStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        vpc = network.vpc
        platform_prefix = f"{config.tenants.secrets_prefix}/platform"
        log_days = config.observability.log_retention_days
        self.control_plane_security_group = ec2.SecurityGroup(
            self, "ControlPlaneSecurityGroup", vpc=vpc, allow_all_outbound=True,
            description="Control-plane Lambdas: reach RDS, the cache and AWS/Stripe APIs")
        self.database_identifier = f"saas-{config.name}-postgres"   # literal: IAM statements name it
        db = PostgresDatabase(
            self, "Postgres", config=config.database, identifier=self.database_identifier,
            database_name=config.tenants.database_name, master_secret_name=f"{platform_prefix}/rds-master",
            vpc=vpc, data_key=security.data_key, secrets_key=security.secrets_key, logs_key=security.logs_key,
            log_retention_days=log_days)
        cache = Cache(
            self, "Cache", config=config.cache, identifier=f"saas-{config.name}-cache",
            auth_secret_name=f"{platform_prefix}/cache-auth", vpc=vpc, data_key=security.data_key,
            secrets_key=security.secrets_key, logs_key=security.logs_key, log_retention_days=log_days)
        self.database = db.instance
        self.database_secret = db.secret
        self.database_security_group = db.security_group
        self.database_proxy = db.proxy
        # People's login through the tunnel (created by `init`; RDS IAM authentication, no password).
        self.operator_login = operator_login_role(config.tenants.provisioner_role)
        self._database_client_groups = db.client_security_groups
        self.cache_security_group = cache.security_group
        self.cache_endpoint_address = cache.endpoint_address
        self.cache_port = cache.port
        self.cache_auth_secret = cache.auth_secret
        self.service_credentials = ServiceCredentials(
            self, "ServiceCredentials", name_prefix=platform_prefix,
            login_name=f"{config.tenants.provisioner_role}_services", secrets_key=security.secrets_key)
        self.admit(self.control_plane_security_group, "control-plane Lambdas")
        # Where every control-plane Lambda runs: private subnets with egress (AWS and Stripe APIs), in
        # the group RDS and the cache admit.
        self.control_plane_network = LambdaNetwork(
            vpc=vpc, subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.control_plane_security_group])
        # How a control-plane function reaches both (its settings class writes the variables).
        self.database_settings = DatabaseSettings(
            secret_arn=self.database_secret.secret_arn, name=config.tenants.database_name,
            provisioner_role=config.tenants.provisioner_role)
        self.redis_settings = RedisSettings(host=self.cache_endpoint_address, port=self.cache_port,
                                            auth_secret_arn=self.cache_auth_secret.secret_arn)

        env = config.name
        publish(self, env, "db-endpoint", self.database.db_instance_endpoint_address, "PostgreSQL endpoint address")
        publish(self, env, "db-port", str(POSTGRES_PORT), "PostgreSQL port")
        publish(self, env, "db-name", config.tenants.database_name, "Database holding control and tenant schemas")
        publish(self, env, "db-master-secret-arn", self.database_secret.secret_arn,
                "ARN of the RDS master secret (rotated automatically)")
        publish(self, env, "db-operator-login", self.operator_login,
                "Database login of people through the SSM tunnel: IAM token, no password (database-access.md)")
        if db.proxy is not None:
            publish(self, env, "db-proxy-endpoint", db.proxy.endpoint, "RDS Proxy endpoint (control plane, TLS)")
        publish(self, env, "cache-endpoint", self.cache_endpoint_address, "Cache primary endpoint (TLS)")
        publish(self, env, "cache-port", str(self.cache_port), "Cache port")
        publish(self, env, "cache-auth-secret-arn", self.cache_auth_secret.secret_arn, "ARN of the cache AUTH token")
        publish(self, env, "services-db-secret-arn", self.service_credentials.database_login.secret_arn,
                "ARN of the API/worker database login secret (username/password)")
        publish(self, env, "tenant-password-key-secret-arn", self.service_credentials.password_key.secret_arn,
                "ARN of the tenant-password derivation key secret (key/version)")
        publish(self, env, "tenant-secrets-prefix", f"{config.tenants.secrets_prefix}/tenants/",
                "Name prefix of every tenant's connection secret")

    def admit(self, peer: ec2.ISecurityGroup, who: str) -> None:
        """Let ``peer`` connect to PostgreSQL and the cache. A peer from another stack gets its rules
        created in its own stack, so this stack never depends on it."""
        targets = [*((group, POSTGRES_PORT, "PostgreSQL") for group in self._database_client_groups),
                   (self.cache_security_group, self.cache_port, "cache")]
        for group, port, what in targets:
            group.add_ingress_rule(peer, ec2.Port.tcp(port), f"{what} from {who}", remote_rule=True)
