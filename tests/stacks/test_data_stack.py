"""Data stack: PostgreSQL 16 and the Valkey cache, per environment; nobody but admitted groups gets in."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from stacks.config import load_config

ENVS = ("dev", "prod")
CMK = Match.object_like({"Fn::GetStackOutput": Match.object_like({"StackName": Match.string_like_regexp("-security$")})})


def _resources(template_json, env, kind):
    return {name: r for name, r in template_json[(env, "data")]["Resources"].items() if r["Type"] == kind}


@pytest.mark.parametrize("env", ENVS)
def test_postgres_16_encrypted_private_with_insights_monitoring_and_log_exports(templates, env):
    templates[(env, "data")].has_resource_properties("AWS::RDS::DBInstance", {
        "Engine": "postgres",
        "EngineVersion": Match.string_like_regexp(r"^16\."),
        "StorageEncrypted": True,
        "KmsKeyId": CMK,
        "PubliclyAccessible": False,
        "EnablePerformanceInsights": True,
        "PerformanceInsightsKMSKeyId": CMK,
        "MonitoringInterval": 60,
        "EnableCloudwatchLogsExports": ["postgresql", "upgrade"],
        "CACertificateIdentifier": "rds-ca-rsa2048-g1",
        "EnableIAMDatabaseAuthentication": True,   # the operators' login (rds-db:connect, database-access.md)
        "MasterUserPassword": Match.object_like({"Fn::Join": ["", Match.array_with(["{{resolve:secretsmanager:"])]}),
    })


@pytest.mark.parametrize(("env", "multi_az", "backup_days", "protected", "deletion_policy"), [
    ("dev", False, 7, False, "Delete"),
    ("prod", True, 30, True, "Snapshot"),
])
def test_environment_choices_for_the_database(templates, env, multi_az, backup_days, protected, deletion_policy):
    templates[(env, "data")].has_resource("AWS::RDS::DBInstance", {
        "Properties": Match.object_like({
            "MultiAZ": multi_az, "BackupRetentionPeriod": backup_days, "DeletionProtection": protected}),
        "DeletionPolicy": deletion_policy,
        "UpdateReplacePolicy": "Snapshot",   # a replacement keeps a snapshot in every environment
    })


@pytest.mark.parametrize(("env", "retention_days", "deletion_policy"), [("dev", 1, "Delete"), ("prod", 7, "Snapshot")])
def test_cache_keeps_snapshots_and_one_on_replacement(templates, env, retention_days, deletion_policy):
    templates[(env, "data")].has_resource("AWS::ElastiCache::ReplicationGroup", {
        "Properties": Match.object_like({"SnapshotRetentionLimit": retention_days, "SnapshotWindow": "01:00-02:00"}),
        "DeletionPolicy": deletion_policy,
        "UpdateReplacePolicy": "Snapshot",
    })


@pytest.mark.parametrize("env", ENVS)
def test_every_data_store_keeps_a_snapshot_when_replaced(template_json, env):
    """cfn-lint I3011's concern, for every stateful resource this platform has."""
    stateful = {"AWS::RDS::DBInstance", "AWS::ElastiCache::ReplicationGroup"}
    found = [(name, resource.get("UpdateReplacePolicy"))
             for (e, _), template in template_json.items() if e == env
             for name, resource in template["Resources"].items() if resource["Type"] in stateful]
    assert len(found) == 2 and all(policy == "Snapshot" for _, policy in found), found


def test_cfn_lint_finds_no_stateful_resource_without_policies(synthesized):
    import subprocess
    import sys
    templates = sorted(str(p) for p in synthesized.outdir.glob("*-data.template.json"))
    result = subprocess.run([sys.executable, "-m", "cfnlint", "--include-checks", "I3011", "--format", "json",
                             "--", *templates], capture_output=True, text=True, check=False)
    assert [f for f in json.loads(result.stdout or "[]") if f["Rule"]["Id"] == "I3011"] == []


@pytest.mark.parametrize("env", ENVS)
def test_database_lives_in_the_isolated_subnets(template_json, env):
    (group,) = _resources(template_json, env, "AWS::RDS::DBSubnetGroup").values()
    outputs = [ref["Fn::GetStackOutput"]["OutputName"] for ref in group["Properties"]["SubnetIds"]]
    assert len(outputs) == 3 and all("isolatedSubnet" in name for name in outputs)


