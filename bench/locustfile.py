"""Locust users for `bench/loadtest.py` (headless, FastHttpUser): a realistic tenant mix.

Each user acts for one tenant (tenants weighted towards the cheap tiers, like a real customer
base) and mixes mostly reads with usage writes and some project writes. Every response is
recorded (tier, read/write, status, latency) into ``LOADTEST_OUT`` when locust quits; the
driver computes the figures, so 429s are counted per tier, not as failures."""

from __future__ import annotations

import json
import os
import random
import time
import uuid

from locust import FastHttpUser, between, events, task

PLAN = json.loads(open(os.environ["LOADTEST_PLAN"]).read())
RECORDS: list[tuple[str, str, str, int, float, float]] = []  # tenant, tier, kind, status, ms, at


@events.quitting.add_listener
def _dump(environment, **_kwargs) -> None:
    with open(os.environ["LOADTEST_OUT"], "w") as out:
        json.dump(RECORDS, out)


class TenantUser(FastHttpUser):
    wait_time = between(float(os.environ.get("LOADTEST_WAIT_MIN", "0.2")),
                        float(os.environ.get("LOADTEST_WAIT_MAX", "0.6")))

    def on_start(self) -> None:
        tenants = PLAN["tenants"]
        self.tenant = random.choices(tenants, weights=[t["weight"] for t in tenants])[0]
        self.headers = {"Authorization": f"Bearer {self.tenant['key']}"} if self.tenant["key"] else {}

    def _call(self, kind: str, method: str, path: str, name: str, body: dict | None = None) -> None:
        started = time.perf_counter()
        with self.client.request(method, path, headers=self.headers, json=body, name=name,
                                 catch_response=True) as response:
            elapsed = (time.perf_counter() - started) * 1000
            RECORDS.append((self.tenant["tenant_id"], self.tenant["tier"], kind, response.status_code, elapsed,
                            time.time()))
            if response.status_code in (200, 201, 204, 429):
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}")

    def _project(self) -> int:
        return random.choice(self.tenant["project_ids"])

    @task(40)
    def list_projects(self) -> None:
        self._call("read", "GET", "/v1/projects?limit=20", "GET /v1/projects")

    @task(20)
    def get_project(self) -> None:
        self._call("read", "GET", f"/v1/projects/{self._project()}", "GET /v1/projects/{id}")

    @task(8)
    def usage_summary(self) -> None:
        self._call("read", "GET", f"/v1/usage/summary?project_id={self._project()}", "GET /v1/usage/summary")

    @task(5)
    def list_budgets(self) -> None:
        self._call("read", "GET", "/v1/budgets", "GET /v1/budgets")

    @task(20)
    def record_usage(self) -> None:
        self._call("write", "POST", "/v1/usage", "POST /v1/usage", {
            "project_id": self._project(), "provider": random.choice(["openai", "anthropic", "bedrock"]),
            "model": random.choice(["gpt-4o", "claude-sonnet", "llama-3"]), "input_tokens": random.randint(10, 5000),
            "output_tokens": random.randint(10, 2000), "cost_usd": f"{random.uniform(0.0001, 0.2):.6f}"})

    @task(4)
    def create_project(self) -> None:
        self._call("write", "POST", "/v1/projects", "POST /v1/projects", {"name": f"lt-{uuid.uuid4().hex[:12]}"})

    @task(3)
    def archive_toggle(self) -> None:
        self._call("write", "PATCH", f"/v1/projects/{self._project()}", "PATCH /v1/projects/{id}",
                   {"archived": random.random() < 0.5})
