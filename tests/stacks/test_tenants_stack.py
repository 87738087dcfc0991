"""The tenants stack: provisioning Lambda in private subnets, least privilege, signup rule with a DLQ."""

from __future__ import annotations

import json

import pytest
from aws_cdk import assertions

from stacks.config import load_config

ENVS = ("dev", "prod")
Match = assertions.Match


def _resources(template_json, env, kind):
    return [r for r in template_json[(env, "tenants")]["Resources"].values() if r["Type"] == kind]


@pytest.mark.parametrize("env", ENVS)
def test_function_is_arm64_python_in_private_subnets_with_its_configuration(templates, template_json, env):
    config = load_config(env)
    templates[(env, "tenants")].has_resource_properties("AWS::Lambda::Function", {
        "Handler": "lambdas.provision_tenant.handler.handler",
        "Architectures": ["arm64"],
        "Runtime": Match.string_like_regexp(r"^python3\.1[3-9]$"),
        "Timeout": config.tenants.provisioner_timeout_seconds,
        "ReservedConcurrentExecutions": config.concurrency.provision_tenant,
        "DeadLetterConfig": {"TargetArn": Match.any_value()},
        "VpcConfig": {"SubnetIds": Match.any_value(), "SecurityGroupIds": [Match.any_value()]},
        "Environment": {"Variables": Match.object_like({
            "TENANT_PROVISIONER_ROLE": config.tenants.provisioner_role,
            "DATABASE_NAME": config.tenants.database_name,
            "DATABASE_SSLMODE": "require",
            "DATABASE_SECRET_ARN": Match.any_value(),
            "TENANT_DB_PASSWORD_KEY_SECRET_ARN": Match.any_value(),
        })},
    })
    provision = next(f for f in _resources(template_json, env, "AWS::Lambda::Function")
                     if f["Properties"]["Handler"] == "lambdas.provision_tenant.handler.handler")
    assert "TENANT_SECRETS_PREFIX" not in provision["Properties"]["Environment"]["Variables"]  # writes no secret


@pytest.mark.parametrize("env", ENVS)
def test_subnets_are_the_private_ones_and_the_group_is_the_control_planes(template_json, env):
    function = _resources(template_json, env, "AWS::Lambda::Function")[0]
    vpc = json.dumps(function["Properties"]["VpcConfig"]).lower()
    assert "privatesubnet" in vpc and "isolated" not in vpc and "publicsubnet" not in vpc
    assert "controlplanesecuritygroup" in vpc


