"""Promotion: prod's release copies dev's scanned images by digest (k8s.images --promote), from dev's
account when that is another one; the release workflow runs exactly this."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from app import PROJECT_DIR
from k8s.images import main as images_main
from k8s.images import promote_commands, registries
from k8s.values import ValuesError
from stacks.config import load_config

DEV_ACCOUNT, PROD_ACCOUNT, REGION = "210987654321", "123456789012", "eu-west-1"
DIGESTS = {"api": "sha256:" + "a1" * 32, "worker": "sha256:" + "b2" * 32}


def _prod(promote_from_account: str | None = None):
    config = load_config("prod", account=PROD_ACCOUNT, region=REGION)
    return dataclasses.replace(config, cicd=dataclasses.replace(config.cicd, promote_from_account=promote_from_account))


@pytest.mark.parametrize("source_account", [PROD_ACCOUNT, DEV_ACCOUNT], ids=["one account", "two accounts"])
def test_prod_copies_each_of_dev_s_digests_into_its_own_repository_and_checks_the_copy(source_account):
    config = _prod(None if source_account == PROD_ACCOUNT else source_account)
    commands = promote_commands(config, DIGESTS, "abc123def456")
    target = f"{PROD_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    source = f"{source_account}.dkr.ecr.{REGION}.amazonaws.com"
    assert commands == [
        ["docker", "buildx", "imagetools", "create", "--tag", f"{target}/saas-prod/api:abc123def456",
         f"{source}/saas-dev/api@{DIGESTS['api']}"],
        ["docker", "buildx", "imagetools", "inspect", f"{target}/saas-prod/api@{DIGESTS['api']}"],
        ["docker", "buildx", "imagetools", "create", "--tag", f"{target}/saas-prod/worker:abc123def456",
         f"{source}/saas-dev/worker@{DIGESTS['worker']}"],
        ["docker", "buildx", "imagetools", "inspect", f"{target}/saas-prod/worker@{DIGESTS['worker']}"],
    ]


def test_the_release_logs_in_to_dev_s_registry_only_when_it_is_another_account():
    own = f"{PROD_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    assert registries(_prod()) == [own]
    assert registries(_prod(DEV_ACCOUNT)) == [own, f"{DEV_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"]
    assert registries(load_config("dev", account=DEV_ACCOUNT, region=REGION)) == [
        f"{DEV_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"]


def test_an_environment_without_a_source_or_a_missing_digest_is_refused():
    with pytest.raises(ValuesError, match="cicd.promote_from is unset"):
        promote_commands(load_config("dev", account=DEV_ACCOUNT, region=REGION), DIGESTS, "t")
    with pytest.raises(ValuesError, match="no digest for worker"):
        promote_commands(_prod(), {"api": DIGESTS["api"]}, "t")


def test_cli_promotes_from_a_digests_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    digests = Path("dev-digests.json")
    digests.write_text(__import__("json").dumps(DIGESTS))
    assert images_main(["--env", "prod", "--account", PROD_ACCOUNT, "--region", REGION, "--tag", "t",
                        "--promote", str(digests), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"saas-dev/api@{DIGESTS['api']}" in printed and "imagetools inspect" in printed
    assert images_main(["--env", "prod", "--account", PROD_ACCOUNT, "--region", REGION, "--registries"]) == 0
    assert capsys.readouterr().out.split() == [f"{PROD_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"]


def test_the_release_workflow_promotes_through_k8s_images_and_logs_in_to_every_registry_it_names():
    workflow = yaml.safe_load((PROJECT_DIR / ".github" / "workflows" / "release-environment.yml").read_text())
    steps = workflow["jobs"]["images"]["steps"]
    runs = {step.get("name", ""): step.get("run", "") for step in steps}
    (login,) = [run for name, run in runs.items() if name.startswith("log in to ECR")]
    assert "k8s.images" in login and "--registries" in login and "docker login" in login
    (promote,) = [(step.get("if"), step["run"]) for step in steps if "--promote" in step.get("run", "")]
    assert promote[0] == "${{ !inputs.build-images }}"
    assert "k8s.images" in promote[1] and "build/images/digests.json" in promote[1]
    text = "\n".join(runs.values())
    assert "saas-dev/" not in text   # the source repository comes from the configuration, not the workflow
