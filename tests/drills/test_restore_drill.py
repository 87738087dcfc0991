"""RDS restore drill against moto (the AWS side) and real PostgreSQL (the data).

moto records the restore but holds no data, so the fake sits exactly at that boundary: when the
drill asks RDS to restore, the source database is copied (``CREATE DATABASE … TEMPLATE``) into
the "restored instance" the drill then connects to. Everything else — fingerprints, comparison,
password reset, deletion, metrics — is the real code path.
"""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import psycopg
import pytest
from moto import mock_aws
from psycopg import sql

from tenant_provisioner.runtime import compose
from tenant_provisioner.drills import fingerprint, restore
from tenant_provisioner.tenants.provisioning import CreateRequest
from tests.support import databases

SOURCE = "saas-test-postgres"


class RestoringRds:
    """The moto RDS client, plus the one thing moto cannot do: put the source's data into the
    restored instance (a template copy of the source database, taken when the restore starts)."""

    def __init__(self, client, *, admin_url: str, source_url: str, corrupt=None) -> None:
        self._client = client
        self._admin_url = admin_url
        self._source_db = psycopg.conninfo.conninfo_to_dict(source_url)["dbname"]
        self._corrupt = corrupt
        self.copies: dict[str, str] = {}
        self.requests: list[dict] = []
        self.passwords: dict[str, str] = {}

    def __getattr__(self, name):
        return getattr(self._client, name)

    def restore_db_instance_to_point_in_time(self, **kwargs):
        self.requests.append(kwargs)
        response = self._client.restore_db_instance_to_point_in_time(**kwargs)
        copy = f"restored_{len(self.copies)}_{self._source_db}"[:63]
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(copy), sql.Identifier(self._source_db)))
        url = databases.url_for_database(self._admin_url, copy)
        if self._corrupt:
            with psycopg.connect(url, autocommit=True) as conn:
                self._corrupt(conn)
        self.copies[kwargs["TargetDBInstanceIdentifier"]] = url
        return response

    def modify_db_instance(self, **kwargs):
        if "MasterUserPassword" in kwargs:
            self.passwords[kwargs["DBInstanceIdentifier"]] = kwargs["MasterUserPassword"]
        return self._client.modify_db_instance(**kwargs)

    def connector(self, target_of):
        """Connects to the copy behind the endpoint moto reports, with the password the drill set."""
        def connect(*, host: str, port: int, user: str, password: str) -> psycopg.Connection:
            target = target_of()
            assert host.startswith(target) and port == 5432 and user == "postgres"
            assert password == self.passwords[target] and len(password) >= 32
            return psycopg.connect(self.copies[target], autocommit=True)
        return connect

    def drop_copies(self) -> None:
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            for url in self.copies.values():
                name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture()
def aws():
    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")
                   ["Subnet"]["SubnetId"] for i, az in enumerate("ab")]
        group = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
        rds.create_db_subnet_group(DBSubnetGroupName="isolated", DBSubnetGroupDescription="isolated subnets",
                                   SubnetIds=subnets)
        rds.create_db_parameter_group(DBParameterGroupName="force-tls", DBParameterGroupFamily="postgres16",
                                      Description="tls")
        rds.create_db_instance(DBInstanceIdentifier=SOURCE, Engine="postgres", EngineVersion="16.13",
                               DBInstanceClass="db.m7g.large", AllocatedStorage=100, MasterUsername="postgres",
                               MasterUserPassword="source-password", DBSubnetGroupName="isolated",
                               VpcSecurityGroupIds=[group], DBParameterGroupName="force-tls",
                               BackupRetentionPeriod=30, MultiAZ=True, StorageEncrypted=True)
        yield {"rds": rds, "cloudwatch": boto3.client("cloudwatch", region_name="us-east-1"), "group": group}


