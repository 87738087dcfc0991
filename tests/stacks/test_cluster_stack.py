"""Cluster stack: native EKS (eks_v2), private, encrypted, logged, Graviton, Pod Identity for the app."""

from __future__ import annotations

import dataclasses
import json
import datetime as dt

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match

from app import project_context
from stacks.cluster_stack import ClusterStack
from stacks.config import UnsupportedKubernetesVersion, load_config
from stacks.data_stack import DataStack
from stacks.network_stack import NetworkStack
from stacks.security_stack import SecurityStack
from tests.stacks.conftest import foundation

ENVS = ("dev", "prod")


def _resources(template_json, env, kind):
    return [r for r in template_json[(env, "cluster")]["Resources"].values() if r["Type"] == kind]


@pytest.mark.parametrize("env", ENVS)
def test_private_encrypted_fully_logged_standard_support_cluster(templates, env):
    templates[(env, "cluster")].has_resource_properties("AWS::EKS::Cluster", {
        "Name": f"saas-{env}",
        "ResourcesVpcConfig": Match.object_like({"EndpointPrivateAccess": True, "EndpointPublicAccess": False}),
        "EncryptionConfig": [{"Provider": {"KeyArn": Match.object_like({"Fn::GetStackOutput": Match.object_like(
            {"StackName": f"saas-{env}-security"})})}, "Resources": ["secrets"]}],
        "Logging": {"ClusterLogging": {"EnabledTypes": [{"Type": t} for t in (
            "api", "audit", "authenticator", "controllerManager", "scheduler")]}},
        "UpgradePolicy": {"SupportType": "STANDARD"},
        "AccessConfig": Match.object_like({"AuthenticationMode": "API"}),
    })


@pytest.mark.parametrize("env", ENVS)
def test_no_kubectl_lambda_or_custom_resource(template_json, env):
    types = {r["Type"] for r in template_json[(env, "cluster")]["Resources"].values()}
    assert not {"AWS::Lambda::Function", "AWS::CloudFormation::Stack"} & types
    assert not any(t.startswith("Custom::") for t in types)


@pytest.mark.parametrize("env", ENVS)
def test_control_plane_in_private_subnets(template_json, env):
    (cluster,) = _resources(template_json, env, "AWS::EKS::Cluster")
    names = [s["Fn::GetStackOutput"]["OutputName"] for s in cluster["Properties"]["ResourcesVpcConfig"]["SubnetIds"]]
    assert len(names) == 3 and all("privateSubnet" in n for n in names)


@pytest.mark.parametrize("env", ENVS)
def test_auto_mode_brings_load_balancing_node_autoscaling_and_metrics_server(template_json, env):
    """Auto Mode: the ALB for the Ingress, Karpenter-based node pools, EBS; metrics-server for the HPAs."""
    (cluster,) = _resources(template_json, env, "AWS::EKS::Cluster")
    props = cluster["Properties"]
    assert props["Version"] == "1.36"
    assert props["ComputeConfig"]["Enabled"] is True
    assert props["ComputeConfig"]["NodePools"] == ["system", "general-purpose"]
    assert props["KubernetesNetworkConfig"]["ElasticLoadBalancing"] == {"Enabled": True}
    assert props["StorageConfig"]["BlockStorage"] == {"Enabled": True}
    assert not _resources(template_json, env, "AWS::EKS::Nodegroup")
    addons = {r["Properties"]["AddonName"] for r in _resources(template_json, env, "AWS::EKS::Addon")}
    assert addons == {"metrics-server"}   # Pod Identity agent, CNI, CoreDNS, kube-proxy: built into Auto Mode


