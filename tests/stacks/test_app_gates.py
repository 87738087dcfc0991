"""The static gates over the whole app: cdk-nag AwsSolutions, CDK's built-in validation, cfn-lint."""

from __future__ import annotations

import json
import subprocess
import sys

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2

from app import PROJECT_DIR as REPO_ROOT
from app import project_context, selected_environments
from stacks import nag
from stacks.config import ENVIRONMENTS
from stacks.constructs import python_function as pf
from stacks.constructs.python_function import LambdaNetwork, PythonFunction
from tools.synth_summary import acknowledgments, failed_gates, stack_summaries

FOUNDATION = ("security", "network", "data", "cluster", "cicd", "access")


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


def test_every_nag_acknowledgment_covers_one_construct_and_names_its_finding(synthesized):
    suppressed = [item for plugin in synthesized.validation_report["pluginReports"]
                  if plugin["pluginName"] == nag.NAG_PLUGIN for item in plugin.get("suppressedViolations", [])]
    assert suppressed, "expected the documented acknowledgments"
    for item in suppressed:
        (construct,) = item["violatingConstructs"]
        assert construct["constructPath"].startswith(item["acknowledgedAt"])
        assert item["acknowledgedId"] == f"{nag.NAG_PLUGIN}::{item['ruleName']}"
        assert len(item["reason"]) >= nag.MIN_REASON_LENGTH


def test_every_foundation_nag_acknowledgment_still_suppresses_a_finding(synthesized):
    """A stale acknowledgment (its finding fixed or never raised) would silently cover a future one."""
    foundation = [synthesized.outdir / f"saas-{env}-{component}.metadata.json"
                  for env in ENVIRONMENTS for component in FOUNDATION]
    declared = {(path.lstrip("/"), ack_id)
                for metadata in foundation
                for path, entries in json.loads(metadata.read_text()).items()
                for entry in entries if entry["type"] == "aws:cdk:acknowledged-rules"
                for ack_id in entry["data"] if ack_id.startswith(f"{nag.NAG_PLUGIN}::")}
    used = {(item["acknowledgedAt"], item["acknowledgedId"])
            for plugin in synthesized.validation_report["pluginReports"]
            for item in plugin.get("suppressedViolations", [])}
    stale = {(path, ack_id) for path, ack_id in declared
             if not any(ack_id == used_id and (path == at or path.startswith(f"{at}/")) for at, used_id in used)}
    assert declared and not stale, sorted(stale)


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


@pytest.mark.parametrize("finding", ["*", "AwsSolutions-*", "IAM5", "Other::X-1", "", "AwsSolutions-IAM5",
                                     "AwsSolutions::AwsSolutions-IAM4"])
def test_blanket_or_unknown_finding_ids_are_refused(finding):
    with pytest.raises(ValueError):
        nag.finding_id(finding)


def test_python_function_in_a_vpc_passes_nag_with_only_its_runtime_wildcard(tmp_path):
    """The shared Lambda construct: latest runtime, active tracing, ENI rights, one scoped ack."""
    app = cdk.App(outdir=str(tmp_path), context={**project_context(), "aws:cdk:bundling-stacks": []})
    nag.register_gates(app)
    stack = cdk.Stack(app, "FunctionGate", env=cdk.Environment(account="111111111111", region="us-east-1"))
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1)
    vpc.add_flow_log("FlowLog")
    function = PythonFunction(stack, "Fn", name=_any_function(), description="gate check", network=LambdaNetwork(
        vpc=vpc, subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)))
    PythonFunction(stack, "Other", name=_any_function(), description="shares the dependency layer")
    template = cdk.assertions.Template.from_stack(stack).to_json()
    props = template["Resources"][stack.get_logical_id(function.function.node.default_child)]["Properties"]
    assert props["Runtime"] == "python3.14" and props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    (layer,) = [name for name, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::LayerVersion"]
    ours = [r["Properties"] for r in template["Resources"].values()
            if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"].startswith("lambdas.")]
    assert len(ours) == 2 and all(p["Layers"] == [{"Ref": layer}] for p in ours)
    (runtime_policy,) = [r for name, r in template["Resources"].items() if name.startswith("FnRuntimePolicy")]
    actions = runtime_policy["Properties"]["PolicyDocument"]["Statement"][0]["Action"]
    assert "ec2:CreateNetworkInterface" in actions and "xray:PutTraceSegments" in actions


def _any_function() -> str:
    functions = sorted(p.parent.name for p in (REPO_ROOT / "lambdas").glob("*/handler.py"))
    if not functions:
        pytest.skip("no function under lambdas/ yet")
    return functions[0]


def test_acknowledging_a_whole_stack_is_refused():
    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(ValueError, match="not on a whole stack"):
        nag.acknowledge(stack, "AwsSolutions-S1", "a concrete reason that is long enough to pass the bar")


def test_checkov_skips_are_per_resource_with_reasons(template_json):
    skips = [(key, name, skip) for key, template in template_json.items()
             for name, resource in template["Resources"].items()
             for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])]
    assert skips, "expected the documented checkov skips"
    for key, name, skip in skips:
        assert skip["id"].startswith("CKV") and len(skip["comment"]) >= nag.MIN_REASON_LENGTH, (key, name, skip)


