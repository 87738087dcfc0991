"""The ``billing`` CLI sub-app, run as operators run it (typer's runner, real database, fake Stripe)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tenant_provisioner.tenants import records
from tenant_provisioner.cli.main import app
from tests.billing.support import FAKE_KEY, create_tenant

runner = CliRunner()


def run(*args, control_url=None):
    root = ["--database-url", control_url] if control_url else []
    return runner.invoke(app, [*root, "billing", *args])


def test_sync_catalog_dry_run_then_real_then_nothing_to_do(stripe_env, fake_stripe, tiny_tiers):
    plan = run("sync-catalog", "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert "would: create product saas_pro (Pro)" in plan.output and not fake_stripe.state.products
    done = run("sync-catalog")
    assert done.exit_code == 0 and "did: create price saas_business_api_requests" in done.output
    again = run("sync-catalog")
    assert "catalog already matches the tiers file" in again.output
    assert json.loads(again.output.strip().splitlines()[-1])["actions"] == 0


def test_sync_catalog_without_a_key_says_so_and_fails(monkeypatch, tiny_tiers):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("STRIPE_API_KEY_SECRET_ID", raising=False)
    result = run("sync-catalog")
    assert result.exit_code == 2 and "BILLING SKIPPED" in result.output


def test_tenant_cli_tier_change_and_offboarding_move_the_subscription(stripe_env, fake_stripe, control_url, conn,
                                                                      client, settings, synced, tmp_path):
    create_tenant(conn, client, settings)
    changed = runner.invoke(app, ["--database-url", control_url, "change-tier", "acme-corp", "--tier", "business"])
    assert changed.exit_code == 0, changed.output
    assert records.require(conn, "acme-corp").tier == "business"
    (sub,) = fake_stripe.state.subscriptions.values()
    assert {i["price"]["id"] for i in sub["items"]["data"]} == {synced.prices["business"].flat,
                                                                synced.prices["business"].metered}
    status = run("status", "acme-corp", "--json", control_url=control_url)
    (account,) = json.loads(status.output)["accounts"]
    assert (account["tier"], account["payment_state"], account["state"]) == ("business", "ok", "active")
    gone = runner.invoke(app, ["--database-url", control_url, "offboard", "acme-corp",
                               "--export-dir", str(tmp_path)])
    assert gone.exit_code == 0, gone.output
    assert sub["status"] == "canceled"


def test_stripe_down_blocks_the_tier_change_and_nothing_changes(stripe_env, fake_stripe, control_url, conn, client,
                                                               settings, synced):
    create_tenant(conn, client, settings)
    fake_stripe.down()
    changed = runner.invoke(app, ["--database-url", control_url, "change-tier", "acme-corp", "--tier", "business"])
    assert changed.exit_code == 1 and "Stripe unavailable" in changed.output
    fake_stripe.down(False)
    assert records.require(conn, "acme-corp").tier == "pro"
    (sub,) = fake_stripe.state.subscriptions.values()
    assert synced.prices["pro"].flat in {i["price"]["id"] for i in sub["items"]["data"]}


@pytest.mark.parametrize("args", [["status", "Not A Slug"],
                                  ["report-usage", "--tenant", "x"]])
def test_bad_input_exits_2_and_changes_nothing(stripe_env, fake_stripe, control_url, db, args):
    result = run(*args, control_url=control_url)
    assert result.exit_code == 2, result.output
    assert fake_stripe.count_requests("POST", ".") == 0


def test_report_usage_and_enforce_grace(stripe_env, fake_stripe, control_url, conn, client, settings, synced):
    create_tenant(conn, client, settings)
    conn.execute("INSERT INTO control.tenant_usage (tenant_id, period_start, quantity, admitted, attempted)"
                 " VALUES ('acme-corp', date_trunc('month', now())::date, 'api_requests', 42, 42)")
    reported = run("report-usage", control_url=control_url)
    assert reported.exit_code == 0 and json.loads(reported.output)["units"] == 42
    graced = run("enforce-grace", control_url=control_url)
    assert json.loads(graced.output) == {"suspended": [], "skipped": []}


def test_reconcile_compares_our_reports_with_stripes_summaries(stripe_env, fake_stripe, control_url, conn, client,
                                                               settings, synced):
    create_tenant(conn, client, settings)
    conn.execute("INSERT INTO control.tenant_usage (tenant_id, period_start, quantity, admitted, attempted)"
                 " VALUES ('acme-corp', date_trunc('month', now())::date, 'api_requests', 70, 70)")
    assert run("report-usage", control_url=control_url).exit_code == 0
    ok = run("reconcile", control_url=control_url)
    assert ok.exit_code == 0, ok.output
    (row,) = json.loads(ok.output)
    assert (row["measured"], row["reported"], row["stripe"], row["matches"]) == (70, 70, 70, True)
    fake_stripe.state.meter_events.clear()  # Stripe lost them (or someone reported to another account)
    assert run("reconcile", control_url=control_url).exit_code == 1
    assert run("reconcile", "--period", "2026-13", control_url=control_url).exit_code == 2


def test_parked_usage_is_listed_and_marked_billed(stripe_env, fake_stripe, control_url, conn, client, settings, synced):
    create_tenant(conn, client, settings)
    conn.execute("INSERT INTO control.tenant_usage (tenant_id, period_start, quantity, admitted, attempted, measured_at)"
                 " VALUES ('acme-corp', '2020-01-01', 'api_requests', 9, 9, '2020-01-20')")
    assert run("report-usage", control_url=control_url).exit_code == 1
    (row,) = json.loads(run("usage-failures", control_url=control_url).output)
    assert row["identifier"] == "acme-corp:2020-01-01:api_requests:0-9"
    marked = run("mark-billed", row["identifier"], control_url=control_url)
    assert marked.exit_code == 0, marked.output
    assert json.loads(run("usage-failures", control_url=control_url).output) == []
    assert run("mark-billed", "nope", control_url=control_url).exit_code == 2


def test_tenants_created_without_billing_can_be_attached_and_status_answers_for_all(
        stripe_env, fake_stripe, control_url, conn, synced, tiny_tiers, monkeypatch):
    monkeypatch.delenv("STRIPE_API_KEY")  # billing skipped at signup (local work, a missing key)
    for tenant_id in ("unbilled-co", "other-co"):
        created = runner.invoke(app, ["--database-url", control_url, "create", tenant_id, "--tier", "pro",
                                      "--admin-email", "it@unbilled.example", "--name", "Unbilled"])
        assert created.exit_code == 0, created.output
    before = run("status", "unbilled-co", "--json", control_url=control_url)
    assert before.exit_code == 0, before.output  # was "tenant does not exist"
    (account,) = json.loads(before.stdout)["accounts"]
    assert (account["payment_state"], account["stripe_customer_id"]) == ("not billed", None)
    listed = json.loads(run("status", "--json", control_url=control_url).stdout)["accounts"]
    assert [a["tenant_id"] for a in listed] == ["other-co", "unbilled-co"]

    monkeypatch.setenv("STRIPE_API_KEY", FAKE_KEY)
    attached = run("attach", "unbilled-co", control_url=control_url)
    assert attached.exit_code == 0, attached.output
    (result,) = json.loads(attached.stdout)
    assert result["attached"] is True
    (customer,) = fake_stripe.live_customers(tenant_id="unbilled-co")
    assert customer["email"] == "it@unbilled.example" and customer["name"] == "Unbilled"
    (sub,) = fake_stripe.subscriptions_of(customer["id"])
    assert {i["price"]["id"] for i in sub["items"]["data"]} == {synced.prices["pro"].flat,
                                                                synced.prices["pro"].metered}
    again = json.loads(run("attach", "unbilled-co", control_url=control_url).stdout)
    assert again[0]["attached"] is False and len(fake_stripe.state.subscriptions) == 1  # idempotent

    rest = json.loads(run("attach", "--all-unbilled", control_url=control_url).stdout)
    assert [(r["tenant_id"], r["attached"]) for r in rest] == [("other-co", True)]
    states = {a["tenant_id"]: a["payment_state"]
              for a in json.loads(run("status", "--json", control_url=control_url).stdout)["accounts"]}
    assert states == {"other-co": "ok", "unbilled-co": "ok"}
    table = run("status", control_url=control_url).stdout
    assert sub["id"] in table and customer["id"] in table  # ids never cut, whatever the width
    assert run("attach", control_url=control_url).exit_code == 2
    assert run("attach", "nobody-here", control_url=control_url).exit_code == 2
