"""DR stack: the monthly restore drill (Scheduler → Step Functions → Lambda), confined IAM, alarms."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Match, Template

from stacks.config import BackupReplicationConfig, load_config
from stacks.constructs.database import PostgresDatabase

ENVS = ("dev", "prod")


def _resources(template_json, env, kind, component="dr"):
    return {name: r for name, r in template_json[(env, component)]["Resources"].items() if r["Type"] == kind}


@pytest.mark.parametrize("env", ENVS)
def test_a_monthly_schedule_starts_the_state_machine(templates, template_json, env):
    templates[(env, "dr")].has_resource_properties("AWS::Scheduler::Schedule", {
        "ScheduleExpression": "cron(0 6 ? * TUE#1 *)", "ScheduleExpressionTimezone": "Etc/UTC",
        "Target": Match.object_like({"Arn": {"Ref": Match.string_like_regexp("RestoreDrillStateMachine")}})})
    (machine,) = _resources(template_json, env, "AWS::StepFunctions::StateMachine").values()
    assert machine["Properties"]["StateMachineName"] == f"saas-{env}-restore-drill"
    assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}


@pytest.mark.parametrize("env", ENVS)
def test_every_path_after_the_capture_deletes_the_temporary_instance_then_reports(template_json, env):
    (machine,) = _resources(template_json, env, "AWS::StepFunctions::StateMachine").values()
    body = machine["Properties"]["DefinitionString"]
    text = "".join(part if isinstance(part, str) else "<ref>" for part in body["Fn::Join"][1])
    states = json.loads(text)["States"]
    assert states["Begin"]["Next"] == "Capture"
    for name in ("Restorable", "StartRestore", "Status", "Verify"):
        assert [c["Next"] for c in states[name]["Catch"]] == ["CleanupAfterFailure"], name
    assert states["Capture"]["Catch"][0]["Next"] == "ReportFailure"
    assert states["CleanupAfterFailure"]["Next"] == "ReportFailure" == states["CleanupAfterFailure"]["Catch"][0]["Next"]
    assert states["ReportFailure"]["Next"] == "DrillFailed" and states["DrillFailed"]["Type"] == "Fail"
    assert states["Verify"]["Next"] == "Cleanup" and states["Cleanup"]["Next"] == "Report"
    # A restore that breaks stops the waiting and cleans up.
    broken = {c["StringEquals"] for c in states["IsAvailable"]["Choices"][1]["Or"]}
    assert {"failed", "incompatible-restore", "storage-full"} <= broken
    assert states["RestoreBroke"]["Next"] == "CleanupAfterFailure"


@pytest.mark.parametrize("env", ENVS)
def test_the_drill_function_modifies_and_deletes_only_drill_instances(template_json, env):
    policies = [p for p in _resources(template_json, env, "AWS::IAM::Policy").values()
                if "DrillPermissions" in json.dumps(p["Properties"]["PolicyName"])]
    (policy,) = policies
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    destructive = next(s for s in statements if "rds:DeleteDBInstance" in s["Action"])
    assert destructive["Resource"] == f"arn:aws:rds:us-east-1:111111111111:db:saas-{env}-postgres-drill-*"
    source_actions = {a for s in statements if f"db:saas-{env}-postgres\"" in json.dumps(s["Resource"])
                      for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert source_actions == {"rds:DescribeDBInstances", "rds:RestoreDBInstanceToPointInTime"}
    metrics = next(s for s in statements if s["Action"] == "cloudwatch:PutMetricData")
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "SaaS/DR"}}


@pytest.mark.parametrize("env", ENVS)
def test_the_function_runs_in_the_control_plane_network_with_its_settings(templates, env):
    templates[(env, "dr")].has_resource_properties("AWS::Lambda::Function", {
        "Handler": "lambdas.restore_drill.handler.handler", "Timeout": 900,
        "VpcConfig": Match.object_like({"SecurityGroupIds": Match.any_value()}),
        "Environment": {"Variables": Match.object_like({
            "DRILL_SOURCE_INSTANCE": f"saas-{env}-postgres", "DATABASE_NAME": "app",
            "TENANT_PROVISIONER_ROLE": "tenant_provisioner"})}})


@pytest.mark.parametrize("env", ENVS)
def test_alarms_on_outcome_rto_and_rpo_against_the_configured_targets(template_json, env):
    alarms = {a["Properties"]["AlarmName"]: a["Properties"]
              for a in _resources(template_json, env, "AWS::CloudWatch::Alarm", "observability").values()}
    dr = load_config(env).dr
    assert alarms[f"saas-{env}-restore-drill-rto"]["Threshold"] == dr.rto_target_minutes * 60
    assert alarms[f"saas-{env}-restore-drill-rpo"]["Threshold"] == dr.rpo_target_minutes * 60
    failed = alarms[f"saas-{env}-restore-drill-failed"]
    assert (failed["MetricName"], failed["Namespace"], failed["ComparisonOperator"]) == (
        "RestoreDrillVerified", "SaaS/DR", "LessThanThreshold")
    assert f"saas-{env}-restore-drill-execution-failed" in alarms


def _database(replication: BackupReplicationConfig) -> Template:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = cdk.Stack(app, "T", env=cdk.Environment(account="111111111111", region="us-east-1"))
    vpc = ec2.Vpc(stack, "Vpc", subnet_configuration=[ec2.SubnetConfiguration(
        name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    key = kms.Key(stack, "Key")
    config = load_config("prod").database
    from dataclasses import replace
    PostgresDatabase(stack, "Db", config=replace(config, backup_replication=replication), identifier="t-postgres",
                     database_name="app", master_secret_name="/t/master", vpc=vpc, data_key=key, secrets_key=key,
                     logs_key=key, log_retention_days=7)
    return Template.from_stack(stack)


def test_backup_replication_to_a_second_region_when_configured():
    template = _database(BackupReplicationConfig(
        region="us-west-2", kms_key_arn="arn:aws:kms:us-west-2:111111111111:key/abc", retention_days=14))
    template.has_resource_properties("AWS::RDS::DBInstance", {
        "AutomaticBackupReplicationRegion": "us-west-2", "AutomaticBackupReplicationRetentionPeriod": 14,
        "AutomaticBackupReplicationKmsKeyId": "arn:aws:kms:us-west-2:111111111111:key/abc"})


@pytest.mark.parametrize(("replication", "message"), [
    (BackupReplicationConfig(region="us-east-1", kms_key_arn="arn:aws:kms:us-east-1:111111111111:key/a"), "differ"),
    (BackupReplicationConfig(region="us-west-2", kms_key_arn="arn:aws:kms:us-east-1:111111111111:key/a"), "in us-west-2"),
    (BackupReplicationConfig(region="us-west-2", kms_key_arn="arn:aws:kms:us-west-2:111111111111:key/a",
                             retention_days=40), "1-35"),
])
def test_a_wrong_replication_config_fails_the_synth(replication, message):
    with pytest.raises(ValueError, match=message):
        _database(replication)