@pytest.mark.parametrize("env", ENVS)
def test_no_tenant_secret_is_written_and_legacy_ones_only_deleted_under_the_prefix(template_json, env):
    prefix = f"{load_config(env).tenants.secrets_prefix}/tenants/*"
    statements = [s for p in _resources(template_json, env, "AWS::IAM::Policy")
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    writes = [s for s in statements
              if any(a in json.dumps(s["Action"]) for a in ("CreateSecret", "PutSecretValue", "DeleteSecret"))]
    assert len(writes) == 1  # operations (offboarding) deletes secrets earlier versions wrote; nothing creates one
    assert sorted(writes[0]["Action"]) == ["secretsmanager:DeleteSecret", "secretsmanager:DescribeSecret"]
    assert prefix in json.dumps(writes[0]["Resource"]) and json.dumps(writes[0]["Resource"]).count("*") == 1
    assert all("*" != s.get("Resource") for s in statements if s["Effect"] == "Allow"
               and not any(a.startswith(("ec2:", "xray:")) for a in (s["Action"] if isinstance(s["Action"], list)
                                                                     else [s["Action"]])))
    secrets_kms = [s for s in statements if "secretsmanager." in json.dumps(s.get("Condition"))]
    assert secrets_kms and all(s["Action"] == "kms:Decrypt" for s in secrets_kms)  # read only, never encrypt


@pytest.mark.parametrize("env", ENVS)
def test_the_billing_step_can_read_only_the_stripe_api_key(template_json, env):
    function = _resources(template_json, env, "AWS::Lambda::Function")[0]
    key_ref = function["Properties"]["Environment"]["Variables"]["STRIPE_API_KEY_SECRET_ID"]
    assert "ApiKey" in json.dumps(key_ref)  # imported from the billing stack, never a value
    statements = [s for p in _resources(template_json, env, "AWS::IAM::Policy")
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    reads = [s for s in statements if "secretsmanager:GetSecretValue" in json.dumps(s["Action"])
             and "ApiKey" in json.dumps(s["Resource"])]
    assert len(reads) == 1 and "WebhookSigningSecret" not in json.dumps(statements)


@pytest.mark.parametrize("env", ENVS)
def test_signup_rule_targets_the_function_with_retries_and_a_dead_letter_queue(templates, env):
    config = load_config(env)
    templates[(env, "tenants")].has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": [config.tenants.signup_event_source], "detail-type": ["tenant.signup"]},
        "State": "ENABLED",
        "Targets": [Match.object_like({
            "Arn": Match.any_value(),
            "DeadLetterConfig": {"Arn": Match.any_value()},
            "RetryPolicy": {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 7200},
        })],
    })
    templates[(env, "tenants")].has_resource_properties("AWS::Lambda::EventInvokeConfig", {
        "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 7200})
    templates[(env, "tenants")].has_resource_properties("AWS::SQS::Queue", {
        "KmsMasterKeyId": {"Fn::GetAtt": [Match.any_value(), "Arn"]}, "MessageRetentionPeriod": 14 * 24 * 3600})


@pytest.mark.parametrize("env", ENVS)
def test_a_schedule_refills_the_warm_pool(templates, env):
    tenants = load_config(env).tenants
    templates[(env, "tenants")].has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": f"rate({tenants.warm_pool_refill_minutes} minutes)",
        "Targets": [Match.object_like({
            "Arn": {"Fn::GetAtt": [Match.string_like_regexp("^TenantOperations"), "Arn"]},
            "Input": json.dumps({"action": "refill_warm_pool", "size": tenants.warm_pool_size}, separators=(",", ":"))})],
    })


@pytest.mark.parametrize("env", ENVS)
def test_a_daily_schedule_drops_offboardings_past_retention(templates, env):
    templates[(env, "tenants")].has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": "cron(30 3 * * ? *)",
        "Targets": [Match.object_like({"Input": '{"action":"drop_due_offboardings"}',
                                       "Arn": {"Fn::GetAtt": [Match.string_like_regexp("^TenantOperations"), "Arn"]},
                                       "DeadLetterConfig": {"Arn": Match.any_value()}})],
    })


@pytest.mark.parametrize("env", ENVS)
def test_function_arn_is_published_for_the_api(templates, env):
    templates[(env, "tenants")].has_resource_properties("AWS::SSM::Parameter", {
        "Name": f"/saas/{env}/platform/provision-function-arn"})


def test_invoker_roles_may_provision_and_only_operator_roles_may_run_operations():
    """Issue 10: the API's invoker role could run operator actions (refill, init, migrate,
    drop-due) by adding an `action` key to a signup-shaped event."""
    from dataclasses import replace

    import aws_cdk as cdk

    from app import project_context
    from stacks.platform import build_platform, build_shared_account

    base = load_config("dev")
    api, operator = "arn:aws:iam::111111111111:role/api", "arn:aws:iam::111111111111:role/operator"
    config = replace(base, tenants=replace(base.tenants, invoker_role_arns=(api,), operator_role_arns=(operator,)))
    app = cdk.App(context={**project_context(), "aws:cdk:bundling-stacks": []})
    build_platform(app, config, shared=build_shared_account(app, [config]))
    stack = next(c for c in app.node.children if getattr(c, "node", None) and c.node.id == config.stack_id("tenants"))
    permissions = {(json.dumps(p["Properties"]["FunctionName"]), p["Properties"]["Principal"])
                   for p in assertions.Template.from_stack(stack).find_resources("AWS::Lambda::Permission").values()
                   if p["Properties"]["Principal"] in (api, operator)}
    assert len(permissions) == 2
    assert {principal: "TenantOperations" in function for function, principal in permissions} == {
        api: False, operator: True}
