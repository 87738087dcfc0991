"""The tenant request path over HTTP: keys → tenant → limiter → the tenant's own role."""

from __future__ import annotations

import time

import pytest

from tenant_provisioner.runtime import compose
from tenant_provisioner.gateway import keys

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later


@pytest.fixture(scope="module")
def tenants(platform):
    return {"alpha": platform.tenant("alpha-co", "pro"), "bravo": platform.tenant("bravo-co", "pro"),
            "slow": platform.tenant("slow-co", "starter")}


def test_probes_need_no_key(api):
    with api.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert http.get("/openapi.json").json()["info"]["title"] == "AI cost API"


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer pro_0123456789abcdef_" + "a" * 48])
def test_missing_malformed_or_unknown_key_is_401_problem(api, tenants, header):
    with api.client() as http:
        response = http.get("/v1/projects", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401
    assert response.headers["x-request-id"]


def test_wrong_secret_for_a_real_key_id_is_401(api, tenants):
    real = tenants["alpha"]
    forged = real[:-1] + ("a" if real[-1] != "a" else "b")
    with api.client(forged) as http:
        assert http.get("/v1/projects").status_code == 401


def test_crud_and_cross_tenant_ids_are_404(api, tenants):
    with api.client(tenants["alpha"]) as alpha, api.client(tenants["bravo"]) as bravo:
        created = alpha.post("/v1/projects", json={"name": "search"})
        assert created.status_code == 201, created.text
        project_id = created.json()["id"]
        assert created.headers["ratelimit-policy"].startswith('"burst"')
        budget = alpha.post("/v1/budgets", json={"project_id": project_id, "amount_usd": "10.00"}).json()
        usage = alpha.post("/v1/usage", json={"project_id": project_id, "provider": "openai", "model": "gpt-4o",
                                              "input_tokens": 100, "output_tokens": 20, "cost_usd": "0.5"})
        assert usage.status_code == 201, usage.text
        for path in (f"/v1/projects/{project_id}", f"/v1/budgets/{budget['id']}"):
            assert alpha.get(path).status_code == 200
            other = bravo.get(path)
            assert other.status_code == 404 and other.json()["type"].endswith("/not-found")
            assert bravo.patch(path, json={}).status_code == 404
            assert bravo.delete(path).status_code == 404
        assert bravo.post("/v1/usage", json={"project_id": project_id, "provider": "x", "model": "y",
                                             "cost_usd": "1"}).status_code == 404
        assert bravo.get("/v1/usage/summary").json()["rows"] == []
        summary = alpha.get("/v1/usage/summary", params={"project_id": project_id}).json()
        assert summary["rows"][0]["input_tokens"] == 100
        assert alpha.patch(f"/v1/projects/{project_id}", json={"archived": True}).json()["archived_at"]
        assert alpha.delete(f"/v1/projects/{project_id}").status_code == 204
        assert alpha.get(f"/v1/projects/{project_id}").status_code == 404


def test_duplicate_name_is_409_and_bad_input_422(api, tenants):
    with api.client(tenants["bravo"]) as http:
        assert http.post("/v1/projects", json={"name": "dup"}).status_code == 201
        assert http.post("/v1/projects", json={"name": "dup"}).status_code == 409
        for body in ({"name": ""}, {"name": "a\x00b"}, {"name": "x" * 101}, {"nom": "x"}, [], "x"):
            response = http.post("/v1/projects", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        assert http.get("/v1/projects/99999999999999999999").status_code == 422


@pytest.mark.parametrize("when", ["300", "0.0", "2026-11-29T12:00:00", "2026-11-29"])
def test_times_outside_rfc3339_are_422_not_read_as_unix_or_naive_times(api, tenants, when):
    """schemathesis found `end=300` and `end=0.0` answered 200: pydantic read them as Unix times,
    while the OpenAPI document promises RFC 3339 date-times with an offset."""
    with api.client(tenants["bravo"]) as http:
        assert http.get("/v1/usage/summary", params={"end": when}).status_code == 422
        assert http.get("/v1/usage/summary", params={"end": "2026-11-29T12:00:00Z"}).status_code == 200
        response = http.post("/v1/usage", json={"project_id": 1, "provider": "openai", "model": "m",
                                                "cost_usd": "0.01", "occurred_at": when})
        assert response.status_code == 422, response.text


def test_over_the_tier_rate_is_429_with_retry_after(api, tenants):
    with api.client(tenants["slow"]) as http:
        statuses = [http.get("/v1/projects") for _ in range(40)]  # starter: burst 20 at 5/s
    refused = [r for r in statuses if r.status_code == 429]
    assert refused, [r.status_code for r in statuses]
    assert int(refused[0].headers["retry-after"]) >= 1
    assert refused[0].json()["violated-policies"] == ["burst"]


def test_suspended_tenant_is_403_and_resumed_is_served(api, platform):
    key = platform.tenant("sleepy-co", "pro")
    with api.client(key) as http:
        assert http.get("/v1/projects").status_code == 200
        with platform.database() as db, db.connection() as conn:
            lifecycle.suspend(conn, "sleepy-co", reason="test", actor="test")
        deadline = time.monotonic() + 5
        while http.get("/v1/projects").status_code != 403:
            assert time.monotonic() < deadline, "still served 5 s after the suspension"
            time.sleep(0.1)
        with platform.database() as db, db.connection() as conn:
            lifecycle.resume(conn, "sleepy-co", actor="test")
        deadline = time.monotonic() + 5
        while http.get("/v1/projects").status_code != 200:
            assert time.monotonic() < deadline, "not served 5 s after the resume"
            time.sleep(0.1)


def test_revoked_key_is_refused_within_5_seconds(api, platform):
    key = platform.tenant("leaky-co", "pro")
    with api.client(key) as http:
        assert http.get("/v1/projects").status_code == 200  # cached now
        with platform.database() as db, db.connection() as conn:
            keys.revoke(conn, keys.parse(key).key_id, actor="test")
        revoked_at = time.monotonic()
        while http.get("/v1/projects").status_code != 401:
            assert time.monotonic() - revoked_at < 5, "revoked key still served after 5 s"
            time.sleep(0.05)