@pytest.fixture()
def source(fresh_tenant_db):
    """Three tenants with data in their tables; yields a factory of superuser connections to it."""
    with fresh_tenant_db.database() as db, db.connection() as conn:
        for i in range(3):
            tenant = compose.lifecycle().create(conn, CreateRequest.parse(
                {"tenant_id": f"drill-{i}", "tier": "starter", "admin_email": "a@example.com"}), actor="t").tenant
            for n in range(i + 2):
                conn.execute(sql.SQL("INSERT INTO {}.projects (name) VALUES (%s)").format(
                    sql.Identifier(tenant.schema_name)), (f"p{n}",))
    return lambda: psycopg.connect(fresh_tenant_db.url, autocommit=True)


def _metrics(cloudwatch) -> dict[str, list[float]]:
    start, end = datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc)
    found = {}
    for metric in cloudwatch.list_metrics(Namespace=restore.METRIC_NAMESPACE)["Metrics"]:
        stats = cloudwatch.get_metric_statistics(
            Namespace=restore.METRIC_NAMESPACE, MetricName=metric["MetricName"], Dimensions=metric["Dimensions"],
            StartTime=start, EndTime=end, Period=60, Statistics=["Maximum"])
        assert metric["Dimensions"] == [{"Name": "DBInstanceIdentifier", "Value": SOURCE}]
        found[metric["MetricName"]] = [p["Maximum"] for p in stats["Datapoints"]]
    return found


def _drill(aws, fresh_tenant_db, source, corrupt=None):
    rds = RestoringRds(aws["rds"], admin_url=fresh_tenant_db.admin_url, source_url=fresh_tenant_db.url,
                       corrupt=corrupt)
    drill = restore.RestoreDrill(rds=rds, cloudwatch=aws["cloudwatch"], source=SOURCE, sleep=lambda _: None)
    state = {}

    def target() -> str:
        return state["target"]

    def progress(message: str) -> None:
        if message.startswith("restoring into "):
            state["target"] = message.removeprefix("restoring into ")
    return rds, drill, target, progress


def _instances(rds) -> dict[str, str]:
    return {i["DBInstanceIdentifier"]: i["DBInstanceStatus"] for i in rds.describe_db_instances()["DBInstances"]}


def test_a_good_restore_is_verified_measured_recorded_and_deleted(aws, fresh_tenant_db, source):
    rds, drill, target, progress = _drill(aws, fresh_tenant_db, source)
    try:
        outcome = restore.run(drill, source, rds.connector(target), poll_seconds=0, on_progress=progress)["outcome"]
    finally:
        rds.drop_copies()
    comparison = outcome["comparison"]
    assert outcome["verified"] is True and outcome["error"] is None, outcome
    assert comparison["tenants_expected"] == comparison["tenants_restored"] == comparison["tenants_verified"] == 3
    with source() as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables t JOIN control.tenants c ON c.schema_name = t.schemaname"
                              " WHERE c.tenant_id = 'drill-0'").fetchone()[0]
    assert comparison["tables_verified"] == 3 * tables and comparison["rows_verified"] == 2 + 3 + 4   # projects
    assert outcome["rto_seconds"] >= 0 and outcome["rpo_seconds"] >= 0
    # The temporary instance came from the source's isolated subnets and groups, and is gone again.
    assert outcome["cleanup"] == "deleting" and set(_instances(aws["rds"])) == {SOURCE}
    metrics = _metrics(aws["cloudwatch"])
    assert metrics[restore.VERIFIED_METRIC] == [1.0]
    assert restore.RTO_METRIC in metrics and restore.RPO_METRIC in metrics
    with source() as conn:
        recorded, finished = conn.execute("SELECT outcome, finished_at FROM control.restore_drills").fetchone()
    assert recorded["verified"] is True and finished is not None


def test_a_restore_missing_rows_fails_and_the_instance_is_still_deleted(aws, fresh_tenant_db, source):
    def lose_a_row(conn):
        schema = conn.execute("SELECT schema_name FROM control.tenants WHERE tenant_id = 'drill-2'").fetchone()[0]
        conn.execute(sql.SQL("DELETE FROM {}.projects WHERE name = 'p0'").format(sql.Identifier(schema)))

    rds, drill, target, progress = _drill(aws, fresh_tenant_db, source, corrupt=lose_a_row)
    try:
        outcome = restore.run(drill, source, rds.connector(target), poll_seconds=0, on_progress=progress)["outcome"]
    finally:
        rds.drop_copies()
    assert outcome["verified"] is False
    assert outcome["comparison"]["problems"] == ["drill-2.projects: 3 rows, source had 4"]
    assert "rto_seconds" not in outcome
    assert set(_instances(aws["rds"])) == {SOURCE}
    assert _metrics(aws["cloudwatch"])[restore.VERIFIED_METRIC] == [0.0]


