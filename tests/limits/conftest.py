"""Fixtures for the limits tests: real Redis (shared server or a throwaway one we can stop)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time

from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import redis
from moto import mock_aws

from tenant_provisioner.limits import RateLimiter
from tenant_provisioner.tiers import Quota, Tier


def make_tier(name: str = "custom", *, rate: float = 5, burst: int = 20, hard_limit: int = 100_000) -> Tier:
    """A tier built in code for tests that need numbers the tiers files do not have."""
    return Tier(name=name, display_name=name.title(), price_usd_per_month=9, rate_per_second=rate, burst=burst,
                api_requests=Quota(included=hard_limit, hard_limit=hard_limit, overage_usd_per_1000=None),
                storage_gb=1, seats=3, db_connections=5)


@pytest.fixture()
def limiter(redis_client, redis_prefix) -> RateLimiter:
    lim = RateLimiter(redis_client, key_prefix=redis_prefix)
    lim.load()
    return lim


class RedisProcess:
    """A private redis-server on a free port that a test may stop and start again."""

    def __init__(self) -> None:
        server = shutil.which("redis-server")
        if not server:
            pytest.skip("redis-server binary not installed")
        self._server = server
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self._dir = tempfile.mkdtemp(prefix="limits-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen([self._server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self._dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("throwaway redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture()
def redis_process():
    proc = RedisProcess()
    proc.start()
    yield proc
    proc.stop()
    shutil.rmtree(proc._dir, ignore_errors=True)


@dataclass
class OpsTopic:
    """The ops SNS topic (moto), with an SQS queue subscribed so tests can read what was sent."""

    sns: Any
    arn: str
    sqs: Any
    queue_url: str

    def messages(self) -> list[dict]:
        got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                       MessageAttributeNames=["All"])
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]


@pytest.fixture()
def ops_topic():
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="ops")["TopicArn"]
        queue = sqs.create_queue(QueueName="ops-inbox")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        yield OpsTopic(sns=sns, arn=topic, sqs=sqs, queue_url=queue)


# The tenant lifecycle's initialised-database fixtures (tests/tenants/conftest.py), reused as is.
from tests.tenants.conftest import db, tenant_db, tenant_ids  # noqa: E402,F401
