"""RDS restore drill: restore a point in time into a temporary instance, verify it, measure, delete it.

A backup is only real once a restore of it has been verified. The drill runs in steps, so that
Step Functions can wait between them for hours without a Lambda waiting (``lambdas/restore_drill``)
and an operator can run the same steps in one process (``tenant-provisioner drill restore --here``):

1. ``capture``  – fingerprint the source just before and just after a restore point (a whole
   second, between the two), store both in ``control.restore_drills``; measure the RPO (how far the
   latest restorable time lags behind now).
2. ``restorable`` – true once RDS can restore to that point (its transaction-log upload lags ~5 min).
3. ``start_restore`` – restore that point into ``<source>-drill-<id>``: the source's subnet group
   (isolated subnets), security groups and parameter group, Single-AZ, no public access.
4. ``status`` – the temporary instance's status, until ``available``.
5. ``verify`` – set a one-time master password (the restore carries the password of the restore
   time, which rotation may have changed), fingerprint the copy and compare: tenant count, every
   schema's migration version, rows and checksum of every table of every tenant.
6. ``cleanup`` – delete the temporary instance (no final snapshot); runs also when anything failed.
7. ``report`` – publish RTO (restore requested → copy verified), RPO and the outcome as metrics and
   record them in the drill's row.
"""

from __future__ import annotations

import secrets
import time
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Protocol

import psycopg
from psycopg.types.json import Jsonb

from tenant_provisioner.drills import fingerprint
from tenant_provisioner.drills.fingerprint import Fingerprint
from tenant_provisioner.errors import ConfigError, PlatformError, TransientError

METRIC_NAMESPACE = "SaaS/DR"
RTO_METRIC = "RestoreDrillRtoSeconds"
RPO_METRIC = "RestoreDrillRpoSeconds"
VERIFIED_METRIC = "RestoreDrillVerified"   # 1 verified, 0 failed (any step)
DRILL_TAG = "saas:restore-drill"
# Temporary instances are named after their source so IAM can confine the drill to them.
DRILL_SUFFIX = "-drill-"
PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class DrillFailed(PlatformError):
    """The restored copy did not match the source, or the drill could not finish."""

    code = "restore_drill_failed"
    exit_code = 1


class RestoredConnector(Protocol):
    """Opens a connection to the restored copy (host, port, master user, one-time password)."""

    def __call__(self, *, host: str, port: int, user: str, password: str) -> psycopg.Connection: ...


def drill_instance_id(source: str, drill_id: str) -> str:
    """``<source>-drill-<id>``: at most 63 characters, as RDS allows."""
    name = f"{source}{DRILL_SUFFIX}{drill_id}"
    if len(name) > 63:
        raise ConfigError(f"temporary instance name {name!r} is longer than RDS's 63 characters; "
                          "use a shorter source identifier or drill id")
    return name


def new_drill_id(now: datetime) -> str:
    return now.strftime("%Y%m%d%H%M%S")


def _ceil_second(moment: datetime) -> datetime:
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


