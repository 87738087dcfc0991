"""The WAF backstop: a rate rule per tier from the tiers file, the anonymous IP rule, managed rules."""

from __future__ import annotations

import math

import pytest

from stacks.config import load_config
from stacks.edge_stack import MANAGED_RULE_GROUPS
from tenant_provisioner.tiers import load_tiers

ENVS = ("dev", "prod")


def _acl(template_json, env):
    (acl,) = [r for r in template_json[(env, "edge")]["Resources"].values() if r["Type"] == "AWS::WAFv2::WebACL"]
    return acl["Properties"]


@pytest.mark.parametrize("env", ENVS)
def test_one_rate_rule_per_tier_keyed_on_the_api_key_at_three_times_the_rate(template_json, env):
    limits = load_config(env).limits
    rules = {r["Name"]: r for r in _acl(template_json, env)["Rules"]}
    for tier in load_tiers().tiers.values():
        rate = rules[f"rate-{tier.name}"]["Statement"]["RateBasedStatement"]
        assert rate["Limit"] == math.ceil(tier.rate_per_second * 3 * limits.waf_window_seconds)
        assert rate["EvaluationWindowSec"] == limits.waf_window_seconds
        assert rate["AggregateKeyType"] == "CUSTOM_KEYS"
        assert rate["CustomKeys"][0]["Header"]["Name"] == limits.api_key_header
        scope = rate["ScopeDownStatement"]["ByteMatchStatement"]
        assert scope["SearchString"] == f"bearer {tier.name}_" and scope["PositionalConstraint"] == "STARTS_WITH"
        assert scope["TextTransformations"] == [{"Priority": 0, "Type": "LOWERCASE"}]
        assert rules[f"rate-{tier.name}"]["Action"] == {"Block": {}}


@pytest.mark.parametrize("env", ENVS)
def test_requests_without_the_header_are_limited_per_ip(template_json, env):
    rules = {r["Name"]: r for r in _acl(template_json, env)["Rules"]}
    rate = rules["rate-ip-without-api-key"]["Statement"]["RateBasedStatement"]
    assert rate["AggregateKeyType"] == "IP"
    size = rate["ScopeDownStatement"]["NotStatement"]["Statement"]["SizeConstraintStatement"]
    assert size["FieldToMatch"] == {"SingleHeader": {"Name": load_config(env).limits.api_key_header}}


@pytest.mark.parametrize("env", ENVS)
def test_managed_rules_logging_and_published_arn(templates, template_json, env):
    acl = _acl(template_json, env)
    assert acl["Scope"] == "REGIONAL" and acl["DefaultAction"] == {"Allow": {}}
    managed = [r["Statement"]["ManagedRuleGroupStatement"]["Name"] for r in acl["Rules"]
               if "ManagedRuleGroupStatement" in r["Statement"]]
    assert managed == list(MANAGED_RULE_GROUPS)
    assert len({r["Priority"] for r in acl["Rules"]}) == len(acl["Rules"])
    templates[(env, "edge")].has_resource_properties("AWS::WAFv2::LoggingConfiguration", {
        "RedactedFields": [{"SingleHeader": {"Name": load_config(env).limits.api_key_header}}]})
    templates[(env, "edge")].has_resource_properties("AWS::SSM::Parameter", {
        "Name": f"/saas/{env}/platform/web-acl-arn"})
