"""The billing stack: placeholder Stripe secrets, the webhook Function URL, least-privilege reads."""

from __future__ import annotations

import re

import pytest
from aws_cdk import assertions

from stacks.config import load_config

ENVS = ("dev", "prod")


def _resources(template_json, env, kind):
    return {k: v for k, v in template_json[(env, "billing")]["Resources"].items() if v["Type"] == kind}


@pytest.mark.parametrize("env", ENVS)
def test_stripe_secrets_are_generated_placeholders_encrypted_with_the_secrets_key(template_json, env):
    prefix = load_config(env).tenants.secrets_prefix
    secrets = _resources(template_json, env, "AWS::SecretsManager::Secret")
    names = sorted(s["Properties"]["Name"] for s in secrets.values())
    assert names == [f"{prefix}/platform/stripe/api-key", f"{prefix}/platform/stripe/webhook-signing-secret"]
    for secret in secrets.values():
        props = secret["Properties"]
        assert "SecretString" not in props and props["GenerateSecretString"]["ExcludePunctuation"] is True
        assert "KmsKeyId" in props and secret["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("env", ENVS)
def test_webhook_function_behind_an_unauthenticated_function_url(templates, env):
    config = load_config(env)
    template = templates[(env, "billing")]
    template.has_resource_properties("AWS::Lambda::Url", {"AuthType": "NONE"})
    template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": "lambdas.stripe_webhook.handler.handler",
        "Architectures": ["arm64"],
        "ReservedConcurrentExecutions": assertions.Match.any_value(),
        "VpcConfig": assertions.Match.object_like({"SubnetIds": assertions.Match.any_value()}),
        "Environment": {"Variables": assertions.Match.object_like({
            "STRIPE_WEBHOOK_SECRET_ID": assertions.Match.any_value(),
            "DATABASE_SECRET_ARN": assertions.Match.any_value(),
            "DATABASE_NAME": config.tenants.database_name,
            "BILLING_PAYMENT_GRACE_DAYS": str(config.billing.payment_grace_days),
            "BILLING_OFFBOARD_AFTER_DAYS": str(config.billing.offboard_after_days),
            "STRIPE_API_VERSION": config.billing.api_version,
        })},
    })
    template.has_output("WebhookUrl", {"Value": assertions.Match.any_value()})


@pytest.mark.parametrize("env", ENVS)
def test_webhook_reads_only_its_signing_secret_and_the_database_secret(template_json, env):
    statements = [s for policy in _resources(template_json, env, "AWS::IAM::Policy").values()
                  for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    reads = [s for s in statements if "secretsmanager:GetSecretValue" in s["Action"]]
    assert len(reads) == 1 and len(reads[0]["Resource"]) == 2
    api_key = next(k for k, v in _resources(template_json, env, "AWS::SecretsManager::Secret").items()
                   if v["Properties"]["Name"].endswith("/api-key"))
    assert api_key not in str(reads)  # the webhook never calls Stripe: no API key
    for statement in statements:
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        assert all(not a.endswith("*") for a in actions), actions
        if any(a.startswith("kms:") for a in actions):
            assert statement["Condition"]["StringEquals"]["kms:ViaService"]


@pytest.mark.parametrize("env", ENVS)
def test_no_secret_value_in_the_template(template_json, env):
    text = str(template_json[(env, "billing")])
    assert not re.search(r"\b(sk|rk)_(live|test)_[A-Za-z0-9]{6,}|\bwhsec_[A-Za-z0-9]{6,}", text)
    assert "'SecretString':" not in text  # GenerateSecretString only


@pytest.mark.parametrize("env", ENVS)
def test_checkov_skips_are_exactly_the_justified_ones(template_json, env):
    skips = sorted((r["Type"], s["id"]) for r in template_json[(env, "billing")]["Resources"].values()
                   for s in r.get("Metadata", {}).get("checkov", {}).get("skip", []))
    assert ("AWS::Lambda::Url", "CKV_AWS_258") in skips and ("AWS::Lambda::Function", "CKV_AWS_116") in skips
    assert skips.count(("AWS::SecretsManager::Secret", "CKV2_AWS_57")) == 2
