"""Billing's post-cycle reporters, as the limits enforcer finds and runs them."""

from __future__ import annotations

import pytest

from tenant_provisioner.billing import reporters
from tenant_provisioner.errors import TransientError
from tenant_provisioner.limits.enforcer import registered_reporters
from tests.billing.support import create_tenant


def test_the_enforcer_finds_billings_reporters():
    assert set(reporters.post_cycle_reporters()) <= set(registered_reporters())


@pytest.fixture()
def measured(stripe_env, conn, client, settings, synced):
    customer = create_tenant(conn, client, settings).outputs["billing"]["stripe_customer_id"]
    conn.execute("INSERT INTO control.tenant_usage (tenant_id, period_start, quantity, admitted, attempted)"
                 " VALUES ('acme-corp', date_trunc('month', now())::date, 'api_requests', 1500, 1600)")
    return customer


def test_usage_goes_to_stripe_after_each_cycle(fake_stripe, conn, measured):
    for reporter in reporters.post_cycle_reporters():
        reporter(None, conn)
    assert fake_stripe.metered_total("saas_api_requests", measured) == 1500


def test_stripe_down_is_an_error_of_the_cycle_and_the_usage_waits(fake_stripe, conn, measured):
    fake_stripe.down()
    with pytest.raises(TransientError):
        reporters.send_usage(None, conn)
    fake_stripe.down(False)
    reporters.send_usage(None, conn)
    assert fake_stripe.metered_total("saas_api_requests", measured) == 1500


def test_no_key_skips_loudly(monkeypatch, conn, capsys, db):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("STRIPE_API_KEY_SECRET_ID", raising=False)
    reporters.send_usage(None, conn)
    assert "BILLING SKIPPED (usage report)" in capsys.readouterr().err


def test_configured_api_version_is_the_one_the_sdk_is_built_for():
    import stripe

    from stacks.config import BillingConfig

    assert BillingConfig().stripe_api_version == stripe.api_version