def test_a_failing_step_still_deletes_the_instance_and_reports_the_error(aws, fresh_tenant_db, source):
    rds, drill, target, progress = _drill(aws, fresh_tenant_db, source)

    def unreachable(**_):
        raise psycopg.OperationalError("connection timed out")
    try:
        outcome = restore.run(drill, source, unreachable, poll_seconds=0, on_progress=progress)["outcome"]
    finally:
        rds.drop_copies()
    assert outcome["verified"] is False and "connection timed out" in outcome["error"]
    assert outcome["cleanup"] == "deleting" and set(_instances(aws["rds"])) == {SOURCE}
    assert _metrics(aws["cloudwatch"])[restore.VERIFIED_METRIC] == [0.0]


def test_the_restore_lands_in_the_sources_network_single_az_and_private(aws, fresh_tenant_db, source):
    rds, drill, _, _ = _drill(aws, fresh_tenant_db, source)
    try:
        with source() as conn:
            state = drill.capture(conn, drill_id="t1")
        assert drill.restorable(state)
        state = drill.start_restore(state)
        assert drill.start_restore(state)["target"] == state["target"]   # a retried step is harmless
        instance = aws["rds"].describe_db_instances(DBInstanceIdentifier=state["target"])["DBInstances"][0]
        assert state["target"] == f"{SOURCE}-drill-t1"
        assert instance["DBSubnetGroup"]["DBSubnetGroupName"] == "isolated"
        assert [g["VpcSecurityGroupId"] for g in instance["VpcSecurityGroups"]] == [aws["group"]]
        # moto ignores False overrides, so the request itself is checked for these two.
        assert rds.requests[0]["MultiAZ"] is False and rds.requests[0]["PubliclyAccessible"] is False
        assert rds.requests[0]["RestoreTime"] == datetime.fromisoformat(state["restore_time"])
        assert {"Key": restore.DRILL_TAG, "Value": "t1"} in instance["TagList"]
        drill.cleanup(state)
        assert drill.cleanup(state)["cleanup"] == "absent"
    finally:
        rds.drop_copies()


def test_cleanup_refuses_to_delete_anything_but_a_drill_instance(aws):
    drill = restore.RestoreDrill(rds=aws["rds"], cloudwatch=aws["cloudwatch"], source=SOURCE)
    with pytest.raises(restore.ConfigError, match="refusing to delete"):
        drill.cleanup({"target": SOURCE})
    assert SOURCE in _instances(aws["rds"])


def test_a_source_without_backups_says_so(aws):
    drill = restore.RestoreDrill(rds=aws["rds"], cloudwatch=aws["cloudwatch"], source="does-not-exist")
    with pytest.raises(restore.ConfigError, match="does not exist"):
        drill.latest_restorable_time()


def _fp(**tenants) -> fingerprint.Fingerprint:
    return fingerprint.Fingerprint(
        taken_at=datetime(2026, 1, 1, tzinfo=timezone.utc), control_version=4,
        tenants={tenant_id: fingerprint.TenantFingerprint(
            schema_name=f"t_{i:016x}", schema_version=1,
            tables={"projects": fingerprint.TableFingerprint(rows=rows, checksum=f"c{rows}")})
            for i, (tenant_id, rows) in enumerate(tenants.items())})


def test_a_tenant_written_during_capture_is_reported_not_compared_row_by_row():
    before, after = _fp(a=1, b=2), _fp(a=1, b=3)
    result = fingerprint.compare(before, after, _fp(a=1, b=9))
    assert result.verified and result.tenants_verified == 1 and result.tenants_written_during_capture == ["b"]


