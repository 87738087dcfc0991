"""Cluster access: access entries from config, the SSM tunnel (no inbound, no shell, audited) and
the policy that lets an operator's or the release role use it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from stacks.access_stack import AccessStack
from stacks.account_stack import SharedAccountStack
from stacks.cicd_stack import CicdStack
from stacks.config import DRIFT_READERS_GROUP, load_config
from tests.stacks.conftest import foundation

ADMIN = "arn:aws:iam::111111111111:role/platform-admin"
VIEWERS = ("arn:aws:iam::111111111111:role/support", "arn:aws:iam::111111111111:role/oncall-readonly")


def _of(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


@pytest.fixture(scope="module")
def access(tmp_path_factory):
    """Access stack of prod with one administrator and two viewers, synthesized with the nag gate on."""
    base = load_config("prod")
    config = dataclasses.replace(base, cluster=dataclasses.replace(
        base.cluster, admin_role_arns=(ADMIN,), viewer_role_arns=VIEWERS))
    built = foundation(tmp_path_factory, "access", config)
    app, env, network, cluster, data = built.app, built.env, built.network, built.cluster, built.data
    shared = SharedAccountStack(app, "shared", configs=[config], env=env)
    cicd = CicdStack(app, "cicd", config=config, env=env)
    cicd.add_stack_dependency(shared)
    stack = AccessStack(app, "access", config=config, network=network, data=data, cluster=cluster, cicd=cicd,
                        env=env)
    assembly = app.synth()  # raises on any unacknowledged nag finding
    return {name: assembly.get_stack_artifact(s.artifact_id).template
            for name, s in (("access", stack), ("cicd", cicd), ("data", data))}


def _policy(template: dict, construct_id: str) -> dict:
    (policy,) = [r["Properties"] for name, r in _of(template, "AWS::IAM::ManagedPolicy").items()
                 if name.startswith(construct_id)]
    return policy


def test_access_entries_for_administrators_viewers_and_the_release_role(access):
    entries = [r["Properties"] for r in _of(access["access"], "AWS::EKS::AccessEntry").values()]
    policies = {}
    for entry in entries:
        (policy,) = entry["AccessPolicies"]
        assert policy["AccessScope"] == {"Type": "cluster"}
        principal = entry["PrincipalArn"] if isinstance(entry["PrincipalArn"], str) else (
            "release" if "ReleaseRole" in str(entry["PrincipalArn"]) else "drift" if "DriftRole" in str(
                entry["PrincipalArn"]) else str(entry["PrincipalArn"]))
        policies[principal] = str(policy["PolicyArn"]).rsplit("/", 1)[-1].rstrip("']}")
    assert policies == {ADMIN: "AmazonEKSClusterAdminPolicy", VIEWERS[0]: "AmazonEKSViewPolicy",
                        VIEWERS[1]: "AmazonEKSViewPolicy", "release": "AmazonEKSClusterAdminPolicy",
                        "drift": "AmazonEKSViewPolicy"}


def test_the_drift_role_views_the_cluster_through_the_tunnel_in_the_drift_readers_group(access):
    (drift,) = [r["Properties"] for r in _of(access["access"], "AWS::EKS::AccessEntry").values()
                if "DriftRole" in str(r["Properties"]["PrincipalArn"])]
    assert drift["KubernetesGroups"] == [DRIFT_READERS_GROUP]
    roles = json.dumps(_policy(access["access"], "ClusterAccess")["Roles"])
    assert "ReleaseRole" in roles and "DriftRole" in roles    # the tunnel, for both


def test_tunnel_has_no_way_in_but_session_manager(access):
    template = access["access"]
    (instance,) = [r["Properties"] for r in _of(template, "AWS::EC2::Instance").values()]
    assert instance["InstanceType"] == "t4g.nano" and "KeyName" not in instance
    assert "AvailabilityZone" not in instance   # taken from the subnet
    (device,) = instance["BlockDeviceMappings"]
    assert device["Ebs"]["Encrypted"] is True
    (launch_template,) = [r["Properties"] for r in _of(template, "AWS::EC2::LaunchTemplate").values()]
    assert launch_template["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"
    (group,) = [r["Properties"] for r in _of(template, "AWS::EC2::SecurityGroup").values()]
    assert "SecurityGroupIngress" not in group
    assert [(rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) for rule in group["SecurityGroupEgress"]] == [
        ("tcp", 443, 443)]
    (ingress,) = [r["Properties"] for r in _of(template, "AWS::EC2::SecurityGroupIngress").values()
                  if r["Properties"]["FromPort"] == 443]
    assert ingress["ToPort"] == 443
    assert "ClusterSecurityGroupId" in str(ingress["GroupId"])


def test_tunnel_reaches_only_the_database_group_on_5432_and_the_database_admits_only_it(access):
    template = access["access"]
    (egress,) = [r["Properties"] for r in _of(template, "AWS::EC2::SecurityGroupEgress").values()]
    (ingress,) = [r["Properties"] for r in _of(template, "AWS::EC2::SecurityGroupIngress").values()
                  if r["Properties"]["FromPort"] != 443]
    for rule in (egress, ingress):
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
        assert not {"CidrIp", "CidrIpv6"} & set(rule)
    assert "TunnelSecurityGroup" in str(egress["GroupId"]) and "PostgresSecurityGroup" in str(egress["DestinationSecurityGroupId"])
    assert "PostgresSecurityGroup" in str(ingress["GroupId"]) and "TunnelSecurityGroup" in str(ingress["SourceSecurityGroupId"])
    assert "0.0.0.0/0" not in json.dumps([egress, ingress])
    # the data stack itself gains no rule for the tunnel (it never depends on the access stack)
    assert "Tunnel" not in json.dumps(access["data"])


def test_database_access_policy_connects_as_the_operator_login_and_opens_port_forwarding_sessions_only(access):
    policy = _policy(access["access"], "DatabaseAccess")
    statements = {s["Action"] if isinstance(s["Action"], str) else tuple(s["Action"]): s
                  for s in policy["PolicyDocument"]["Statement"]}
    assert set(statements) == {"rds-db:connect", "ssm:StartSession", ("ssm:ResumeSession", "ssm:TerminateSession"),
                               "ssm:GetParameter"}
    # IAM authentication as exactly the operators' login of exactly this instance (its DbiResourceId).
    (instance,) = [name for name, r in _of(access["data"], "AWS::RDS::DBInstance").items()]
    (output,) = [name for name, o in access["data"]["Outputs"].items()
                 if o["Value"] == {"Fn::GetAtt": [instance, "DbiResourceId"]}]
    resource_id = {"Fn::GetStackOutput": {"StackName": "data", "Region": "us-east-1", "OutputName": output}}
    assert statements["rds-db:connect"] == {"Action": "rds-db:connect", "Effect": "Allow", "Resource": {"Fn::Join": [
        "", ["arn:aws:rds-db:us-east-1:111111111111:dbuser:", resource_id, "/tenant_provisioner_operator"]]}}
    start = statements["ssm:StartSession"]
    assert start["Condition"] == {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}}
    resources = [json.dumps(r) for r in start["Resource"]]
    assert len(resources) == 2 and any("document/AWS-StartPortForwardingSessionToRemoteHost" in r for r in resources)
    assert any(":instance/" in r and "Tunnel" in r for r in resources)
    # The master secret is no longer readable through this policy: no secret, no key, not even its parameter.
    document = json.dumps(policy["PolicyDocument"])
    for word in ("secretsmanager", "kms:", "PostgresInstanceSecret", "db-master-secret-arn"):
        assert word not in document, word
    parameters = json.dumps(statements["ssm:GetParameter"]["Resource"])
    assert all(f"/saas/prod/platform/{key}" in parameters
               for key in ("tunnel-instance-id", "db-endpoint", "db-port", "db-name", "db-operator-login"))
    assert "cluster-name" not in parameters and "Roles" not in policy   # attached to administrators by hand


def test_access_policy_allows_only_port_forwarding_sessions_on_the_tunnel(access):
    policy = _policy(access["access"], "ClusterAccess")
    statements = {s["Action"] if isinstance(s["Action"], str) else tuple(s["Action"]): s
                  for s in policy["PolicyDocument"]["Statement"]}
    start = statements["ssm:StartSession"]
    assert start["Condition"] == {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}}
    resources = [str(r) for r in start["Resource"]]
    assert any("document/AWS-StartPortForwardingSessionToRemoteHost" in r for r in resources)
    assert any(":instance/" in r and "Tunnel" in r for r in resources) and len(resources) == 2
    assert "${aws:userid}" in str(statements[("ssm:ResumeSession", "ssm:TerminateSession")]["Resource"])
    assert "ReleaseRole" in str(policy["Roles"])


def test_release_role_trusts_only_its_github_environment_and_assumes_no_other_role(access):
    roles = _of(access["cicd"], "AWS::IAM::Role")
    (name,) = [n for n in roles if n.startswith("ReleaseRole")]
    (trust,) = roles[name]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == \
        "repo:example-org/saas-platform:environment:production"
    statements = [st for r in _of(access["cicd"], "AWS::IAM::Policy").values()
                  if {"Ref": name} in r["Properties"]["Roles"] for st in r["Properties"]["PolicyDocument"]["Statement"]]
    actions = {a for st in statements for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert not any(a.startswith("sts:") for a in actions)
    assert {"ecr:PutImage", "lambda:InvokeFunction", "cloudformation:DescribeStackResources"} <= actions
    (invoke,) = [st for st in statements if st["Action"] == "lambda:InvokeFunction"]
    assert invoke["Resource"].endswith(":function:saas-prod-tenants-TenantOperations*")   # never the signup function
    pushes = [st for st in statements if "ecr:PutImage" in st["Action"]]
    assert pushes and all("saas-prod/*" in json.dumps(st["Resource"]) and "saas-dev" not in json.dumps(st["Resource"])
                          for st in pushes)                         # pushes to its own environment's repositories only
    (pull,) = [st for st in statements if "saas-dev/" in json.dumps(st["Resource"])]   # promotion: pull, never push
    assert sorted(pull["Action"]) == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
