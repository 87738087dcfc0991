"""Failover drills for production's highly available data stores, measured through the API.

``rds``: ``reboot-db-instance --force-failover`` on a Multi-AZ instance (the standby takes over;
the endpoint's DNS moves). ``cache``: ElastiCache ``test-failover`` of the replication group's
shard (a replica is promoted). While AWS works, a :class:`~tenant_provisioner.drills.interruption.Probe`
keeps calling the reference API; the drill ends when AWS reports the store available again on
its new primary AND the API has answered without a failure for ``settle_seconds``. Refuses to
run against a store that has no standby (a reboot there is an outage, not a drill).
Runbook: docs/runbooks/db-failover.md, docs/runbooks/cache-failover.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from tenant_provisioner.drills.interruption import Interruption, Probe, measure
from tenant_provisioner.errors import ConfigError, TransientError


class FailoverTarget(Protocol):
    name: str

    def check(self) -> None:
        """Raise ConfigError unless a failover can happen without an outage."""

    def trigger(self) -> None: ...

    def done(self) -> bool:
        """True once the store is available again on a new primary."""


@dataclass
class RdsFailover:
    """Reboot with failover of a Multi-AZ instance; done when available in the other AZ."""

    rds: Any
    instance: str
    name: str = "rds"

    def __post_init__(self) -> None:
        self._primary_az: str | None = None
        self._left_available = False

    def _describe(self) -> dict[str, Any]:
        try:
            return self.rds.describe_db_instances(DBInstanceIdentifier=self.instance)["DBInstances"][0]
        except self.rds.exceptions.DBInstanceNotFoundFault:
            raise ConfigError(f"RDS instance {self.instance!r} does not exist") from None

    def check(self) -> None:
        instance = self._describe()
        if not instance.get("MultiAZ"):
            raise ConfigError(f"{self.instance} is not Multi-AZ: a forced failover needs a standby; a reboot "
                              "here is an outage (see docs/runbooks/db-failover.md)")
        if instance["DBInstanceStatus"] != "available":
            raise ConfigError(f"{self.instance} is {instance['DBInstanceStatus']}, not available: try again later")
        self._primary_az = instance["AvailabilityZone"]

    def trigger(self) -> None:
        self.rds.reboot_db_instance(DBInstanceIdentifier=self.instance, ForceFailover=True)

    def done(self) -> bool:
        instance = self._describe()
        if instance["DBInstanceStatus"] != "available":
            self._left_available = True
            return False
        moved = instance.get("AvailabilityZone") != self._primary_az
        return moved or self._left_available


@dataclass
class CacheFailover:
    """ElastiCache test failover of one shard; done when the group is available on a new primary."""

    elasticache: Any
    replication_group: str
    node_group: str = "0001"
    name: str = "cache"

    def __post_init__(self) -> None:
        self._primary: str | None = None

    def _group(self) -> dict[str, Any]:
        try:
            groups = self.elasticache.describe_replication_groups(ReplicationGroupId=self.replication_group)
        except self.elasticache.exceptions.ReplicationGroupNotFoundFault:
            raise ConfigError(f"replication group {self.replication_group!r} does not exist") from None
        return groups["ReplicationGroups"][0]

    def _primary_of(self, group: dict[str, Any]) -> str | None:
        for shard in group.get("NodeGroups", []):
            if shard.get("NodeGroupId") == self.node_group:
                return next((m["CacheClusterId"] for m in shard.get("NodeGroupMembers", [])
                             if m.get("CurrentRole") == "primary"), None)
        return None

    def check(self) -> None:
        group = self._group()
        if group.get("AutomaticFailover") != "enabled":
            raise ConfigError(f"{self.replication_group} has no automatic failover (no replica): a test failover "
                              "is impossible; see docs/runbooks/cache-failover.md")
        if group["Status"] != "available":
            raise ConfigError(f"{self.replication_group} is {group['Status']}, not available: try again later")
        self._primary = self._primary_of(group)

    def trigger(self) -> None:
        self.elasticache.test_failover(ReplicationGroupId=self.replication_group, NodeGroupId=self.node_group)

    def done(self) -> bool:
        group = self._group()
        return group["Status"] == "available" and self._primary_of(group) not in (None, self._primary)


@dataclass(frozen=True)
class FailoverReport:
    target: str
    aws_seconds: float                 # trigger -> AWS reports the store available on its new primary
    interruption: Interruption

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "aws_failover_s": round(self.aws_seconds, 1), **self.interruption.to_json()}


def run(target: FailoverTarget, probe: Probe, *, settle_seconds: float = 30, timeout_seconds: float = 1200,
        poll_seconds: float = 5, warmup_seconds: float = 10, sleep: Callable[[float], None] = time.sleep,
        on_progress: Callable[[str], None] = lambda _: None) -> FailoverReport:
    """Probe the API, trigger the failover, wait for AWS and for the API to settle; the figures."""
    target.check()
    with probe:
        sleep(warmup_seconds)
        if not probe.healthy_for(warmup_seconds):
            raise ConfigError(f"the API at {probe.base_url} is not healthy before the drill: fix that first")
        fault_at = time.monotonic()
        target.trigger()
        on_progress(f"{target.name}: failover triggered")
        aws_seconds: float | None = None
        while True:
            elapsed = time.monotonic() - fault_at
            if aws_seconds is None and target.done():
                aws_seconds = elapsed
                on_progress(f"{target.name}: AWS reports the failover done after {elapsed:.0f}s")
            if aws_seconds is not None and probe.healthy_for(settle_seconds):
                break
            if elapsed > timeout_seconds:
                raise TransientError(f"{target.name}: not recovered within {timeout_seconds:.0f}s "
                                     f"(AWS done: {aws_seconds is not None}); see the runbook")
            sleep(poll_seconds)
    return FailoverReport(target=target.name, aws_seconds=aws_seconds, interruption=measure(probe.samples, fault_at))
