"""The monthly RDS restore drill: EventBridge Scheduler → Step Functions → the ``restore_drill`` Lambda.

The state machine runs the steps of ``tenant_provisioner/drills/restore.py`` and does the waiting
(a restore takes from minutes to hours; no Lambda waits for it): capture → wait until the restore
point is restorable → restore into ``<source>-drill-<id>`` → wait until available → verify →
delete → report. Any failure after the capture still deletes the temporary instance and reports
Verified = 0 before the execution fails. The Lambda runs in the control-plane network, so it
reaches the source and the restored copy (same isolated subnets and security groups) alike.
Alarms on the published RTO/RPO/outcome live in the observability stack (topic and runbook).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.config import EnvConfig
from stacks.constructs.outputs import publish
from stacks.constructs.python_function import PythonFunction
from stacks.constructs.retention import retention_days
from stacks.data_stack import DataStack
from stacks.nag import acknowledge, partition_in_findings
from stacks.security_stack import SecurityStack
from tenant_provisioner.drills.restore import DRILL_SUFFIX, METRIC_NAMESPACE
from tenant_provisioner.drills.settings import RestoreDrillSettings

# RDS statuses from which a restore never becomes available: stop waiting, clean up, fail.
RESTORE_FAILED_STATUSES = ("failed", "incompatible-restore", "incompatible-parameters", "incompatible-network",
                           "storage-full", "inaccessible-encryption-credentials")


class DrStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, security: SecurityStack,
                 data: DataStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        dr = config.dr
        self.source_instance = data.database_identifier
        settings = RestoreDrillSettings(
            source_instance=self.source_instance, database_secret_arn=data.database_secret.secret_arn,
            database_name=config.tenants.database_name, provisioner_role=config.tenants.provisioner_role)
        function = PythonFunction(
            self, "RestoreDrill", name="restore_drill",
            description="One step of the RDS restore drill (driven by the RestoreDrill state machine)",
            environment=settings.to_env(), timeout=cdk.Duration.minutes(15), memory_size=1024,
            network=data.control_plane_network, log_key=security.logs_key, reserved_concurrency=config.concurrency.restore_drill)
        self.function = function.function
        self._grant(function.role, security, data)

        self.state_machine = self._state_machine(config, security)
        scheduler_role = iam.Role(self, "SchedulerRole", assumed_by=iam.ServicePrincipal(
            "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": self.account}}),
            description="EventBridge Scheduler: start the monthly restore drill")
        self.schedule = scheduler.Schedule(
            self, "Monthly", description=f"Restore drill of {self.source_instance} (cron {dr.restore_drill_cron} UTC)",
            schedule=scheduler.ScheduleExpression.expression(f"cron({dr.restore_drill_cron})", cdk.TimeZone.ETC_UTC),
            target=scheduler_targets.StepFunctionsStartExecution(
                self.state_machine, role=scheduler_role, retry_attempts=2,
                input=scheduler.ScheduleTargetInput.from_object({})))
        publish(self, config.name, "restore-drill-state-machine-arn", self.state_machine.state_machine_arn,
                "Restore drill: `tenant-provisioner drill restore --env <env>` starts and follows it")

    def _state_machine(self, config: EnvConfig, security: SecurityStack) -> sfn.StateMachine:
        dr = config.dr
        poll = sfn.WaitTime.duration(cdk.Duration.seconds(dr.restore_drill_poll_seconds))

        def step(construct_id: str, action: str, result_path: str, *, with_error: bool = False) -> tasks.LambdaInvoke:
            payload = {"action": action, "state": sfn.JsonPath.object_at("$.state")}
            if with_error:
                payload["error"] = sfn.JsonPath.string_at("$.failure.Cause")
            return tasks.LambdaInvoke(self, construct_id, lambda_function=self.function, payload_response_only=True,
                                      payload=sfn.TaskInput.from_object(payload), result_path=result_path,
                                      retry_on_service_exceptions=True)

        capture = tasks.LambdaInvoke(
            self, "Capture", lambda_function=self.function, payload_response_only=True,
            payload=sfn.TaskInput.from_object({"action": "capture"}), result_path="$.state")
        restorable = step("Restorable", "restorable", "$.check")
        start_restore = step("StartRestore", "start_restore", "$.state")
        status = step("Status", "status", "$.check")
        verify = step("Verify", "verify", "$.state")
        cleanup = step("Cleanup", "cleanup", "$.state")
        report = step("Report", "report", "$.state")
        failed = sfn.Fail(self, "DrillFailed", cause="restore drill failed (see the Report step's outcome)",
                          error="RestoreDrillFailed")
        # Failure path: delete whatever exists, publish Verified = 0 with the error, then fail.
        report_failure = step("ReportFailure", "report", "$.state", with_error=True).next(failed)
        cleanup_after_failure = step("CleanupAfterFailure", "cleanup", "$.state", with_error=True)
        cleanup_after_failure.add_catch(report_failure, result_path="$.cleanupFailure")
        cleanup_after_failure.next(report_failure)
        capture.add_catch(report_failure, result_path="$.failure")
        for task in (restorable, start_restore, status, verify):
            task.add_catch(cleanup_after_failure, result_path="$.failure")
        restore_broke = sfn.Pass(self, "RestoreBroke", parameters={
            "state": sfn.JsonPath.object_at("$.state"),
            "failure": {"Cause": sfn.JsonPath.format("temporary instance is {}", sfn.JsonPath.string_at(
                "$.check.status"))}}).next(cleanup_after_failure)

        wait_restorable = sfn.Wait(self, "WaitForRestorePoint", time=poll)
        wait_available = sfn.Wait(self, "WaitForInstance", time=poll)
        begin = sfn.Pass(self, "Begin", parameters={"state": {}})   # every later step reads $.state
        definition = begin.next(capture)
        capture.next(wait_restorable)
        wait_restorable.next(restorable)
        restorable.next(sfn.Choice(self, "IsRestorable")
                        .when(sfn.Condition.boolean_equals("$.check.restorable", True), start_restore)
                        .otherwise(wait_restorable))
        start_restore.next(wait_available)
        wait_available.next(status)
        status.next(sfn.Choice(self, "IsAvailable")
                    .when(sfn.Condition.string_equals("$.check.status", "available"), verify)
                    .when(sfn.Condition.or_(*(sfn.Condition.string_equals("$.check.status", s)
                                              for s in RESTORE_FAILED_STATUSES)), restore_broke)
                    .otherwise(wait_available))
        verify.next(cleanup)
        cleanup.add_catch(report_failure, result_path="$.failure")
        cleanup.next(report)
        report.next(sfn.Choice(self, "Verified")
                    .when(sfn.Condition.boolean_equals("$.state.outcome.verified", True),
                          sfn.Succeed(self, "DrillPassed"))
                    .otherwise(failed))

        log_group = logs.LogGroup(self, "StateMachineLogs", encryption_key=security.logs_key,
                                  retention=retention_days(config.observability.log_retention_days),
                                  removal_policy=cdk.RemovalPolicy.DESTROY)
        machine = sfn.StateMachine(
            self, "RestoreDrillStateMachine", state_machine_name=f"{config.stack_id('restore-drill')}",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=cdk.Duration.hours(dr.restore_drill_timeout_hours), tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False))
        function_arn = f"<{self.get_logical_id(self.function.node.default_child)}.Arn>"
        acknowledge(machine.role.node.find_child("DefaultPolicy"), f"AwsSolutions-IAM5[Resource::{function_arn}:*]",
                    "LambdaInvoke grants the function's qualified ARNs too ('<arn>:*', versions and aliases); the "
                    "statement names only the restore-drill function and only lambda:InvokeFunction")
        acknowledge(machine.role.node.find_child("DefaultPolicy"), "AwsSolutions-IAM5[Resource::*]",
                    "Step Functions' log delivery and X-Ray actions (logs:CreateLogDelivery & co, "
                    "xray:PutTraceSegments) accept no resource-level permissions")
        return machine

    def _grant(self, role: iam.IRole, security: SecurityStack, data: DataStack) -> None:
        """Restore from the source only into ``<source>-drill-*``; modify and delete only those."""
        source = self.format_arn(service="rds", resource="db", resource_name=self.source_instance,
                                 arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
        drills_name = f"{self.source_instance}{DRILL_SUFFIX}*"
        drills = self.format_arn(service="rds", resource="db", resource_name=drills_name,
                                 arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
        restore_inputs = [self.format_arn(service="rds", resource=kind, resource_name="*",
                                          arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
                          for kind in ("subgrp", "pg", "og")]
        via = {"StringEquals": {"kms:ViaService": [f"rds.{self.region}.amazonaws.com",
                                                   f"secretsmanager.{self.region}.amazonaws.com"]}}
        policy = iam.Policy(self, "DrillPermissions", roles=[role], statements=[
            iam.PolicyStatement(actions=["rds:DescribeDBInstances"], resources=[source, drills]),
            iam.PolicyStatement(actions=["rds:RestoreDBInstanceToPointInTime"], resources=[source, drills, *restore_inputs]),
            iam.PolicyStatement(actions=["rds:AddTagsToResource", "rds:ModifyDBInstance", "rds:DeleteDBInstance"],
                                resources=[drills]),
            iam.PolicyStatement(actions=["rds:DeleteDBInstanceAutomatedBackup"], resources=[
                self.format_arn(service="rds", resource="auto-backup", resource_name="*",
                                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)]),
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                                resources=[data.database_secret.secret_arn]),
            # Restoring an encrypted instance creates a grant on its key; reading the secret decrypts.
            iam.PolicyStatement(actions=["kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt"],
                                resources=[security.data_key.key_arn, security.secrets_key.key_arn], conditions=via),
            iam.PolicyStatement(actions=["cloudwatch:PutMetricData"], resources=["*"],
                                conditions={"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}}),
        ])
        partition = partition_in_findings(self)
        prefix = f"arn:{partition}:rds:{self.region}:{self.account}"
        reasons = {
            f"{prefix}:db:{drills_name}": "temporary instances are named at run time (<source>-drill-<timestamp>); the "
                                          "wildcard is confined to that prefix",
            f"{prefix}:subgrp:*": "RestoreDBInstanceToPointInTime authorizes the source's subnet group, whose name "
                                  "CloudFormation generates; only the restore action gets it",
            f"{prefix}:pg:*": "RestoreDBInstanceToPointInTime authorizes the source's parameter group (generated "
                              "name); only the restore action gets it",
            f"{prefix}:og:*": "RestoreDBInstanceToPointInTime authorizes the default option group; only the restore "
                              "action gets it",
            f"{prefix}:auto-backup:*": "a temporary instance's automated-backup id is generated by RDS; only "
                                       "DeleteDBInstanceAutomatedBackup gets it",
            "*": "cloudwatch:PutMetricData has no resource-level permission; the statement is confined to the "
                 f"{METRIC_NAMESPACE} namespace by condition",
        }
        for resource, reason in reasons.items():
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{resource}]", reason)