@pytest.mark.parametrize("env", ENVS)
def test_parameter_group_forces_tls_sizes_from_memory_and_bounds_sessions(templates, env):
    templates[(env, "data")].has_resource_properties("AWS::RDS::DBParameterGroup", {
        "Family": "postgres16",
        "Parameters": Match.object_like({"rds.force_ssl": "1", **load_config(env).database.server_parameters()}),
    })


def test_dev_t4g_medium_is_sized_from_its_4_gib_not_for_a_large_server():
    """Issue 11.18: 1000 connections x 1024 locks took 546 MB of a 4 GiB instance's shared memory."""
    database = load_config("dev").database
    assert database.instance_type == "t4g.medium"
    assert database.max_connections == 4 * 1024 ** 3 // 9531392 == 450      # RDS's own memory formula
    lock_table_mb = database.max_connections * database.max_locks_per_transaction * 533 / 2 ** 20
    assert lock_table_mb <= 0.02 * 4 * 1024 and database.max_locks_per_transaction >= 64
    prod = load_config("prod").database
    assert prod.max_connections == 901 and prod.max_connections > database.max_connections


@pytest.mark.parametrize("env", ENVS)
def test_every_session_is_bounded_by_the_parameter_group(env):
    parameters = load_config(env).database.server_parameters()
    assert int(parameters["temp_file_limit"]) > 0
    assert int(parameters["idle_in_transaction_session_timeout"]) > 0 and int(parameters["statement_timeout"]) > 0


@pytest.mark.parametrize("env", ENVS)
def test_master_secret_is_cmk_encrypted_and_rotated_by_aws_hosted_rotation(templates, template_json, env):
    template = templates[(env, "data")]
    template.has_resource_properties("AWS::SecretsManager::Secret", {
        "Name": f"/saas/{env}/platform/rds-master", "KmsKeyId": CMK,
        "GenerateSecretString": Match.object_like({"GenerateStringKey": "password"})})
    template.has_resource_properties("AWS::SecretsManager::RotationSchedule", {
        "RotationRules": {"ScheduleExpression": "rate(30 days)"},
        "HostedRotationLambda": Match.object_like({"RotationType": "PostgreSQLSingleUser", "KmsKeyArn": CMK}),
    })
    assert template_json[(env, "data")]["Transform"].startswith("AWS::SecretsManager-")


@pytest.mark.parametrize("env", ENVS)
def test_database_and_cache_admit_only_control_plane_and_rotation_here(template_json, env):
    ingress = [r["Properties"] for r in _resources(template_json, env, "AWS::EC2::SecurityGroupIngress").values()]
    by_port = {(r["FromPort"], r["SourceSecurityGroupId"]["Fn::GetAtt"][0]) for r in ingress}
    assert by_port == {(5432, "ControlPlaneSecurityGroupBA03A401"), (6379, "ControlPlaneSecurityGroupBA03A401"),
                       (5432, "PostgresRotationSecurityGroup80B50511")}
    groups = _resources(template_json, env, "AWS::EC2::SecurityGroup")
    assert all("CidrIp" not in rule for g in groups.values() for rule in g["Properties"].get("SecurityGroupIngress", []))


@pytest.mark.parametrize(("env", "replicas", "highly_available"), [("dev", 0, False), ("prod", 1, True)])
def test_cache_replication_group(templates, env, replicas, highly_available):
    templates[(env, "data")].has_resource_properties("AWS::ElastiCache::ReplicationGroup", {
        "Engine": "valkey",
        "EngineVersion": Match.string_like_regexp(r"^8\."),
        "ReplicasPerNodeGroup": replicas,
        "AutomaticFailoverEnabled": highly_available,
        "MultiAZEnabled": highly_available,
        "TransitEncryptionEnabled": True,
        "TransitEncryptionMode": "required",
        "AtRestEncryptionEnabled": True,
        "KmsKeyId": CMK,
        "AuthToken": Match.object_like({"Fn::Join": ["", Match.array_with(["{{resolve:secretsmanager:"])]}),
    })


