"""Security stack: one rotating customer-managed key per kind of data; Logs may use the logs key."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

ENVS = ("dev", "prod")


@pytest.mark.parametrize("env", ENVS)
def test_five_customer_managed_keys_all_rotating_and_retained(templates, template_json, env):
    template = templates[(env, "security")]
    template.resource_count_is("AWS::KMS::Key", 5)
    keys = template.find_resources("AWS::KMS::Key", {"Properties": {"EnableKeyRotation": True}})
    assert len(keys) == 5
    assert all(key["DeletionPolicy"] == "Retain" for key in keys.values())
    aliases = {r["Properties"]["AliasName"] for r in template_json[(env, "security")]["Resources"].values()
               if r["Type"] == "AWS::KMS::Alias"}
    assert aliases == {f"alias/saas-{env}-{kind}" for kind in ("data", "secrets", "eks", "logs", "images")}


@pytest.mark.parametrize("env", ENVS)
def test_cloudwatch_logs_may_use_the_logs_key_only_for_this_accounts_log_groups(templates, env):
    templates[(env, "security")].has_resource_properties("AWS::KMS::Key", {
        "KeyPolicy": {"Statement": Match.array_with([Match.object_like({
            "Sid": "AllowCloudWatchLogsOfThisAccount",
            "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
            "Condition": {"ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:us-east-1:111111111111:log-group:*"}},
        })])},
        "Description": Match.string_like_regexp("CloudWatch Logs"),
    })
