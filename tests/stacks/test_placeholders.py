"""Configuration that cannot ship placeholders; dev and prod in one account; the concurrency quota."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import aws_cdk as cdk
import pytest

from app import PROJECT_DIR, build_app, project_context
from stacks.config import ENVIRONMENTS, PLACEHOLDER_ACCOUNT, EnvConfig, load_config
from stacks.placeholders import PlaceholderConfigError, check_deployable, example_values
from tools.synth_summary import concurrency_quota_lines, reserved_concurrency

REAL_ACCOUNT = "123456789012"
ADMIN = f"arn:aws:iam::{REAL_ACCOUNT}:role/platform-admins"


def _real(config: EnvConfig) -> EnvConfig:
    """``config`` with every example replaced by a plausible real value."""
    return dataclasses.replace(
        config,
        limits=dataclasses.replace(config.limits, ops_emails=("ops@acme.io",), notification_sender="limits@acme.io"),
        cost_report=dataclasses.replace(config.cost_report, recipients=("ceo@acme.io",), sender="reports@acme.io"),
        observability=dataclasses.replace(config.observability, alarm_emails=("ops@acme.io",)),
        cicd=dataclasses.replace(config.cicd, github_repository="acme/saas-platform"),
        cluster=dataclasses.replace(config.cluster, admin_role_arns=(ADMIN,)),
        workloads=dataclasses.replace(config.workloads, api_domain=f"api.{config.name}.acme.io",
                                      certificate_arn=f"arn:aws:acm:us-east-1:{REAL_ACCOUNT}:certificate/abc"),
    )


def _real_account_app(env: str) -> cdk.App:
    context = {**project_context(), "aws:cdk:bundling-stacks": [], "account": REAL_ACCOUNT,
               "region": "us-east-1", "env": env}
    return build_app(cdk.App(context=context))


@pytest.mark.parametrize("env", ["prod", "all"])
def test_synth_for_a_real_account_lists_every_example_value_in_one_error(env):
    with pytest.raises(PlaceholderConfigError) as raised:
        _real_account_app(env)
    message = str(raised.value)
    for name in ENVIRONMENTS:
        for path in ("limits.ops_emails", "limits.notification_sender", "cost_report.recipients",
                     "cost_report.sender", "observability.alarm_emails", "cicd.github_repository",
                     "cluster.admin_role_arns", "workloads.api_domain", "workloads.certificate_arn"):
            assert f"{name}: {path} " in message
    assert "docs/configuration.md" in message


def test_offline_placeholder_synth_is_not_refused(template_json):
    assert ("prod", "cluster") in template_json   # the session fixture synthesized for PLACEHOLDER_ACCOUNT


def test_a_fully_configured_environment_passes():
    configs = [_real(load_config(name, account=REAL_ACCOUNT)) for name in ENVIRONMENTS]
    assert [item for config in configs for item in example_values(config)] == []
    check_deployable(configs)


@pytest.mark.parametrize("value", ["https://app.example.com", "api.example.org",
                                   f"arn:aws:acm:us-east-1:{PLACEHOLDER_ACCOUNT}:certificate/abc"])
def test_values_added_later_are_caught_when_their_example_is_reserved(value):
    """A domain or certificate added to the config is caught without touching the check."""
    config = _real(load_config("prod", account=REAL_ACCOUNT))
    config = dataclasses.replace(config, tags=(*config.tags, ("domain", value)))
    (found,) = example_values(config)
    assert found.path == "tags" and value in found.problem


def test_real_values_that_merely_contain_example_are_accepted():
    config = _real(load_config("prod", account=REAL_ACCOUNT))
    config = dataclasses.replace(config, cicd=dataclasses.replace(config.cicd, github_repository="acme/example-app"),
                                 cost_report=dataclasses.replace(config.cost_report, sender="reports@counterexample.com"))
    assert example_values(config) == []


def test_every_value_the_check_can_name_is_documented_in_one_place():
    documented = (PROJECT_DIR / "docs" / "configuration.md").read_text()
    config = load_config("prod")
    for item in example_values(config):
        assert f"`{item.path}`" in documented, f"{item.path} is not described in docs/configuration.md"


# ---- dev and prod in one account ---------------------------------------------------------------
# Properties that fix a resource's physical name: two stacks naming the same one cannot share an account.
PHYSICAL_NAMES = ("RoleName", "LogGroupName", "FunctionName", "TableName", "QueueName", "TopicName",
                  "AliasName", "ClusterName", "BucketName", "ScheduleName", "BudgetName", "EmailIdentity",
                  "Url", "RepositoryName", "ManagedPolicyName", "InstanceProfileName")


def _named(template: dict) -> list[tuple[str, str]]:
    found = []
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        for key in PHYSICAL_NAMES:
            if isinstance(properties.get(key), str):
                found.append((resource["Type"], properties[key]))
        if resource["Type"] == "AWS::SSM::Parameter" and isinstance(properties.get("Name"), str):
            found.append((resource["Type"], properties["Name"]))
        if resource["Type"] == "AWS::Budgets::Budget":
            found.append((resource["Type"], str(properties["Budget"].get("BudgetName"))))
    return found


def test_dev_and_prod_fit_in_one_account_without_name_clashes(template_json):
    counts = Counter(name for template in template_json.values() for name in _named(template))
    assert {name: n for name, n in counts.items() if n > 1} == {}


def test_account_singletons_live_once_in_the_shared_account_stack(template_json):
    for key, template in template_json.items():
        types = [r["Type"] for r in template["Resources"].values()]
        if key == ("shared", "account"):
            assert types.count("AWS::IAM::OIDCProvider") == 1
            identities = sorted(r["Properties"]["EmailIdentity"] for r in template["Resources"].values()
                                if r["Type"] == "AWS::SES::EmailIdentity")
            senders = {address for name in ENVIRONMENTS for address in
                       (load_config(name).cost_report.sender, load_config(name).limits.notification_sender)}
            assert identities == sorted(senders)
        else:
            assert "AWS::IAM::OIDCProvider" not in types and "AWS::SES::EmailIdentity" not in types, key


def test_environment_stacks_deploy_after_the_shared_account_stack(synthesized):
    import json
    manifest = json.loads((synthesized.outdir / "manifest.json").read_text())["artifacts"]
    for env in ENVIRONMENTS:
        for component in ("cicd", "limits", "cost-report"):
            assert "saas-shared-account" in manifest[f"saas-{env}-{component}"]["dependencies"]


# ---- Lambda concurrency quota ------------------------------------------------------------------
def test_synth_prints_the_concurrency_quota_each_layout_needs(synthesized, template_json):
    reserved = reserved_concurrency(synthesized.outdir)
    expected = {env: sum(r["Properties"].get("ReservedConcurrentExecutions", 0)
                         for (e, _), template in template_json.items() if e == env
                         for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
                for env in ENVIRONMENTS}
    assert reserved == expected and all(expected.values())
    text = "\n".join(concurrency_quota_lines(reserved))
    assert f">= {reserved['prod'] + 100}" in text
    assert re.search(rf"all environments in one account: >= {sum(reserved.values()) + 100}\b", text)


def _paths(value: object, path: str = "") -> list[str]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [p for item in dataclasses.fields(value)
                for p in _paths(getattr(value, item.name), f"{path}.{item.name}" if path else item.name)]
    return [path]


def test_every_configuration_value_is_described_in_docs_configuration():
    documented = (PROJECT_DIR / "docs" / "configuration.md").read_text()
    missing = [path for path in _paths(load_config("prod")) if f"`{path}`" not in documented]
    assert missing == [], f"describe these values in docs/configuration.md: {missing}"