@dataclass
class RestoreDrill:
    """The AWS side of a drill against ``source`` (an RDS instance identifier). Clients are boto3
    ``rds`` and ``cloudwatch`` clients; ``sleep``/``now`` are injectable so tests never wait."""

    rds: Any
    cloudwatch: Any
    source: str
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    # --- step 1 -------------------------------------------------------------------------------
    def capture(self, source_conn: psycopg.Connection, *, drill_id: str | None = None) -> dict[str, Any]:
        """Fingerprint the source around a restore point and store both fingerprints; the returned
        state is what every later step needs (it carries no secret)."""
        started = self.now()
        drill_id = drill_id or new_drill_id(started)
        target = drill_instance_id(self.source, drill_id)
        rpo_seconds = max(0.0, (started - self.latest_restorable_time()).total_seconds())
        before = fingerprint.take(source_conn)
        restore_time = _ceil_second(before.taken_at) + timedelta(seconds=1)
        while self.now() <= restore_time:   # the second fingerprint must be taken after the restore point
            self.sleep(max(0.05, (restore_time - self.now()).total_seconds() + 0.05))
        after = fingerprint.take(source_conn)
        if after.taken_at <= restore_time:
            raise ConfigError("the database clock is behind this host's clock; cannot place the restore point")
        with source_conn.transaction():
            source_conn.execute(
                "INSERT INTO control.restore_drills (drill_id, source_instance, restore_time, before_restore,"
                " after_restore) VALUES (%s, %s, %s, %s, %s)",
                (drill_id, self.source, restore_time, Jsonb(before.to_json()), Jsonb(after.to_json())))
        return {"drill_id": drill_id, "source": self.source, "target": target,
                "restore_time": restore_time.isoformat(), "started_at": started.isoformat(),
                "rpo_seconds": rpo_seconds, "tenants": len(before.tenants)}

    def latest_restorable_time(self) -> datetime:
        instance = self._describe(self.source)
        latest = instance.get("LatestRestorableTime")
        if latest is None:
            raise ConfigError(f"{self.source} has no restorable time: are automated backups enabled "
                              "(backup retention > 0)?")
        return latest

    # --- step 2 -------------------------------------------------------------------------------
    def restorable(self, state: dict[str, Any]) -> bool:
        return self.latest_restorable_time() >= datetime.fromisoformat(state["restore_time"])

    # --- step 3 -------------------------------------------------------------------------------
    def start_restore(self, state: dict[str, Any]) -> dict[str, Any]:
        """Restore the drill's point in time next to the source: same isolated subnets, security
        groups and parameter group (TLS forced), Single-AZ, never public, deletable."""
        source = self._describe(self.source)
        target = state["target"]
        # A retried step: the restore was already requested.
        with suppress(self.rds.exceptions.DBInstanceAlreadyExistsFault):
            self.rds.restore_db_instance_to_point_in_time(
                SourceDBInstanceIdentifier=self.source, TargetDBInstanceIdentifier=target,
                RestoreTime=datetime.fromisoformat(state["restore_time"]),
                DBSubnetGroupName=source["DBSubnetGroup"]["DBSubnetGroupName"],
                VpcSecurityGroupIds=[group["VpcSecurityGroupId"] for group in source["VpcSecurityGroups"]],
                DBParameterGroupName=source["DBParameterGroups"][0]["DBParameterGroupName"],
                DBInstanceClass=source["DBInstanceClass"], MultiAZ=False, PubliclyAccessible=False,
                DeletionProtection=False, CopyTagsToSnapshot=False, AutoMinorVersionUpgrade=False,
                Tags=[{"Key": DRILL_TAG, "Value": state["drill_id"]}])
        return {**state, "restore_requested_at": self.now().isoformat()}

    # --- step 4 -------------------------------------------------------------------------------
    def status(self, state: dict[str, Any]) -> str:
        return self._describe(state["target"])["DBInstanceStatus"]

    # --- step 5 -------------------------------------------------------------------------------
    def verify(self, state: dict[str, Any], source_conn: psycopg.Connection, connect: RestoredConnector,
               *, password_timeout_seconds: float = 600) -> dict[str, Any]:
        """Reset the copy's master password, fingerprint the copy and compare it with the source."""
        target = state["target"]
        password = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(40))
        self.rds.modify_db_instance(DBInstanceIdentifier=target, MasterUserPassword=password, ApplyImmediately=True)
        instance = self._wait_password_applied(target, password_timeout_seconds)
        before, after = self._stored_fingerprints(source_conn, state["drill_id"])
        endpoint = instance["Endpoint"]
        with connect(host=endpoint["Address"], port=int(endpoint["Port"]), user=instance["MasterUsername"],
                     password=password) as restored_conn:
            restored = fingerprint.take(restored_conn)
        comparison = fingerprint.compare(before, after, restored)
        return {**state, "verified_at": self.now().isoformat(), "comparison": comparison.to_json()}

    def _wait_password_applied(self, target: str, timeout_seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_seconds
        # RDS accepts the modification, then shows it as pending until the instance is available again.
        while True:
            instance = self._describe(target)
            pending = instance.get("PendingModifiedValues", {})
            if instance["DBInstanceStatus"] == "available" and "MasterUserPassword" not in pending:
                return instance
            if time.monotonic() > deadline:
                raise TransientError(f"{target}: the new master password was not applied within "
                                     f"{timeout_seconds:.0f}s (status {instance['DBInstanceStatus']})")
            self.sleep(10)

    @staticmethod
    def _stored_fingerprints(source_conn: psycopg.Connection, drill_id: str) -> tuple[Fingerprint, Fingerprint]:
        row = source_conn.execute("SELECT before_restore, after_restore FROM control.restore_drills "
                                  "WHERE drill_id = %s", (drill_id,)).fetchone()
        if row is None:
            raise ConfigError(f"drill {drill_id!r} has no captured fingerprints in control.restore_drills")
        return Fingerprint.from_json(row[0]), Fingerprint.from_json(row[1])

    # --- step 6 -------------------------------------------------------------------------------
    def cleanup(self, state: dict[str, Any]) -> dict[str, Any]:
        """Delete the temporary instance and its automated backups; already gone is fine."""
        target = state["target"]
        if DRILL_SUFFIX not in target or not target.startswith(self.source):
            raise ConfigError(f"refusing to delete {target!r}: not a drill instance of {self.source}")
        try:
            self.rds.delete_db_instance(DBInstanceIdentifier=target, SkipFinalSnapshot=True,
                                        DeleteAutomatedBackups=True)
            deleted = "deleting"
        except self.rds.exceptions.DBInstanceNotFoundFault:
            deleted = "absent"
        return {**state, "cleanup": deleted}

    # --- step 7 -------------------------------------------------------------------------------
    def report(self, state: dict[str, Any], source_conn: psycopg.Connection | None = None) -> dict[str, Any]:
        """Publish RTO, RPO and the outcome; record them with the drill. A failed drill (``error``
        in the state, or a comparison with problems) publishes Verified = 0 and no RTO."""
        comparison = state.get("comparison") or {}
        verified = bool(comparison.get("verified")) and not state.get("error")
        outcome: dict[str, Any] = {"verified": verified, "rpo_seconds": state.get("rpo_seconds"),
                                   "comparison": comparison, "error": state.get("error"),
                                   "cleanup": state.get("cleanup")}
        metrics = [{"MetricName": VERIFIED_METRIC, "Value": 1.0 if verified else 0.0, "Unit": "Count"}]
        if state.get("rpo_seconds") is not None:
            metrics.append({"MetricName": RPO_METRIC, "Value": float(state["rpo_seconds"]), "Unit": "Seconds"})
        if verified:
            rto = (datetime.fromisoformat(state["verified_at"])
                   - datetime.fromisoformat(state["restore_requested_at"])).total_seconds()
            outcome["rto_seconds"] = rto
            metrics.append({"MetricName": RTO_METRIC, "Value": rto, "Unit": "Seconds"})
        dimensions = [{"Name": "DBInstanceIdentifier", "Value": self.source}]
        self.cloudwatch.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=[
            {**metric, "Dimensions": dimensions} for metric in metrics])
        if source_conn is not None and state.get("drill_id"):
            source_conn.execute("UPDATE control.restore_drills SET outcome = %s, finished_at = now() "
                                "WHERE drill_id = %s", (Jsonb(outcome), state["drill_id"]))
        return {**state, "outcome": outcome}

    def _describe(self, identifier: str) -> dict[str, Any]:
        try:
            return self.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        except self.rds.exceptions.DBInstanceNotFoundFault:
            raise ConfigError(f"RDS instance {identifier!r} does not exist") from None