def test_synth_refuses_a_kubernetes_version_leaving_standard_support_within_60_days():
    config = load_config("dev")
    config = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster, kubernetes_version="1.35"))
    app = cdk.App(context={**project_context(), "aws:cdk:bundling-stacks": []})
    env = cdk.Environment(account=config.account, region=config.region)
    security = SecurityStack(app, "security", config=config, env=env)
    network = NetworkStack(app, "network", config=config, security=security, env=env)
    data = DataStack(app, "data", config=config, network=network, security=security, env=env)
    with pytest.raises(UnsupportedKubernetesVersion, match=r"1\.35 leaves EKS standard support on 2027-03-27"):
        ClusterStack(app, "cluster", config=config, network=network, security=security, data=data, env=env,
                     today=dt.date(2027, 2, 1))
    # The same version two months earlier is accepted.
    ClusterStack(app, "cluster-earlier", config=config, network=network, security=security, data=data, env=env,
                 today=dt.date(2026, 11, 29))


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("service_account", ["api", "worker"])
def test_pod_identity_roles_read_exactly_the_services_secrets_and_no_tenant_secret(templates, template_json, env, service_account):
    template = templates[(env, "cluster")]
    template.has_resource_properties("AWS::EKS::PodIdentityAssociation", {
        "Namespace": "app", "ServiceAccount": service_account})
    roles = [r for r in _resources(template_json, env, "AWS::IAM::Role")
             if r["Properties"].get("Description", "").startswith(f"Pod Identity of app/{service_account}:")]
    (role,) = roles
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(trust["Action"]) == ["sts:AssumeRole", "sts:TagSession"]

    policies = [p["Properties"]["PolicyDocument"]["Statement"] for p in _resources(template_json, env, "AWS::IAM::Policy")
                if p["Properties"]["PolicyName"].startswith(f"{service_account.capitalize()}IdentitySecretsPolicy")]
    (statements,) = policies
    secrets, kms = statements
    assert sorted(secrets["Action"]) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    # The services' login, the tenant-password key, the cache AUTH token: all from the data stack,
    # none a wildcard (tenant passwords are derived, so no tenant secret is readable from a pod).
    assert len(secrets["Resource"]) == 3
    assert all(arn["Fn::GetStackOutput"]["StackName"] == f"saas-{env}-data" for arn in secrets["Resource"])
    assert "*" not in json.dumps(secrets["Resource"])
    assert kms["Action"] == "kms:Decrypt"
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}


