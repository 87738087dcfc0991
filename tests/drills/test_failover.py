"""Failover drills: the interruption figures, and the RDS/cache drills against moto with the API
played by a local HTTP server that fails while the "failover" runs."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto import mock_aws

from tenant_provisioner.drills import failover
from tenant_provisioner.drills.interruption import Probe, Sample, measure
from tenant_provisioner.errors import ConfigError


def test_measure_reports_detect_interruption_recover_and_statuses():
    samples = [Sample(0.5, 200), Sample(1.0, 200), Sample(1.4, 503), Sample(1.6, "timeout"), Sample(2.0, 200),
               Sample(2.2, 500), Sample(2.5, 200), Sample(3.0, 200)]
    figures = measure(samples, fault_at=1.0)
    assert figures.requests == 7 and figures.failed == 3
    assert figures.failed_by_status == {"500": 1, "503": 1, "timeout": 1}
    assert figures.time_to_detect == pytest.approx(0.4)
    assert figures.interruption == pytest.approx(0.8)
    assert figures.time_to_recover == pytest.approx(1.5)


def test_measure_without_failures_says_clients_never_noticed():
    figures = measure([Sample(1.0, 200), Sample(2.0, 204)], fault_at=0.0)
    assert figures.failed == 0 and figures.time_to_detect is None and figures.to_json()["interruption_s"] is None


def test_measure_without_recovery_leaves_time_to_recover_open():
    figures = measure([Sample(1.0, 503), Sample(2.0, 503)], fault_at=0.0)
    assert figures.time_to_recover is None and figures.failed == 2


class Api:
    """A stand-in for the reference API on 127.0.0.1: /readyz answers 503 while `down` is set."""

    def __init__(self) -> None:
        self.down = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                status = 503 if api.down.is_set() else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def outage(self, seconds: float) -> None:
        self.down.set()
        threading.Timer(seconds, self.down.clear).start()


@pytest.fixture()
def api():
    server = Api()
    yield server
    server.server.shutdown()


class Rebooting:
    """moto's RDS, except that a forced failover shows the instance rebooting for a moment and
    takes the API down meanwhile (what moto cannot do: move the primary, break connections)."""

    def __init__(self, client, api: Api) -> None:
        self._client, self._api, self._rebooting_until = client, api, 0.0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def reboot_db_instance(self, **kwargs):
        assert kwargs["ForceFailover"] is True
        self._rebooting_until = time.monotonic() + 0.3
        self._api.outage(0.4)
        return self._client.reboot_db_instance(**kwargs)

    def describe_db_instances(self, **kwargs):
        response = self._client.describe_db_instances(**kwargs)
        if time.monotonic() < self._rebooting_until:
            response["DBInstances"][0]["DBInstanceStatus"] = "rebooting"
        return response


def _instance(rds, name: str, multi_az: bool) -> None:
    rds.create_db_instance(DBInstanceIdentifier=name, Engine="postgres", DBInstanceClass="db.m7g.large",
                           AllocatedStorage=100, MasterUsername="postgres", MasterUserPassword="x" * 20,
                           MultiAZ=multi_az)


FAST = {"settle_seconds": 0.5, "warmup_seconds": 0.3, "poll_seconds": 0.05, "timeout_seconds": 20}


def test_rds_failover_is_measured_through_the_api(api):
    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        _instance(rds, "saas-prod-postgres", multi_az=True)
        target = failover.RdsFailover(rds=Rebooting(rds, api), instance="saas-prod-postgres")
        report = failover.run(target, Probe(base_url=api.url, workers=2, interval=0.02), **FAST)
    figures = report.to_json()
    assert figures["target"] == "rds" and figures["failed"] > 0 and set(figures["failed_by_status"]) == {"503"}
    assert 0.2 < figures["interruption_s"] < 1.5
    assert figures["time_to_detect_s"] < 0.3 and figures["time_to_recover_s"] >= figures["interruption_s"]


def test_rds_failover_refuses_a_single_az_instance(api):
    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        _instance(rds, "saas-dev-postgres", multi_az=False)
        with pytest.raises(ConfigError, match="not Multi-AZ"):
            failover.run(failover.RdsFailover(rds=rds, instance="saas-dev-postgres"), Probe(base_url=api.url), **FAST)
        assert rds.describe_db_instances()["DBInstances"][0]["DBInstanceStatus"] == "available"


def test_a_drill_does_not_start_against_an_unhealthy_api(api):
    api.down.set()
    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        _instance(rds, "saas-prod-postgres", multi_az=True)
        calls = []
        target = failover.RdsFailover(rds=rds, instance="saas-prod-postgres")
        target.trigger = lambda: calls.append("trigger")
        with pytest.raises(ConfigError, match="not healthy before the drill"):
            failover.run(target, Probe(base_url=api.url, interval=0.02), **FAST)
    assert calls == []


class PromotingCache:
    """A replication group whose test failover swaps primary and replica (moto has no test_failover)."""

    def __init__(self, api: Api, automatic_failover: str = "enabled") -> None:
        self.api, self.primary, self.automatic_failover, self.failovers = api, "c-001", automatic_failover, []

        class Exceptions:
            ReplicationGroupNotFoundFault = type("ReplicationGroupNotFoundFault", (Exception,), {})
        self.exceptions = Exceptions

    def describe_replication_groups(self, ReplicationGroupId):  # noqa: N803 - boto3's parameter name
        members = [{"CacheClusterId": c, "CurrentRole": "primary" if c == self.primary else "replica"}
                   for c in ("c-001", "c-002")]
        return {"ReplicationGroups": [{"ReplicationGroupId": ReplicationGroupId, "Status": "available",
                                       "AutomaticFailover": self.automatic_failover,
                                       "NodeGroups": [{"NodeGroupId": "0001", "NodeGroupMembers": members}]}]}

    def test_failover(self, ReplicationGroupId, NodeGroupId):  # noqa: N803
        self.failovers.append((ReplicationGroupId, NodeGroupId))
        self.api.outage(0.3)
        threading.Timer(0.2, lambda: setattr(self, "primary", "c-002")).start()


def test_cache_failover_promotes_the_replica_and_is_measured(api):
    cache = PromotingCache(api)
    report = failover.run(failover.CacheFailover(elasticache=cache, replication_group="saas-prod-cache"),
                          Probe(base_url=api.url, interval=0.02), **FAST)
    assert cache.failovers == [("saas-prod-cache", "0001")] and cache.primary == "c-002"
    assert report.interruption.failed > 0 and report.aws_seconds >= 0.2


def test_cache_failover_refuses_a_group_without_a_replica(api):
    cache = PromotingCache(api, automatic_failover="disabled")
    with pytest.raises(ConfigError, match="no automatic failover"):
        failover.run(failover.CacheFailover(elasticache=cache, replication_group="saas-dev-cache"),
                     Probe(base_url=api.url), **FAST)
    assert cache.failovers == []