@pytest.mark.parametrize("env", ENVS)
def test_cache_never_evicts_and_sits_in_isolated_subnets(templates, template_json, env):
    templates[(env, "data")].has_resource_properties("AWS::ElastiCache::ParameterGroup", {
        "CacheParameterGroupFamily": "valkey8", "Properties": {"maxmemory-policy": "noeviction"}})
    (group,) = _resources(template_json, env, "AWS::ElastiCache::SubnetGroup").values()
    assert all("isolatedSubnet" in ref["Fn::GetStackOutput"]["OutputName"] for ref in group["Properties"]["SubnetIds"])


@pytest.mark.parametrize("env", ENVS)
def test_cache_auth_token_is_generated_into_secrets_manager(templates, env):
    templates[(env, "data")].has_resource_properties("AWS::SecretsManager::Secret", {
        "Name": f"/saas/{env}/platform/cache-auth", "KmsKeyId": CMK,
        "GenerateSecretString": Match.object_like({"ExcludePunctuation": True, "PasswordLength": 64})})


def test_no_secret_value_in_any_template(template_json):
    """Passwords and tokens appear only as dynamic references, never as literals."""
    for key, template in template_json.items():
        for name, resource in template["Resources"].items():
            props = resource.get("Properties", {})
            for field in ("MasterUserPassword", "AuthToken", "SecretString", "Password"):
                if field in props:
                    assert "{{resolve:secretsmanager:" in json.dumps(props[field]), (key, name, field)


@pytest.mark.parametrize("env", ENVS)
def test_ssm_parameters_and_outputs_for_the_app_team(template_json, env):
    template = template_json[(env, "data")]
    names = {r["Properties"]["Name"] for r in template["Resources"].values() if r["Type"] == "AWS::SSM::Parameter"}
    expected = {"db-endpoint", "db-port", "db-name", "db-master-secret-arn", "db-operator-login", "cache-endpoint",
                "cache-port", "cache-auth-secret-arn", "tenant-secrets-prefix", "services-db-secret-arn",
                "tenant-password-key-secret-arn"}
    assert names == {f"/saas/{env}/platform/{key}" for key in expected}
    (login,) = [r["Properties"]["Value"] for r in template["Resources"].values()
                if r["Type"] == "AWS::SSM::Parameter" and r["Properties"]["Name"].endswith("/db-operator-login")]
    assert login == "tenant_provisioner_operator"   # the login `init` creates and the access policy names
    assert {"DbEndpoint", "DbMasterSecretArn", "CacheEndpoint", "CacheAuthSecretArn", "ServicesDbSecretArn",
            "TenantPasswordKeySecretArn"} <= set(template["Outputs"])


@pytest.mark.parametrize("env", ENVS)
def test_services_credentials_are_generated_kms_encrypted_secrets(template_json, env):
    template = template_json[(env, "data")]
    secrets = {r["Properties"]["Name"]: r["Properties"] for r in template["Resources"].values()
               if r["Type"] == "AWS::SecretsManager::Secret"}
    login, key = secrets[f"/saas/{env}/platform/services-db-login"], secrets[f"/saas/{env}/platform/tenant-password-key"]
    assert json.loads(login["GenerateSecretString"]["SecretStringTemplate"]) == {"username": "tenant_provisioner_services"}
    assert login["GenerateSecretString"]["GenerateStringKey"] == "password"
    assert json.loads(key["GenerateSecretString"]["SecretStringTemplate"]) == {"version": 1}
    assert key["GenerateSecretString"]["GenerateStringKey"] == "key"
    assert key["GenerateSecretString"]["PasswordLength"] >= 32
    for secret in (login, key):
        assert secret["KmsKeyId"] and "SecretString" not in secret


@pytest.mark.parametrize(("env", "days"), [("dev", 14), ("prod", 90)])
def test_service_logs_go_to_precreated_encrypted_log_groups(templates, template_json, env, days):
    template = templates[(env, "data")]
    for kind in ("postgresql", "upgrade"):
        template.has_resource_properties("AWS::Logs::LogGroup", {
            "LogGroupName": f"/aws/rds/instance/saas-{env}-postgres/{kind}", "RetentionInDays": days, "KmsKeyId": CMK})
    groups = _resources(template_json, env, "AWS::Logs::LogGroup")
    assert len(groups) == 3 and all(g["Properties"]["KmsKeyId"] for g in groups.values())
    (instance,) = _resources(template_json, env, "AWS::RDS::DBInstance").values()
    assert {name for name in groups if name.startswith("Postgres")} <= set(instance["DependsOn"])
