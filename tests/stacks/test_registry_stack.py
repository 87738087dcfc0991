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