@pytest.mark.parametrize("env", ENVS)
def test_cluster_is_admitted_to_postgres_and_cache(template_json, env):
    rules = {(r["Properties"]["FromPort"], r["Properties"]["GroupId"]["Fn::GetStackOutput"]["StackName"])
             for r in _resources(template_json, env, "AWS::EC2::SecurityGroupIngress")
             if r["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][1] == "ClusterSecurityGroupId"}
    assert rules == {(5432, f"saas-{env}-data"), (6379, f"saas-{env}-data")}


@pytest.mark.parametrize("env", ENVS)
def test_cluster_name_and_roles_published(template_json, env):
    names = {r["Properties"].get("Name") for r in _resources(template_json, env, "AWS::SSM::Parameter")}
    assert {f"/saas/{env}/platform/{k}" for k in ("cluster-name", "api-role-arn", "worker-role-arn")} <= names


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    """The other config branches (managed node group, public endpoint limited to CIDRs, RDS Proxy),
    synthesized once with the nag gate on, foundation stacks only."""
    base = load_config("prod")
    config = dataclasses.replace(base, database=dataclasses.replace(base.database, rds_proxy=True),
                                 cluster=dataclasses.replace(
        base.cluster, auto_mode=False, endpoint_public_cidrs=("203.0.113.0/24",)))
    built = foundation(tmp_path_factory, "auto-mode", config)
    app, data, cluster = built.app, built.data, built.cluster
    assembly = app.synth()  # raises on any unacknowledged nag finding
    return {stack.node.id: assembly.get_stack_artifact(stack.artifact_id).template for stack in (data, cluster)}


def test_managed_node_group_variant(variant):
    template = variant["cluster"]
    resources = template["Resources"].values()
    (cluster,) = [r["Properties"] for r in resources if r["Type"] == "AWS::EKS::Cluster"]
    assert "ComputeConfig" not in cluster or not cluster["ComputeConfig"].get("Enabled")
    assert cluster["ResourcesVpcConfig"]["PublicAccessCidrs"] == ["203.0.113.0/24"]
    (nodegroup,) = [r["Properties"] for r in resources if r["Type"] == "AWS::EKS::Nodegroup"]
    assert nodegroup["AmiType"] == "AL2023_ARM_64_STANDARD" and nodegroup["InstanceTypes"] == ["m7g.large"]
    assert nodegroup["ScalingConfig"] == {"MinSize": 2, "MaxSize": 6, "DesiredSize": 2}
    assert all("privateSubnet" in s["Fn::GetStackOutput"]["OutputName"] for s in nodegroup["Subnets"])
    addons = {r["Properties"]["AddonName"] for r in resources if r["Type"] == "AWS::EKS::Addon"}
    assert addons == {"eks-pod-identity-agent", "metrics-server"}
    assert not [r for r in resources if r["Type"] == "AWS::EKS::AccessEntry"]   # the access stack's job


def test_rds_proxy_variant_requires_tls_and_is_admitted_like_the_database(variant):
    resources = variant["data"]["Resources"]
    (proxy,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::RDS::DBProxy"]
    assert proxy["RequireTLS"] is True and proxy["EngineFamily"] == "POSTGRESQL"
    (target,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::RDS::DBProxyTargetGroup"]
    assert target["ConnectionPoolConfigurationInfo"]["MaxConnectionsPercent"] == 50
    sources = {(r["Properties"]["GroupId"]["Fn::GetAtt"][0], r["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0])
               for r in resources.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"}
    proxy_sg = next(name for name in resources if name.startswith("PostgresProxySecurityGroup")
                    and resources[name]["Type"] == "AWS::EC2::SecurityGroup")
    assert (proxy_sg, "ControlPlaneSecurityGroupBA03A401") in sources
    assert ("PostgresSecurityGroup670916BF", proxy_sg) in sources
    names = {r["Properties"].get("Name") for r in resources.values() if r["Type"] == "AWS::SSM::Parameter"}
    assert "/saas/prod/platform/db-proxy-endpoint" in names


@pytest.mark.parametrize(("env", "days"), [("dev", 14), ("prod", 90)])
def test_control_plane_logs_go_to_a_precreated_encrypted_log_group(templates, template_json, env, days):
    templates[(env, "cluster")].has_resource_properties("AWS::Logs::LogGroup", {
        "LogGroupName": f"/aws/eks/saas-{env}/cluster", "RetentionInDays": days,
        "KmsKeyId": Match.object_like({"Fn::GetStackOutput": Match.object_like({"StackName": f"saas-{env}-security"})})})
    resources = template_json[(env, "cluster")]["Resources"]
    (cluster,) = [r for r in resources.values() if r["Type"] == "AWS::EKS::Cluster"]
    assert any(dep.startswith("ControlPlaneLogs") for dep in cluster["DependsOn"])


@pytest.mark.parametrize("env", ENVS)
def test_cluster_role_may_use_the_eks_key_for_envelope_encryption(template_json, env):
    statements = [s for r in _resources(template_json, env, "AWS::IAM::Policy")
                  if r["Properties"]["Roles"] == [{"Ref": "ClusterRoleFA261979"}]
                  for s in r["Properties"]["PolicyDocument"]["Statement"]]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant"} <= actions
    assert all(s["Resource"]["Fn::GetStackOutput"]["StackName"] == f"saas-{env}-security" for s in statements)


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("service_account", ["api", "worker"])
def test_pod_identity_roles_may_send_traces_to_xray_only(template_json, env, service_account):
    (statements,) = [p["Properties"]["PolicyDocument"]["Statement"] for p in _resources(template_json, env, "AWS::IAM::Policy")
                     if p["Properties"]["PolicyName"].startswith(f"{service_account.capitalize()}IdentityTracingPolicy")]
    (statement,) = statements
    assert all(action.startswith("xray:") for action in statement["Action"])
    assert {"xray:PutTraceSegments", "xray:PutSpans"} <= set(statement["Action"])
