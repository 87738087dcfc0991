"""The GitHub Actions workflows: linted by actionlint (with shellcheck over every `run` script), and
every shell step runs with pipefail so a failing command piped into `tee` fails its job."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app import PROJECT_DIR

WORKFLOWS = sorted((PROJECT_DIR / ".github" / "workflows").glob("*.yml"))
VENV_BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    assert path, f"{name} is installed by requirements-dev.txt (make .venv/.installed)"
    return path


def _actionlint(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("actionlint"), "-oneline", "-no-color", "-shellcheck", _tool("shellcheck"),
                           *map(str, paths)], capture_output=True, text=True, cwd=PROJECT_DIR, timeout=120)


def test_workflows_exist():
    assert {path.name for path in WORKFLOWS} >= {"gates.yml", "pr-diff.yml", "release.yml", "release-environment.yml",
                                                 "drift.yml"}


def test_actionlint_and_shellcheck_pass_on_every_workflow():
    result = _actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The lint gate can fail: an undefined job dependency and an unquoted expansion are reported."""
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text("on: push\njobs:\n  a:\n    needs: missing\n    runs-on: ubuntu-24.04\n"
                      "    steps:\n      - run: echo $HOME/$1 | tee out\n")
    result = subprocess.run([_tool("actionlint"), "-oneline", "-no-color", "-shellcheck", _tool("shellcheck"),
                             str(broken)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "missing" in result.stdout and "shellcheck" in result.stdout


def _shell_of(workflow: dict, job: dict, step: dict) -> str | None:
    return (step.get("shell") or job.get("defaults", {}).get("run", {}).get("shell")
            or workflow.get("defaults", {}).get("run", {}).get("shell"))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_piped_run_step_fails_when_a_piped_command_fails(path):
    """GitHub runs `shell: bash` as `bash -eo pipefail`; its implicit default shell has no pipefail."""
    workflow = yaml.safe_load(path.read_text())
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            script = step.get("run", "")
            if "|" in script.replace("||", ""):
                assert _shell_of(workflow, job, step) == "bash" or "set -o pipefail" in script, \
                    f"{path.name}:{job_name}: step {step.get('name', script[:40])!r} pipes without pipefail"


def _workflow(name: str) -> dict:
    return yaml.safe_load((PROJECT_DIR / ".github" / "workflows" / name).read_text())


def test_release_runs_gates_then_dev_then_prod_behind_the_production_environment():
    release = _workflow("release.yml")
    jobs = release["jobs"]
    assert jobs["gates"]["uses"] == "./.github/workflows/gates.yml"
    assert jobs["dev"]["needs"] == "gates" and jobs["prod"]["needs"] == "dev"
    assert jobs["dev"]["with"] == {"env": "dev", "github-environment": "dev", "build-images": True}
    assert jobs["prod"]["with"] == {"env": "prod", "github-environment": "production", "build-images": False}


def test_each_environment_release_runs_its_steps_in_order_in_its_github_environment():
    jobs = _workflow("release-environment.yml")["jobs"]
    order = ["stacks", "images", "migrations", "manifests", "smoke"]
    assert list(jobs) == order
    for before, job in zip(order, order[1:]):
        assert jobs[job]["needs"] == before
    for job in jobs.values():
        assert job["environment"] == "${{ inputs.github-environment }}"
    scripts = {name: "\n".join(step.get("run", "") for step in job["steps"]) for name, job in jobs.items()}
    assert "cdk deploy --all" in scripts["stacks"]
    assert "make images" in scripts["images"] and "--exit-code 1" in scripts["images"]
    assert "--severity HIGH,CRITICAL" in scripts["images"] and "trivyignore.yaml" in scripts["images"]
    assert "tools.release migrate" in scripts["migrations"]
    assert "tools.cluster_access" in scripts["manifests"] and "rollout undo" in scripts["manifests"]
    assert "tools.release smoke" in scripts["smoke"]


def test_aws_credentials_only_through_oidc_roles_never_stored_keys():
    for path in WORKFLOWS:
        text = path.read_text()
        assert "pull_request_target" not in text and "aws-access-key-id" not in text, path.name
        for job in yaml.safe_load(text)["jobs"].values():
            for step in job.get("steps", []):
                if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials"):
                    if step["with"].get("role-chaining"):   # from the OIDC role of an earlier step
                        assert step["with"]["role-to-assume"].startswith("${{ steps."), path.name
                    else:
                        assert step["with"]["role-to-assume"].startswith(("${{ vars.", "${{ vars[")), path.name
                    assert job["permissions"]["id-token"] == "write", path.name


def test_pull_requests_get_a_stack_diff_and_a_manifest_diff():
    jobs = _workflow("pr-diff.yml")["jobs"]
    assert "cdk diff" in "".join(step.get("run", "") for step in jobs["diff"]["steps"])
    manifest = "".join(step.get("run", "") for step in jobs["manifest-diff"]["steps"])
    assert "k8s.render" in manifest and "diff -ru" in manifest and "[ $? -eq 1 ]" in manifest


_REMOTE_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)(?P<comment>\s+#.*)?$", re.M)
_PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})$")


