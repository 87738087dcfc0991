"""The limits stack: enforcer schedule, budget at 90/100/200 % + forecast, encrypted topics, least privilege."""

from __future__ import annotations

import json

import pytest
from aws_cdk import assertions

from stacks.config import load_config

ENVS = ("dev", "prod")
M = assertions.Match


def _resources(template_json, env, kind):
    return [r for r in template_json[(env, "limits")]["Resources"].values() if r["Type"] == kind]


@pytest.mark.parametrize("env", ENVS)
def test_enforcer_runs_every_five_minutes_with_retries_and_a_dlq(templates, env):
    template = templates[(env, "limits")]
    template.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": f"rate({load_config(env).limits.enforce_every_minutes} minutes)",
        "State": "ENABLED",
        "Targets": [M.object_like({"RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
                                   "DeadLetterConfig": {"Arn": M.any_value()}})],
    })
    template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": "lambdas.enforce_limits.handler.handler", "Architectures": ["arm64"],
        "ReservedConcurrentExecutions": 2, "DeadLetterConfig": {"TargetArn": M.any_value()},
        "VpcConfig": M.object_like({"SubnetIds": M.any_value()}),
        "Environment": {"Variables": M.object_like({
            "REDIS_HOST": M.any_value(), "REDIS_AUTH_SECRET_ARN": M.any_value(), "DATABASE_SECRET_ARN": M.any_value(),
            "LIMITS_SENDER_EMAIL": load_config(env).limits.notification_sender, "OPS_TOPIC_ARN": M.any_value(),
            # the session reaper's thresholds come from config
            "REAPER_IDLE_IN_TRANSACTION_S": str(load_config(env).limits.reaper_idle_in_transaction_seconds),
            "REAPER_MAX_LOCKS": str(load_config(env).limits.reaper_max_locks),
            # a tenant's sessions are never reaped below one per service pod at full scale-out
            "REAPER_FLEET_SESSIONS": str(load_config(env).workloads.api.max_replicas
                                         + load_config(env).workloads.worker.max_replicas)})},
    })


@pytest.mark.parametrize("env", ENVS)
def test_budget_notifies_at_90_100_200_actual_and_100_forecast(template_json, env):
    (budget,) = _resources(template_json, env, "AWS::Budgets::Budget")
    props = budget["Properties"]
    assert props["Budget"]["BudgetLimit"] == {"Amount": load_config(env).limits.monthly_budget_usd, "Unit": "USD"}
    assert props["Budget"]["TimeUnit"] == "MONTHLY" and props["Budget"]["BudgetType"] == "COST"
    got = sorted((n["Notification"]["NotificationType"], n["Notification"]["Threshold"])
                 for n in props["NotificationsWithSubscribers"])
    assert got == [("ACTUAL", 90), ("ACTUAL", 100), ("ACTUAL", 200), ("FORECASTED", 100)]
    for n in props["NotificationsWithSubscribers"]:
        kinds = [s["SubscriptionType"] for s in n["Subscribers"]]
        assert kinds.count("SNS") == 1 and kinds.count("EMAIL") == len(load_config(env).limits.ops_emails)


@pytest.mark.parametrize("env", ENVS)
def test_budget_topic_is_encrypted_and_open_to_budgets_only(templates, template_json, env):
    template = templates[(env, "limits")]
    for topic in _resources(template_json, env, "AWS::SNS::Topic"):
        assert "KmsMasterKeyId" in topic["Properties"]
    template.has_resource_properties("AWS::SNS::TopicPolicy", {"PolicyDocument": {"Statement": M.array_with([
        M.object_like({"Principal": {"Service": "budgets.amazonaws.com"}, "Action": "sns:Publish",
                       "Condition": {"StringEquals": {"aws:SourceAccount": M.any_value()}}})])}})
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True, "KeyPolicy": {
        "Statement": M.array_with([M.object_like({"Principal": {"Service": "budgets.amazonaws.com"}})])}})
    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "lambda",
                                                                "RedrivePolicy": M.any_value()})
    ops = len(load_config(env).limits.ops_emails)
    assert sum(s["Properties"]["Protocol"] == "email" for s in _resources(template_json, env, "AWS::SNS::Subscription")) == ops


@pytest.mark.parametrize("env", ENVS)
def test_budget_breaker_can_read_only_its_budget(template_json, env):
    statements = [s for p in _resources(template_json, env, "AWS::IAM::Policy")
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    (view,) = [s for s in statements if s["Action"] == "budgets:ViewBudget"]
    assert f"budget/saas-{env}-platform" in str(view["Resource"])
    # the only '*' is the VPC network-interface statement every VPC Lambda needs (PythonFunction's)
    wildcard = [s for s in statements if s.get("Resource") == "*"]
    assert all("ec2:CreateNetworkInterface" in s["Action"] for s in wildcard)


@pytest.mark.parametrize("env", ENVS)
def test_no_secret_value_in_the_template(template_json, env):
    text = str(template_json[(env, "limits")])
    assert "SecretString" not in text and "password" not in text.lower()


@pytest.mark.parametrize("env", ENVS)
def test_degraded_limiter_enforcer_errors_and_dead_letters_page_through_observability(template_json, env):
    assert not _resources(template_json, env, "AWS::CloudWatch::Alarm")  # no second set of alarms here
    observed = [a["Properties"] for a in template_json[(env, "observability")]["Resources"].values()
                if a["Type"] == "AWS::CloudWatch::Alarm"]
    text = json.dumps(observed)
    assert "RateLimiterDegraded" in text
    assert any(a.get("MetricName") == "Errors" and "Enforcer" in json.dumps(a.get("Dimensions")) for a in observed)
    assert any(a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
               and "saas-%s-limits" % env in json.dumps(a.get("Dimensions")) for a in observed)


@pytest.mark.parametrize("env", ENVS)
def test_enforcer_may_read_the_stripe_key_for_billings_reporters(templates, env):
    templates[(env, "limits")].has_resource_properties("AWS::Lambda::Function", {
        "Handler": "lambdas.enforce_limits.handler.handler",
        "Environment": {"Variables": M.object_like({"STRIPE_API_KEY_SECRET_ID": M.any_value()})}})
