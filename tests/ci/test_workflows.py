"""The GitHub Actions workflows: linted by actionlint (with shellcheck over every `run` script), and
every shell step runs with pipefail so a failing command piped into `tee` fails its job."""

from __future__ import annotations

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
    assert {path.name for path in WORKFLOWS} >= {"gates.yml", "pr-diff.yml", "deploy.yml"}


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