def test_every_third_party_action_is_pinned_to_a_full_commit_sha_with_its_release_tag():
    """Tags can be moved (the March 2026 trivy-action compromise re-pointed 76 tags); a commit SHA
    cannot. Each pin names its release in a comment, and one action has one pin everywhere."""
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for match in _REMOTE_USES.finditer(path.read_text()):
            ref = match["ref"]
            if ref.startswith("./"):
                continue
            pinned = _PINNED.match(ref)
            assert pinned, f"{path.name}: {ref} is not pinned to a full commit SHA"
            assert match["comment"] and re.fullmatch(r"\s+# v\d+\.\d+\.\d+", match["comment"]), \
                f"{path.name}: {ref} needs its release as a comment (# vX.Y.Z)"
            pins.setdefault(pinned["action"], set()).add(f"{pinned['sha']}{match['comment'].strip()}")
    assert pins, "no action found: the pattern no longer matches the workflows"
    assert {action: refs for action, refs in pins.items() if len(refs) > 1} == {}


def test_container_images_run_by_the_workflows_name_a_release():
    for path in WORKFLOWS:
        text = path.read_text()
        assert ":latest" not in text, path.name
        for image in re.findall(r"\b(aquasec/trivy\S*)", text):
            assert re.fullmatch(r"aquasec/trivy:\d+\.\d+\.\d+", image), f"{path.name}: {image}"


def _on(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))   # YAML 1.1 reads a bare `on` key as True


def test_drift_runs_on_a_schedule_and_on_demand_for_every_environment():
    drift = _workflow("drift.yml")
    triggers = _on(drift)
    assert set(triggers) == {"schedule", "workflow_dispatch"} and triggers["schedule"][0]["cron"]
    jobs = drift["jobs"]
    for name in ("stacks", "manifests"):
        assert jobs[name]["strategy"]["matrix"]["env"] == ["dev", "prod"]
        assert jobs[name]["strategy"]["fail-fast"] is False
        assert "environment" not in jobs[name]   # production's reviewers would hold every scheduled run


def test_drift_of_the_stacks_is_cdk_drift_with_fail_through_the_read_only_lookup_role():
    steps = _workflow("drift.yml")["jobs"]["stacks"]["steps"]
    credentials = [step["with"] for step in steps if str(step.get("uses", "")).startswith("aws-actions/configure")]
    assert credentials[0]["role-to-assume"] == "${{ vars[format('AWS_DRIFT_ROLE_ARN_{0}', matrix.env)] }}"
    assert credentials[1]["role-chaining"] is True
    script = "\n".join(step.get("run", "") for step in steps)
    assert "lookup-role" in script
    assert "cdk drift --fail" in script and "saas-shared-account" in script and '"saas-$ENVIRONMENT-*"' in script


def test_drift_of_the_manifests_reads_the_last_release_s_through_the_release_s_tunnel():
    steps = _workflow("drift.yml")["jobs"]["manifests"]["steps"]
    script = "\n".join(step.get("run", "") for step in steps)
    assert "manifests-$ENVIRONMENT" in script and "gh run download" in script
    assert "tools.cluster_access" in script and "--background" in script
    assert "k8s.drift" in script
    release = _workflow("release-environment.yml")["jobs"]["manifests"]["steps"]
    release_script = "\n".join(step.get("run", "") for step in release)
    assert "tools.cluster_access" in release_script and "--background" in release_script   # the same path
    (upload,) = [step for step in release if step.get("with", {}).get("name") == "manifests-${{ inputs.env }}"]
    assert release.index(upload) == len(release) - 1   # only once the rollout succeeded


def test_drift_opens_or_updates_an_issue_when_a_check_fails():
    report = _workflow("drift.yml")["jobs"]["report"]
    assert report["needs"] == ["stacks", "manifests"] and report["if"] == "failure()"
    assert report["permissions"] == {"issues": "write"}
    script = report["steps"][0]["with"]["script"]
    assert "issues.create(" in script and "issues.createComment(" in script and "labels: 'drift'" in script
