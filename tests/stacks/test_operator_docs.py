"""The operator docs (README checklist, runbooks, release.md, configuration.md) name only stacks,
stack outputs, SSM parameters and resource names the synthesized app has: a renamed stack, output
or parameter fails here. The commands, flags, make targets and config keys: tests/test_readme.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.test_readme import README, copy_of_the_docs, operator_docs, snippets

ENVS = ("dev", "prod")
# Names made at run time, not by a stack: an instance renamed during a real restore (restore-drill.md).
# Names with a run-time part (`saas-<env>-postgres-drill-<timestamp>`) are not matched by NAME.
RUN_TIME = re.compile(r"-damaged$")
NAME = re.compile(r"(?<![\w/-])(saas-(?:<env>|\$ENV|dev|prod|shared)-[a-z][a-z0-9-]*[a-z0-9]"
                  r"|/saas/(?:<env>|\$ENV|dev|prod)/platform/[a-z][\w/-]*[a-z0-9])(?![\w<$-])")
# "output `DeployRoleArn`", "output `ReleaseRoleArn` of `saas-prod-cicd`", "`EnforcerFunctionName` in the
# `saas-<env>-limits` stack outputs", "(`DeadLetterQueueUrl` output of `saas-<env>-tenants`)", "OutputKey=='WebhookUrl'"
OUTPUT = re.compile(r"outputs?\s+`?([A-Z][a-z]\w+)`?(?:\s+of\s+`(saas-[a-z<>-]+)`)?"
                    r"|`([A-Z]\w+)`\s+(?:output\s+of|in\s+the)\s+`(saas-[a-z<>-]+)`"
                    r"|OutputKey=='([A-Z]\w+)'()")


def _concrete(name: str) -> list[str]:
    for placeholder in ("<env>", "$ENV"):
        if placeholder in name:
            return [name.replace(placeholder, env) for env in ENVS]
    return [name]


def _stack_id(key: tuple[str, str]) -> str:
    return f"saas-{key[0]}-{key[1]}"


@pytest.fixture(scope="module")
def deployed_text(template_json) -> str:
    """Every stack id and every template, as text: where a documented name must appear."""
    return "\n".join([*map(_stack_id, template_json), *(json.dumps(t) for t in template_json.values())])


def missing_names(docs: list[Path], deployed_text: str, *, at_least: int = 20) -> list[str]:
    names = {(str(s), name) for s in snippets(docs) for name in NAME.findall(s.text)}
    assert len(names) > at_least
    return [f"{snippet}: {concrete} is in no synthesized stack" for snippet, name in sorted(names)
            if not RUN_TIME.search(name) for concrete in _concrete(name)
            if f'"{concrete}"' not in deployed_text and f"{concrete}\n" not in f"{deployed_text}\n"]


def missing_outputs(docs: list[Path], template_json: dict) -> list[str]:
    outputs = {_stack_id(key): set(template.get("Outputs", {})) for key, template in template_json.items()}
    named = [(doc, groups[i], groups[i + 1]) for doc in docs
             for groups in OUTPUT.findall(doc.read_text()) for i in (0, 2, 4) if groups[i]]
    assert len(named) >= 10
    missing = [f"{doc.name}: output {output} is in no stack" for doc, output, stack in named
               if not stack and not any(output in names for names in outputs.values())]
    return missing + [f"{doc.name}: {stack} has no output {output}" for doc, output, stack in named
                      if stack and not any(output in outputs.get(concrete, ()) for concrete in _concrete(stack))]


def test_every_stack_ssm_parameter_and_resource_name_in_the_operator_docs_exists(deployed_text):
    missing = missing_names(operator_docs(), deployed_text)
    assert not missing, "\n".join(missing)


def test_every_stack_output_in_the_operator_docs_exists(template_json):
    missing = missing_outputs(operator_docs(), template_json)
    assert not missing, "\n".join(missing)


def test_a_misspelled_stack_output_or_parameter_in_a_copy_of_the_docs_fails(tmp_path, template_json, deployed_text):
    docs = copy_of_the_docs(tmp_path, {
        "cluster-access.md": ("/saas/<env>/platform/tunnel-instance-id", "/saas/<env>/platform/tunnel-instance"),
        "tenant-limits.md": ("`EnforcerFunctionName`", "`EnforcerFunction`"),
        "README.md": ("output `ReleaseRoleArn` of\n   `saas-prod-cicd`", "output `ReleaseRoleArn` of\n   `saas-prod-cd`"),
    })
    assert any("saas/prod/platform/tunnel-instance is in no" in e for e in missing_names(docs, deployed_text))
    assert {e.split(": ", 1)[1] for e in missing_outputs(docs, template_json)} == {
        "saas-<env>-limits has no output EnforcerFunction", "saas-prod-cd has no output ReleaseRoleArn"}


def test_the_readmes_app_team_parameters_and_github_variable_outputs_exist(template_json):
    """The README lists SSM parameter keys under `/saas/<env>/platform/` and the `saas-<env>-cicd`
    outputs behind each GitHub variable, without the full name."""
    text = README.read_text()
    listed = re.search(r"SSM parameters under `/saas/<env>/platform/` \((.*?)\)", text, flags=re.S)
    assert listed, "the README's list of the app team's SSM parameters moved: update this test"
    keys = [k for k in re.findall(r"`([a-z][a-z-]+)`", listed.group(1))]
    parameters = {p["Properties"].get("Name") for t in template_json.values()
                  for p in t.get("Resources", {}).values() if p["Type"] == "AWS::SSM::Parameter"}
    missing = [key for key in keys for env in ENVS if f"/saas/{env}/platform/{key}" not in parameters]
    assert len(keys) >= 5 and not missing, f"README lists SSM parameters no stack creates: {missing}"
    table = re.search(r"Variables, from the `saas-<env>-cicd` stack outputs:\n\n(.*?)\n\n", text, flags=re.S)
    assert table, "the README's GitHub variables table moved: update this test"
    cicd = [set(template_json[(env, "cicd")].get("Outputs", {})) for env in ENVS]
    wanted = re.findall(r"output `(\w+)`", table.group(1))
    assert len(wanted) >= 4 and all(output in outputs for output in wanted for outputs in cicd), \
        f"outputs named in the GitHub variables table: {wanted}; saas-<env>-cicd has {sorted(cicd[0])}"
