"""``python -m tenant_provisioner limits enforce|status`` on real PostgreSQL + Redis."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tenant_provisioner.runtime import compose
from tenant_provisioner.cli.main import app
from tenant_provisioner.limits import RateLimiter
from tenant_provisioner.limits.limiter import TenantKeys
from tenant_provisioner.tenants.provisioning import CreateRequest

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later

runner = CliRunner()


def _invoke(tenant_db, redis_server_url, *args: str):
    return runner.invoke(app, ["--database-url", tenant_db.url, "--provisioner-role", tenant_db.provisioner_role,
                               "limits", *args, "--redis-url", redis_server_url])


def test_enforce_then_status(tiny_tiers, tenant_db, db, tenant_ids, redis_server_url, redis_client, redis_prefix):
    tenant_id = tenant_ids("cli")
    with db.connection() as conn:
        lifecycle.create(conn, CreateRequest.parse({"tenant_id": tenant_id, "tier": "starter",
                                                    "admin_email": "a@acme.test"}), actor="test:limits")
    RateLimiter(redis_client, key_prefix=redis_prefix).acquire(tenant_id, "starter", cost=20)

    enforced = _invoke(tenant_db, redis_server_url, "enforce", "--tenant", tenant_id, "--notify", "print",
                       "--key-prefix", redis_prefix)
    assert enforced.exit_code == 0, enforced.output
    summary = json.loads(enforced.stdout.strip().splitlines()[-1])
    assert summary["tenants"] == 1 and summary["errors"] == []

    shown = _invoke(tenant_db, redis_server_url, "status", tenant_id, "--json", "--key-prefix", redis_prefix)
    assert shown.exit_code == 0, shown.output
    rows = {r["quantity"]: r for r in json.loads(shown.stdout)["rows"]}
    assert rows["api_requests"]["admitted"] == 20 and rows["api_requests"]["hard_limit"] == 100
    assert rows["api_requests"]["used_share"] == 0.2 and rows["seats"]["level"] == "ok"

    table = _invoke(tenant_db, redis_server_url, "status", "--key-prefix", redis_prefix)
    assert table.exit_code == 0 and tenant_id in table.stdout


def test_bad_tenant_id_and_unknown_tenant_exit_2(tenant_db, redis_server_url):
    assert _invoke(tenant_db, redis_server_url, "status", "Not_A_Tenant").exit_code == 2
    assert _invoke(tenant_db, redis_server_url, "status", "nobody-here").exit_code == 2


def test_aws_notifications_need_their_settings(tenant_db, redis_server_url, monkeypatch):
    monkeypatch.delenv("LIMITS_SENDER_EMAIL", raising=False)
    result = _invoke(tenant_db, redis_server_url, "enforce")
    assert result.exit_code == 2 and "LIMITS_SENDER_EMAIL" in result.stderr
    assert "--notify print" in result.stderr  # the way to run it locally


def _tenant_at(db, redis_client, redis_prefix, tenant_id: str, used: int) -> None:
    with db.connection() as conn:
        lifecycle.create(conn, CreateRequest.parse({"tenant_id": tenant_id, "tier": "starter",
                                                    "admin_email": "a@acme.test"}), actor="test:limits")
    RateLimiter(redis_client, key_prefix=redis_prefix).acquire(tenant_id, "starter")
    # Past the burst in one step: the period's counters as if `used` requests had been admitted.
    redis_client.hset(TenantKeys.of(tenant_id, redis_prefix).quota, mapping={"u": used, "a": used})


def test_printed_notices_keep_the_tenant_id(tiny_tiers, tenant_db, db, tenant_ids, redis_server_url, redis_client,
                                            redis_prefix):
    tenant_id = tenant_ids("delta")
    _tenant_at(db, redis_client, redis_prefix, tenant_id, 95)
    enforced = _invoke(tenant_db, redis_server_url, "enforce", "--tenant", tenant_id, "--notify", "print",
                       "--key-prefix", redis_prefix)
    assert enforced.exit_code == 0, enforced.output
    assert f"[{tenant_id}] API requests: warning (95% of starter limit)" in enforced.stderr


def test_status_and_enforce_use_the_limiter_key_prefix_from_the_environment(
        tiny_tiers, tenant_db, db, tenant_ids, redis_server_url, redis_client, redis_prefix, monkeypatch):
    tenant_id = tenant_ids("prefix")
    _tenant_at(db, redis_client, redis_prefix, tenant_id, 90)
    monkeypatch.setenv("LIMITER_KEY_PREFIX", redis_prefix)  # as `suspend` and the Lambdas read it
    assert _invoke(tenant_db, redis_server_url, "enforce", "--tenant", tenant_id, "--notify", "print").exit_code == 0
    shown = _invoke(tenant_db, redis_server_url, "status", tenant_id, "--json")
    rows = {r["quantity"]: r for r in json.loads(shown.stdout)["rows"]}
    assert rows["api_requests"]["admitted"] == 90 and rows["api_requests"]["level"] == "warning"


def test_status_table_never_cuts_ids_or_numbers_when_not_a_terminal(
        tiny_tiers, tenant_db, db, tenant_ids, redis_server_url, redis_client, redis_prefix):
    tenant_id = tenant_ids("a-long-tenant-name-for-tables")
    _tenant_at(db, redis_client, redis_prefix, tenant_id, 90)
    table = _invoke(tenant_db, redis_server_url, "status", tenant_id, "--key-prefix", redis_prefix).stdout
    assert tenant_id in table and "…" not in table and "api_requests" in table
