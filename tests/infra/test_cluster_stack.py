"""Cluster stack: native EKS (eks_v2), private, encrypted, logged, Graviton, Pod Identity for the app."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

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
def test_control_plane_and_nodes_in_private_subnets(template_json, env):
    (cluster,) = _resources(template_json, env, "AWS::EKS::Cluster")
    (nodegroup,) = _resources(template_json, env, "AWS::EKS::Nodegroup")
    for subnets in (cluster["Properties"]["ResourcesVpcConfig"]["SubnetIds"], nodegroup["Properties"]["Subnets"]):
        names = [s["Fn::GetStackOutput"]["OutputName"] for s in subnets]
        assert len(names) == 3 and all("privateSubnet" in n for n in names)


@pytest.mark.parametrize(("env", "instance_type", "scaling"), [
    ("dev", "t4g.large", {"MinSize": 1, "MaxSize": 3, "DesiredSize": 1}),
    ("prod", "m7g.large", {"MinSize": 2, "MaxSize": 6, "DesiredSize": 2}),
])
def test_graviton_al2023_managed_nodes_with_pod_identity_agent(templates, env, instance_type, scaling):
    template = templates[(env, "cluster")]
    template.has_resource_properties("AWS::EKS::Nodegroup", {
        "AmiType": "AL2023_ARM_64_STANDARD", "InstanceTypes": [instance_type], "ScalingConfig": scaling})
    template.has_resource_properties("AWS::EKS::Addon", {"AddonName": "eks-pod-identity-agent"})


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("service_account", ["api", "worker"])
def test_pod_identity_roles_read_tenant_secrets_and_cache_auth_only(templates, template_json, env, service_account):
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
    tenant_arn, cache_arn = secrets["Resource"]
    assert tenant_arn == f"arn:aws:secretsmanager:us-east-1:111111111111:secret:/saas/{env}/tenants/*"
    assert cache_arn["Fn::GetStackOutput"]["StackName"] == f"saas-{env}-data"
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
