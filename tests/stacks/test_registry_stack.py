"""Registry stack: the API and worker images in immutable, scanned, KMS-encrypted ECR repositories."""

from __future__ import annotations

import pytest

ENVS = ("dev", "prod")


def _repositories(template_json, env):
    return {r["Properties"]["RepositoryName"]: (name, r) for name, r in template_json[(env, "registry")]["Resources"].items()
            if r["Type"] == "AWS::ECR::Repository"}


@pytest.mark.parametrize("env", ENVS)
def test_one_immutable_scanned_kms_repository_per_service(template_json, env):
    repositories = _repositories(template_json, env)
    assert set(repositories) == {f"saas-{env}/api", f"saas-{env}/worker"}
    for _, repository in repositories.values():
        props = repository["Properties"]
        assert props["ImageTagMutability"] == "IMMUTABLE"
        assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
        assert props["EncryptionConfiguration"]["EncryptionType"] == "KMS"
        key = props["EncryptionConfiguration"]["KmsKey"]["Fn::GetStackOutput"]
        assert key["StackName"] == f"saas-{env}-security" and "ImagesKey" in key["OutputName"]
        assert repository["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("env", ENVS)
def test_lifecycle_expires_untagged_layers_and_keeps_the_newest_releases(template_json, env):
    import json

    for _, repository in _repositories(template_json, env).values():
        policy = json.loads(repository["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])
        rules = sorted(policy["rules"], key=lambda r: r["rulePriority"])
        untagged, releases = rules
        assert untagged["selection"] == {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                         "countUnit": "days", "countNumber": 7}
        assert releases["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 30}
        assert all(rule["action"] == {"type": "expire"} for rule in rules)


@pytest.mark.parametrize("env", ENVS)
def test_repository_uris_published_for_the_release_pipeline(template_json, env):
    names = {r["Properties"].get("Name") for r in template_json[(env, "registry")]["Resources"].values()
             if r["Type"] == "AWS::SSM::Parameter"}
    assert names == {f"/saas/{env}/platform/api-repository-uri", f"/saas/{env}/platform/worker-repository-uri"}


def test_images_key_rotates_and_is_retained(templates):
    templates[("prod", "security")].has_resource_properties("AWS::KMS::Key", {
        "Description": "saas prod: ECR repositories of the API and worker images", "EnableKeyRotation": True})


# ---- Two accounts: prod's release pulls dev's images by digest ---------------------------------
DEV_ACCOUNT, PROD_ACCOUNT = "210987654321", "123456789012"
PROD_RELEASE = f"arn:aws:iam::{PROD_ACCOUNT}:role/saas-prod-cicd-ReleaseRole1A2B3C"


@pytest.mark.parametrize("env", ENVS)
def test_one_account_repositories_have_no_repository_policy(template_json, env):
    for _, repository in _repositories(template_json, env).values():
        assert "RepositoryPolicyText" not in repository["Properties"]


@pytest.fixture(scope="module")
def two_accounts(tmp_path_factory):
    """dev (allowing prod's release role) and prod (promoting from dev's account), each in its own
    account, synthesized with the cdk-nag gate on: ``app.synth()`` raises on any unacknowledged finding."""
    import dataclasses

    import aws_cdk as cdk

    from app import project_context
    from stacks.cicd_stack import CicdStack
    from stacks.config import load_config
    from stacks.nag import register_gates
    from stacks.registry_stack import RegistryStack
    from stacks.security_stack import SecurityStack

    app = cdk.App(outdir=str(tmp_path_factory.mktemp("two-accounts")),
                  context={**project_context(), "aws:cdk:bundling-stacks": []})
    register_gates(app)
    dev = load_config("dev", account=DEV_ACCOUNT, region="us-east-1")
    dev = dataclasses.replace(dev, cicd=dataclasses.replace(dev.cicd, image_pull_role_arns=(PROD_RELEASE,)))
    prod = load_config("prod", account=PROD_ACCOUNT, region="us-east-1")
    prod = dataclasses.replace(prod, cicd=dataclasses.replace(prod.cicd, promote_from_account=DEV_ACCOUNT))
    for config in (dev, prod):
        env = cdk.Environment(account=config.account, region=config.region)
        security = SecurityStack(app, f"{config.name}-security", config=config, env=env)
        RegistryStack(app, f"{config.name}-registry", config=config, security=security, env=env)
        CicdStack(app, f"{config.name}-cicd", config=config, env=env)
    assembly = app.synth()
    return {stack.stack_name: stack.template for stack in assembly.stacks}


def test_dev_repositories_let_exactly_prod_s_release_role_pull_and_nothing_more(two_accounts):
    import json

    repositories = [r for r in two_accounts["dev-registry"]["Resources"].values() if r["Type"] == "AWS::ECR::Repository"]
    assert len(repositories) == 2
    for repository in repositories:
        policy = repository["Properties"]["RepositoryPolicyText"]
        (statement,) = policy["Statement"]
        assert statement["Effect"] == "Allow"
        assert sorted(statement["Action"]) == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                                               "ecr:GetDownloadUrlForLayer"]   # pull only: no push, no delete
        principal = json.dumps(statement["Principal"])
        assert PROD_ACCOUNT in principal and "*" not in principal                 # no wildcard principal
        assert statement["Condition"] == {"ArnEquals": {"aws:PrincipalArn": [PROD_RELEASE]}}
        assert "Resource" not in statement


def test_prod_release_role_may_pull_dev_s_repositories_in_dev_s_account_only(two_accounts):
    import json

    policies = [r["Properties"]["PolicyDocument"]["Statement"] for r in two_accounts["prod-cicd"]["Resources"].values()
                if r["Type"] == "AWS::IAM::Policy"]
    cross = [s for statements in policies for s in statements if DEV_ACCOUNT in json.dumps(s.get("Resource"))]
    (statement,) = cross
    assert sorted(statement["Action"]) == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                                           "ecr:GetDownloadUrlForLayer"]
    assert statement["Resource"] == f"arn:aws:ecr:us-east-1:{DEV_ACCOUNT}:repository/saas-dev/*"
    # dev has nothing to promote from, prod's repositories let no other account in
    assert not any(DEV_ACCOUNT in json.dumps(r) for r in two_accounts["dev-cicd"]["Resources"].values()
                   if r["Type"] == "AWS::IAM::Policy" and PROD_ACCOUNT in json.dumps(r))
    assert all("RepositoryPolicyText" not in r["Properties"] for r in two_accounts["prod-registry"]["Resources"].values()
               if r["Type"] == "AWS::ECR::Repository")


@pytest.mark.parametrize("changes, message", [
    ({"image_pull_role_arns": ("arn:aws:iam::123456789012:role/*",)}, "is not an IAM role ARN"),
    ({"image_pull_role_arns": ("123456789012",)}, "is not an IAM role ARN"),
    ({"promote_from": "dev", "promote_from_account": "12345"}, "a 12-digit AWS account id"),
    ({"promote_from_account": "123456789012"}, "cicd.promote_from (the source environment) is not"),
])
def test_promotion_settings_that_name_no_exact_role_or_account_are_refused(changes, message):
    import re

    from stacks.config import CicdConfig, CicdConfigError

    with pytest.raises(CicdConfigError, match=re.escape(message)):
        CicdConfig(github_repository="acme/saas", github_environment="production", **changes)
