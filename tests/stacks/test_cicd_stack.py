"""CI/CD stack: GitHub OIDC provider and roles that can only assume the CDK bootstrap roles."""

from __future__ import annotations

import pytest

GITHUB = "token.actions.githubusercontent.com"


def _roles(template_json, env):
    resources = template_json[(env, "cicd")]["Resources"]
    return {name: r for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"}, resources


def test_github_oidc_provider_is_the_shared_account_stack_s(templates):
    templates[("shared", "account")].has_resource_properties("AWS::IAM::OIDCProvider", {
        "Url": f"https://{GITHUB}", "ClientIdList": ["sts.amazonaws.com"]})


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_roles_trust_the_account_s_provider_by_its_well_known_arn(template_json, env):
    roles, _ = _roles(template_json, env)
    for role in roles.values():
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"]["Federated"] == f"arn:aws:iam::111111111111:oidc-provider/{GITHUB}"


@pytest.mark.parametrize(("env", "github_environment"), [("dev", "dev"), ("prod", "production")])
@pytest.mark.parametrize(("role", "subject", "bootstrap_roles"), [
    ("DeployRole", "environment:{github_environment}", {"deploy", "file-publishing", "image-publishing", "lookup"}),
    ("PullRequestDiffRole", "pull_request", {"lookup"}),
    ("DriftRole", "ref:refs/heads/main", {"lookup"}),   # scheduled, outside any GitHub environment: read only
])
def test_roles_trust_one_github_subject_and_assume_only_bootstrap_roles(
        template_json, env, github_environment, role, subject, bootstrap_roles):
    roles, resources = _roles(template_json, env)
    (name,) = [n for n in roles if n.startswith(role)]
    (trust,) = roles[name]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Condition"] == {"StringEquals": {
        f"{GITHUB}:aud": "sts.amazonaws.com",
        f"{GITHUB}:sub": f"repo:example-org/saas-platform:{subject.format(github_environment=github_environment)}"}}
    (policy,) = [r["Properties"]["PolicyDocument"]["Statement"] for r in resources.values()
                 if r["Type"] == "AWS::IAM::Policy" and r["Properties"]["Roles"] == [{"Ref": name}]]
    (statement,) = policy
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    resources_allowed = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    assert {arn.split(":role/cdk-hnb659fds-")[1].removesuffix("-role-111111111111-us-east-1")
            for arn in resources_allowed} == bootstrap_roles
