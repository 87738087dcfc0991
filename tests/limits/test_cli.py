"""``python -m tenant_provisioner limits enforce|status`` on real PostgreSQL + Redis."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tenant_provisioner.tenants import lifecycle
from tenant_provisioner.cli.main import app
from tenant_provisioner.limits import RateLimiter
from tenant_provisioner.tenants.provisioning import CreateRequest

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