@pytest.mark.parametrize(("restored", "problem"), [
    (_fp(a=1), "b: missing from the copy"),
    (_fp(a=1, b=2, c=5), "c: in the copy but never in the source"),
    (_fp(a=1, b=1), "b.projects: 1 rows, source had 2"),
])
def test_missing_extra_or_different_tenants_fail_the_comparison(restored, problem):
    result = fingerprint.compare(_fp(a=1, b=2), _fp(a=1, b=2), restored)
    assert result.problems == [problem] and not result.verified


def test_an_older_migration_version_fails_the_comparison():
    restored = fingerprint.Fingerprint(taken_at=_fp().taken_at, control_version=3, tenants=_fp(a=1).tenants)
    assert fingerprint.compare(_fp(a=1), _fp(a=1), restored).problems == [
        "control schema at version 3, source was at 4"]


def test_fingerprints_survive_the_json_round_trip_through_the_control_table():
    original = _fp(a=1, b=2)
    assert fingerprint.Fingerprint.from_json(original.to_json()) == original


def _cli(monkeypatch, tenant_db, *args: str):
    from typer.testing import CliRunner

    from tenant_provisioner.cli.main import app
    monkeypatch.setenv("DATABASE_URL", tenant_db.url)
    monkeypatch.setenv("TENANT_PROVISIONER_ROLE", tenant_db.provisioner_role)
    return CliRunner().invoke(app, ["drill", *args], catch_exceptions=False)


def test_history_lists_each_drill_with_its_outcome(aws, fresh_tenant_db, source, monkeypatch):
    rds, drill, target, progress = _drill(aws, fresh_tenant_db, source)
    try:
        restore.run(drill, source, rds.connector(target), poll_seconds=0, on_progress=progress)
    finally:
        rds.drop_copies()
    result = _cli(monkeypatch, fresh_tenant_db, "history", "--json")
    assert result.exit_code == 0, result.output
    (line,) = result.output.strip().splitlines()
    recorded = __import__("json").loads(line)
    assert recorded["source"] == SOURCE and recorded["outcome"]["verified"] is True
    table = _cli(monkeypatch, fresh_tenant_db, "history")
    assert "3/3" in table.output and "yes" in table.output


@pytest.mark.parametrize("args", [[], ["--env", "prod", "--here"], ["--here"]])
def test_restore_needs_exactly_one_way_to_run(aws, fresh_tenant_db, monkeypatch, args):
    result = _cli(monkeypatch, fresh_tenant_db, "restore", *args)
    assert result.exit_code == 2 and "error:" in result.output


def test_restore_for_an_environment_without_the_dr_stack_says_what_to_deploy(aws, fresh_tenant_db, monkeypatch):
    result = _cli(monkeypatch, fresh_tenant_db, "restore", "--env", "prod")
    assert result.exit_code == 2 and "deploy the saas-prod-dr stack" in result.output


def test_the_lambda_runs_one_step_per_invocation(aws, monkeypatch):
    from lambdas.restore_drill import handler as drill_lambda
    from tests.support.lambda_context import LambdaContext
    monkeypatch.setenv("DRILL_SOURCE_INSTANCE", SOURCE)
    monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:111111111111:secret:x")
    monkeypatch.setenv("DATABASE_NAME", "app")
    monkeypatch.setattr(drill_lambda, "_settings", None)
    monkeypatch.setattr(drill_lambda, "_drill", None)
    state = {"drill_id": "t2", "target": f"{SOURCE}-drill-t2", "restore_time": "2000-01-01T00:00:00+00:00"}
    assert drill_lambda.handler({"action": "restorable", "state": state}, LambdaContext()) == {"restorable": True}
    started = drill_lambda.handler({"action": "start_restore", "state": state}, LambdaContext())
    assert drill_lambda.handler({"action": "status", "state": started}, LambdaContext()) == {"status": "available"}
    cleaned = drill_lambda.handler({"action": "cleanup", "state": started, "error": "boom"}, LambdaContext())
    assert cleaned["cleanup"] == "deleting" and cleaned["error"] == "boom"
    with pytest.raises(restore.PlatformError, match="unknown restore-drill step"):
        drill_lambda.handler({"action": "explode", "state": state}, LambdaContext())
