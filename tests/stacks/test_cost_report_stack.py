"""The cost-report stack: schedule in the configured zone, least privilege, retries and one DLQ."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import assertions

from stacks.config import load_config

ENVS = ("dev", "prod")


def _resources(template_json, env, kind):
    return {k: v for k, v in template_json[(env, "cost-report")]["Resources"].items() if v["Type"] == kind}


@pytest.mark.parametrize("env", ENVS)
def test_schedule_runs_each_morning_in_the_configured_zone(templates, env):
    report = load_config(env).cost_report
    templates[(env, "cost-report")].has_resource_properties("AWS::Scheduler::Schedule", {
        "ScheduleExpression": f"cron({report.schedule_minute} {report.schedule_hour} * * ? *)",
        "ScheduleExpressionTimezone": report.timezone,
        "State": "ENABLED",
        "Target": {
            "Input": '{"scheduled_time":"<aws.scheduler.scheduled-time>"}',
            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 6 * 3600},
            "DeadLetterConfig": {"Arn": assertions.Match.any_value()},
        },
    })


@pytest.mark.parametrize("env", ENVS)
def test_function_gets_its_configuration_from_the_environment(templates, env):
    config = load_config(env)
    templates[(env, "cost-report")].has_resource_properties("AWS::Lambda::Function", {
        "Handler": "lambdas.cost_report.handler.handler",
        "Architectures": ["arm64"],
        "ReservedConcurrentExecutions": 1,
        "DeadLetterConfig": {"TargetArn": assertions.Match.any_value()},
        "VpcConfig": assertions.Match.object_like({"SubnetIds": assertions.Match.any_value()}),
        "Environment": {"Variables": assertions.Match.object_like({
            "REPORT_RECIPIENTS": ",".join(config.cost_report.recipients),
            "REPORT_SENDER": config.cost_report.sender,
            "MONTHLY_BUDGET_USD": str(config.limits.monthly_budget_usd),
            "REPORT_TIMEZONE": config.cost_report.timezone,
            "DATABASE_NAME": config.tenants.database_name,
            "COST_TAG_KEY": config.cost_report.tenant_tag_key,
            "IDEMPOTENCY_TABLE": assertions.Match.any_value(),
            "DATABASE_SECRET_ARN": assertions.Match.any_value(),
        })},
    })
    templates[(env, "cost-report")].has_resource_properties("AWS::Lambda::EventInvokeConfig", {
        "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 6 * 3600})
    templates[("shared", "account")].has_resource_properties("AWS::SES::EmailIdentity", {
        "EmailIdentity": config.cost_report.sender})
    templates[(env, "cost-report")].has_resource_properties("AWS::IAM::Policy", {
        "PolicyDocument": {"Statement": assertions.Match.array_with([assertions.Match.object_like({
            "Action": ["ses:SendEmail", "ses:SendRawEmail"],
            "Resource": f"arn:aws:ses:us-east-1:111111111111:identity/{config.cost_report.sender}"})])}})


@pytest.mark.parametrize("env", ENVS)
def test_no_secret_value_or_password_in_the_template(template_json, env):
    text = str(template_json[(env, "cost-report")])
    assert "password" not in text.lower() and "SecretString" not in text


@pytest.mark.parametrize("env", ENVS)
def test_only_cost_explorer_reads_use_a_wildcard_resource(template_json, env):
    statements = [s for policy in _resources(template_json, env, "AWS::IAM::Policy").values()
                  for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    wildcard = [s for s in statements if s["Resource"] == "*"]
    actions = sorted(a for s in wildcard for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    # Cost Explorer (no resource-level permissions) plus the function construct's tracing/VPC actions
    assert {"ce:GetCostAndUsage", "ce:GetCostForecast"} <= set(actions)
    assert all(a.startswith(("ce:Get", "xray:", "ec2:")) for a in actions), actions
    for statement in statements:
        for action in [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]:
            assert not action.endswith("*") or action.startswith("kms:GenerateDataKey"), action
        if any(str(a).startswith("kms:") for a in statement["Action"]):
            assert "kms:ViaService" in str(statement["Condition"])


@pytest.mark.parametrize("env", ENVS)
def test_idempotency_table_and_dead_letter_queue(templates, env):
    template = templates[(env, "cost-report")]
    template.has_resource_properties("AWS::DynamoDB::GlobalTable", {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
        "SSESpecification": assertions.Match.object_like({"SSEEnabled": True, "SSEType": "KMS"}),
    })
    template.has_resource_properties("AWS::SQS::Queue", {
        "KmsMasterKeyId": {"Fn::GetAtt": [assertions.Match.any_value(), "Arn"]},
        "MessageRetentionPeriod": 14 * 24 * 3600})
    template.resource_count_is("AWS::SQS::Queue", 1)


@pytest.mark.parametrize("env", ENVS)
def test_scheduler_role_is_trusted_only_from_this_account(templates, env):
    templates[(env, "cost-report")].has_resource_properties("AWS::IAM::Role", {
        "AssumeRolePolicyDocument": {"Statement": [assertions.Match.object_like({
            "Principal": {"Service": "scheduler.amazonaws.com"},
            "Condition": {"StringEquals": {"aws:SourceAccount": assertions.Match.any_value()}},
        })]},
    })


# The pre-deploy estimator (`make cost`) on the synthesized templates of both environments.

@pytest.fixture(scope="module")
def cost_estimate(template_json):
    from tools.cost_estimate import PriceBook, estimate
    return estimate(template_json, PriceBook.load())


def test_estimator_prices_every_resource_of_both_environments(cost_estimate):
    assert cost_estimate.unpriced == [], "add these types to config/prices.yaml + PRICERS, or to FREE_TYPES"
    assert cost_estimate.environments == ["dev", "prod"]


@pytest.mark.parametrize("env", ENVS)
def test_estimate_follows_the_environment_config(cost_estimate, env):
    from tools.cost_estimate import EKS, NAT, RDS
    config = load_config(env)
    nat_gateways = [line for line in cost_estimate.lines
                    if line.env == env and line.kind == NAT and line.detail.endswith("NAT gateway")]
    assert len(nat_gateways) == config.network.nat_gateways
    rds = [line.detail for line in cost_estimate.lines if line.env == env and line.kind == RDS]
    assert any(f"db.{config.database.instance_type} {'Multi-AZ' if config.database.multi_az else 'Single-AZ'}"
               in detail for detail in rds)
    assert cost_estimate.total(env, EKS) == 73   # standard support, never the 6x extended rate


def test_launch_configuration_fits_the_approved_budget(cost_estimate):
    from tools.cost_estimate import APPROVED_BUDGET_USD, environment_budgets, over_budget
    assert over_budget(cost_estimate, environment_budgets(["dev", "prod"])) == []
    assert cost_estimate.total() <= APPROVED_BUDGET_USD[1]
    assert cost_estimate.total("prod") > cost_estimate.total("dev")


@pytest.mark.parametrize("change, message", [({"timezone": "Mars/Olympus"}, "not an IANA time zone"),
                                             ({"schedule_hour": 24}, "not a time of day")])
def test_a_bad_schedule_fails_the_synth(change, message):
    from dataclasses import replace

    from stacks.cost_report_stack import _check_schedule
    with pytest.raises(ValueError, match=message):
        _check_schedule(replace(load_config("dev").cost_report, **change))


def test_readme_and_cost_doc_quote_the_estimators_launch_cost(cost_estimate):
    """One source: README and docs/cost.md quote `make cost`'s figures (they had drifted: $1,450 vs $1,387.25)."""
    from tools.cost_estimate import launch_total, markdown

    root = Path(__file__).resolve().parents[2]
    assert launch_total(cost_estimate) in (root / "README.md").read_text(), (
        f"the README's launch cost must read {launch_total(cost_estimate)!r} (the estimator's total)")
    assert markdown(cost_estimate) in (root / "docs" / "cost.md").read_text(), (
        "docs/cost.md is stale: replace its launch-cost block with "
        "`python -m tools.cost_estimate cdk.out --markdown` after `make synth`")
