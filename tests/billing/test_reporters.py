"""Billing's post-cycle reporters, as the composition root hands them to the limits enforcer."""

from __future__ import annotations

import pytest

from tenant_provisioner.billing.reporters import PaymentGrace, UsageReport
from tenant_provisioner.errors import TransientError
from tenant_provisioner.runtime import compose
from tests.billing.support import create_tenant


def test_the_enforcer_gets_payment_grace_then_usage(db, client, settings):
    platform = compose.wire(database=db, billing=settings, stripe_client=client)
    grace, usage = platform.reporters()
    assert isinstance(grace, PaymentGrace) and grace.lifecycle is platform.lifecycle
    assert isinstance(usage, UsageReport) and usage.client is client and usage.settings is settings


@pytest.fixture()
def measured(conn, client, settings, synced):
    customer = create_tenant(conn, client, settings).outputs["billing"]["stripe_customer_id"]
    conn.execute("INSERT INTO control.tenant_usage (tenant_id, period_start, quantity, admitted, attempted)"
                 " VALUES ('acme-corp', date_trunc('month', now())::date, 'api_requests', 1500, 1600)")
    return customer


def test_usage_goes_to_stripe_after_each_cycle(fake_stripe, db, conn, client, settings, measured):
    for reporter in compose.wire(database=db, billing=settings, stripe_client=client).reporters():
        reporter(None, conn)
    assert fake_stripe.metered_total("saas_api_requests", measured) == 1500


def test_stripe_down_is_an_error_of_the_cycle_and_the_usage_waits(fake_stripe, conn, client, settings, measured):
    report = UsageReport(client, settings)
    fake_stripe.down()
    with pytest.raises(TransientError):
        report(None, conn)
    fake_stripe.down(False)
    report(None, conn)
    assert fake_stripe.metered_total("saas_api_requests", measured) == 1500


def test_no_key_skips_loudly(conn, capsys, settings):
    UsageReport(None, settings)(None, conn)
    assert "BILLING SKIPPED (usage report)" in capsys.readouterr().err


def test_configured_api_version_is_the_one_the_sdk_is_built_for():
    import stripe

    from stacks.config import ENVIRONMENTS, load_config

    for name in ENVIRONMENTS:
        assert load_config(name, account="111111111111", region="us-east-1").billing.api_version == stripe.api_version
