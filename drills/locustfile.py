"""The drills' load: tenants' users reading and writing through the reference API (locust,
``FastHttpUser``), every request recorded with its wall-clock start, status and tenant.

Run by ``drills/platform.py`` as a headless locust process. Environment: ``DRILL_KEYS`` (JSON
``{tenant_id: api_key}``) and ``DRILL_SAMPLES`` (where the samples go, one JSON object per line,
written when locust quits). A 5xx body is checked for a Python stack trace, and every write the
API acknowledged (201) is recorded with its id, so the drill can prove no acknowledged data was lost.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time

from locust import FastHttpUser, between, events, task

KEYS: dict[str, str] = json.loads(os.environ.get("DRILL_KEYS", "{}"))
SAMPLES_FILE = os.environ.get("DRILL_SAMPLES", "drill-samples.jsonl")
_tenants = itertools.cycle(sorted(KEYS))
_records: list[dict] = []


def _has_stack_trace(text: str) -> bool:
    return "Traceback (most recent call last)" in text or 'File "/' in text


@events.request.add_listener
def _record(request_type, name, response_time, response_length, response, exception, start_time=None,
            context=None, **_):
    status = getattr(response, "status_code", 0) or 0
    record = {"at": start_time or time.time() - response_time / 1000, "status": status if status else
              type(exception).__name__ if exception else "error", "name": name,
              "tenant": (context or {}).get("tenant")}
    if isinstance(status, int) and status >= 500:
        record["stack_trace"] = _has_stack_trace(getattr(response, "text", "") or "")
    if status == 201 and name in ("POST /v1/usage", "POST /v1/projects"):
        try:
            record["created_id"] = json.loads(response.text)["id"]
        except (ValueError, KeyError, TypeError):
            record["created_id"] = None
    _records.append(record)


_started = False


@events.request.add_listener
def _mark_started(**_):
    """The first answer: the drill waits for it before it starts its clock (locust takes seconds to start)."""
    global _started
    if not _started:
        _started = True
        with open(SAMPLES_FILE + ".started", "w", encoding="utf-8") as marker:
            marker.write(str(time.time()))


@events.quitting.add_listener
def _write(environment, **_):
    with open(SAMPLES_FILE, "w", encoding="utf-8") as out:
        for record in _records:
            out.write(json.dumps(record) + "\n")


class TenantUser(FastHttpUser):
    """Mostly reads, usage writes, some project writes; each user works for one tenant."""

    wait_time = between(0.2, 0.8)   # ~2 requests/s per user: 50 users ≈ 100 requests/s on this 2-core machine

    def on_start(self) -> None:
        self.tenant = next(_tenants)
        self.auth = {"Authorization": f"Bearer {KEYS[self.tenant]}"}
        self.project_id = None
        while self.project_id is None:   # the load starts on a healthy platform; retry only a 429
            response = self.client.post("/v1/projects", json={"name": f"load-{random.randrange(10**9)}"},
                                        name="POST /v1/projects", context={"tenant": self.tenant}, headers=self.auth)
            if response.status_code == 201:
                self.project_id = response.json()["id"]
            else:
                time.sleep(0.5)

    @task(6)
    def list_projects(self) -> None:
        self.client.get("/v1/projects?limit=20", name="GET /v1/projects", context={"tenant": self.tenant},
                        headers=self.auth)

    @task(3)
    def record_usage(self) -> None:
        self.client.post("/v1/usage", name="POST /v1/usage", context={"tenant": self.tenant}, headers=self.auth, json={
            "project_id": self.project_id, "provider": "openai", "model": "gpt-4o-mini",
            "input_tokens": random.randint(10, 2000), "output_tokens": random.randint(10, 800),
            "cost_usd": "0.0012"})

    @task(1)
    def create_project(self) -> None:
        self.client.post("/v1/projects", name="POST /v1/projects", context={"tenant": self.tenant},
                         headers=self.auth, json={"name": f"load-{random.randrange(10**9)}"})