SourceConnections = Callable[[], AbstractContextManager[psycopg.Connection]]


def run(drill: RestoreDrill, source: SourceConnections, connect: RestoredConnector, *,
        poll_seconds: float = 30, timeout_seconds: float = 4 * 3600,
        on_progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every step in one process (what the state machine does, for an operator inside the VPC).
    ``source`` opens a connection to the source database per step (none is held while RDS works);
    the temporary instance is deleted and the outcome reported also when a step fails."""
    with source() as conn:
        state: dict[str, Any] = drill.capture(conn)
    on_progress(f"captured {state['tenants']} tenants; restore point {state['restore_time']}")
    deadline = time.monotonic() + timeout_seconds
    try:
        _wait_for(lambda: drill.restorable(state), drill, poll_seconds, deadline, "the restore point to be restorable")
        state = drill.start_restore(state)
        on_progress(f"restoring into {state['target']}")
        _wait_for(lambda: drill.status(state) == "available", drill, poll_seconds, deadline,
                  f"{state['target']} to be available")
        with source() as conn:
            state = drill.verify(state, conn, connect)
        on_progress("verified" if state["comparison"]["verified"] else "verification FAILED")
    except Exception as exc:  # noqa: BLE001 - any failure is a failed drill: clean up, report, then say so
        state = {**state, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        state = drill.cleanup(state) if "restore_requested_at" in state else {**state, "cleanup": "not created"}
        on_progress(f"temporary instance: {state['cleanup']}")
    with source() as conn:
        return drill.report(state, conn)


def _wait_for(check: Callable[[], bool], drill: RestoreDrill, poll_seconds: float, deadline: float, what: str) -> None:
    while not check():
        if time.monotonic() > deadline:
            raise TransientError(f"gave up waiting for {what}")
        drill.sleep(poll_seconds)