@pytest.mark.parametrize(("check_id", "reason"), [("CKV_AWS_*", "x" * 50), ("CKV_AWS_111", "false positive")])
def test_checkov_skip_refuses_wildcards_and_vague_reasons(check_id, reason):
    resource = cdk.CfnResource(cdk.Stack(cdk.App(), "S"), "R", type="AWS::SQS::Queue")
    with pytest.raises(ValueError):
        nag.skip_checkov(resource, check_id, reason)


def test_checkov_skips_accumulate_in_resource_metadata():
    resource = cdk.CfnResource(cdk.Stack(cdk.App(), "S"), "R", type="AWS::SQS::Queue")
    nag.skip_checkov(resource, "CKV_AWS_27", "a concrete reason that is long enough to pass the bar")
    nag.skip_checkov(resource, "CKV_AWS_115", "another concrete reason that is long enough to pass")
    assert [s["id"] for s in resource.cfn_options.metadata["checkov"]["skip"]] == ["CKV_AWS_27", "CKV_AWS_115"]


def test_synth_summary_lists_every_stack_with_its_resource_count(synthesized, template_json):
    rows = stack_summaries(synthesized.outdir)
    assert {(row.environment, row.stack.split("-", 2)[2]): row.resources for row in rows} == {
        key: len(template["Resources"]) for key, template in template_json.items()}
    assert failed_gates(synthesized.outdir) == []
    assert all(ack.reason and ack.construct for ack in acknowledgments(synthesized.outdir))


@pytest.mark.parametrize(("choice", "expected"), [("all", ["dev", "prod"]), ("dev", ["dev"]), ("prod", ["prod"])])
def test_env_context_selects_environments(choice, expected):
    assert selected_environments(choice) == expected


def test_unknown_env_context_is_refused():
    with pytest.raises(SystemExit, match="choose one of dev, prod, all"):
        selected_environments("staging")


def test_code_bundle_holds_the_function_and_the_library_but_no_tests(tmp_path):
    """What each function ships (its dependencies come from the layer), without running pip."""
    name = _any_function()
    pf._CodeBundler(pf.LAMBDAS_DIR / name).try_bundle(str(tmp_path), None)  # type: ignore[arg-type]
    assert (tmp_path / "lambdas" / name / "handler.py").is_file()
    assert (tmp_path / "lambdas" / "__init__.py").is_file()
    assert (tmp_path / "tenant_provisioner" / "tiers.yaml").read_bytes() == pf.TIERS_FILE.read_bytes()
    assert not list(tmp_path.rglob("__pycache__")) and not list(tmp_path.rglob("tests"))
    assert not (tmp_path / "psycopg").exists()


def test_layer_bundle_reuses_the_installed_dependencies_under_python(tmp_path, monkeypatch):
    monkeypatch.setattr(pf, "DEPENDENCY_CACHE", tmp_path / "cache")
    installed = tmp_path / "cache" / pf.dependencies_hash()[:20] / "redis"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    out = tmp_path / "layer"
    pf._LayerBundler().try_bundle(str(out), None)  # type: ignore[arg-type]  # no pip: the cache is there
    assert (out / "python" / "redis" / "__init__.py").is_file()


def test_layer_ships_no_bytecode_of_the_host_interpreter(tmp_path, monkeypatch):
    """pip --target compiles .pyc for the host (cpython-311): Python 3.14 never loads them."""
    monkeypatch.setattr(pf, "DEPENDENCY_CACHE", tmp_path / "cache")
    installed = tmp_path / "cache" / pf.dependencies_hash()[:20] / "stripe"
    (installed / "__pycache__").mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    (installed / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0" * 16)
    out = tmp_path / "layer"
    pf._LayerBundler().try_bundle(str(out), None)  # type: ignore[arg-type]
    assert (out / "python" / "stripe" / "__init__.py").is_file()
    assert not list(out.rglob("*.pyc")) and not list(out.rglob("__pycache__"))


def test_dependencies_are_installed_without_compiling_bytecode(tmp_path, monkeypatch):
    monkeypatch.setattr(pf, "DEPENDENCY_CACHE", tmp_path / "cache")
    commands = []
    monkeypatch.setattr(pf.subprocess, "run", lambda cmd, check: commands.append(cmd))
    pf.installed_dependencies()
    (pip,) = commands
    assert "--no-compile" in pip and pip[pip.index("--python-version") + 1] == pf.PYTHON_VERSION
