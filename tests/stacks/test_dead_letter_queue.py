"""The shared dead-letter queue construct: CMK-encrypted, TLS-only, 14 days, senders allowed to use the key."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Match, Template

from stacks.constructs.dead_letter_queue import DeadLetterQueue

ENVS = ("dev", "prod")
KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"]


def _stack() -> cdk.Stack:
    return cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="111111111111", region="eu-west-1"))


def test_queue_is_encrypted_with_its_own_rotating_key_tls_only_and_keeps_14_days():
    stack = _stack()
    queue = DeadLetterQueue(stack, "DeadLetters", purpose="test")
    role = iam.Role(stack, "Sender", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    queue.grant_encrypted_send(role)
    queue.allow_delivery_from("events.amazonaws.com")
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::SQS::Queue", {
        "KmsMasterKeyId": {"Fn::GetAtt": [Match.string_like_regexp("^DeadLettersKey"), "Arn"]},
        "MessageRetentionPeriod": 14 * 24 * 3600})
    template.has_resource_properties("AWS::SQS::QueuePolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True, "KeyPolicy": {
        "Statement": Match.array_with([Match.object_like({
            "Principal": {"Service": "events.amazonaws.com"}, "Action": KEY_ACTIONS,
            "Condition": {"StringEquals": {"aws:SourceAccount": "111111111111"}}})])}})
    template.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": [{
        "Action": KEY_ACTIONS, "Effect": "Allow", "Resource": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
        "Condition": {"StringEquals": {"kms:ViaService": "sqs.eu-west-1.amazonaws.com"}}}]}})


def test_a_key_of_another_stack_cannot_admit_a_service():
    stack = _stack()
    key = kms.Key.from_key_arn(stack, "Foreign", "arn:aws:kms:eu-west-1:111111111111:key/0000")
    queue = DeadLetterQueue(stack, "DeadLetters", purpose="test", encryption_key=key)
    with pytest.raises(ValueError, match="cannot be edited from this stack"):
        queue.allow_delivery_from("events.amazonaws.com")


@pytest.mark.parametrize("env", ENVS)
def test_limits_dead_letter_key_admits_the_schedule_and_the_budget_subscription(templates, env):
    templates[(env, "limits")].has_resource_properties("AWS::KMS::Key", {"KeyPolicy": {
        "Statement": Match.array_with([Match.object_like({
            "Principal": {"Service": ["events.amazonaws.com", "sns.amazonaws.com"]}, "Action": KEY_ACTIONS})])}})


@pytest.mark.parametrize(("env", "component"), [(e, c) for e in ENVS for c in ("limits", "cost-report", "tenants")])
def test_every_role_that_may_send_to_the_dead_letter_queue_may_encrypt_for_it(template_json, env, component):
    resources = template_json[(env, component)]["Resources"]
    (queue_id,) = [i for i, r in resources.items() if r["Type"] == "AWS::SQS::Queue"]
    key_id = resources[queue_id]["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    for policy in (r for r in resources.values() if r["Type"] == "AWS::IAM::Policy"):
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        sends = any(s["Action"] == "sqs:SendMessage" and s["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}
                    for s in statements)
        encrypts = any(s["Action"] == KEY_ACTIONS and s["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}
                       for s in statements)
        assert sends <= encrypts, policy["Properties"]["PolicyName"]


@pytest.mark.parametrize("env", ENVS)
def test_tenants_dead_letter_key_admits_the_signup_and_schedule_rules(templates, env):
    templates[(env, "tenants")].has_resource_properties("AWS::KMS::Key", {"KeyPolicy": {
        "Statement": Match.array_with([Match.object_like({
            "Principal": {"Service": "events.amazonaws.com"}, "Action": KEY_ACTIONS})])}})
