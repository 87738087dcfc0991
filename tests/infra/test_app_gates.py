"""The static gates over the whole app: cdk-nag AwsSolutions, CDK's built-in validation, cfn-lint."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stacks import nag
from stacks.config import ENVIRONMENTS
from app import PROJECT_DIR as REPO_ROOT

FOUNDATION = ("security", "network", "data", "cluster")


def _violations(report: dict | None) -> list[str]:
    return [f"{plugin['pluginName']}: {violation['ruleName']} at {construct['constructPath']}"
            for plugin in (report or {}).get("pluginReports", [])
            for violation in plugin["violations"]
            for construct in violation["violatingConstructs"]]


def test_every_environment_has_every_foundation_stack(template_json):
    assert {(env, component) for env in ENVIRONMENTS for component in FOUNDATION} <= set(template_json)


def test_synth_passes_nag_and_builtin_validation(synthesized):
    report = synthesized.validation_report
    assert synthesized.validation_error is None, "\n".join(_violations(report)) or synthesized.validation_error
    plugins = {p["pluginName"]: p["conclusion"] for p in report["pluginReports"]}
    assert plugins.get(nag.NAG_PLUGIN) == "success"


def test_cfn_lint_reports_no_errors(synthesized):
    templates = sorted(str(p) for p in synthesized.outdir.glob("*.template.json"))
    result = subprocess.run([sys.executable, "-m", "cfnlint", "--format", "json", "--", *templates],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    findings = json.loads(result.stdout or "[]")
    errors = [f"{f['Rule']['Id']} {f['Filename']}: {f['Message']}" for f in findings if f["Level"] == "Error"]
    warnings = [f"{f['Rule']['Id']} {f['Message']}" for f in findings if f["Level"] == "Warning"]
    assert not errors, "\n".join(errors)
    assert not warnings, "warnings not listed in .cfnlintrc:\n" + "\n".join(warnings)


@pytest.mark.parametrize("reason", ["", "n/a", "false positive", "needed for the thing"])
def test_acknowledgment_needs_a_concrete_reason(reason):
    with pytest.raises(ValueError, match="concrete reason"):
        nag.acknowledge(None, "AwsSolutions-IAM5", reason)  # type: ignore[arg-type]


@pytest.mark.parametrize(("finding", "expected"), [
    ("AwsSolutions-IAM5[Resource::*]", "AwsSolutions::AwsSolutions-IAM5[Resource::*]"),
    ("AwsSolutions::AwsSolutions-RDS11", "AwsSolutions::AwsSolutions-RDS11"),
    ("CloudFormation-Validate::W3005", "CloudFormation-Validate::W3005"),
])
def test_finding_ids_are_fully_qualified(finding, expected):
    assert nag.finding_id(finding) == expected


@pytest.mark.parametrize("finding", ["*", "AwsSolutions-*", "IAM5", "Other::X-1", ""])
def test_blanket_or_unknown_finding_ids_are_refused(finding):
    with pytest.raises(ValueError):
        nag.finding_id(finding)
