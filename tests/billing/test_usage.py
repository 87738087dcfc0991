"""Usage reporting: each admitted request reaches Stripe exactly once, whatever fails when."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import pytest
import stripe
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tenant_provisioner.billing import usage
from tenant_provisioner.billing.usage import report_usage
from tenant_provisioner.errors import InvalidInput
from tests.billing.support import FAKE_KEY, create_tenant, run_concurrently

NOW = datetime.now(timezone.utc).replace(microsecond=0)
PERIOD = NOW.date().replace(day=1)


@pytest.fixture()
def tenant(conn, client, settings, synced):
    return create_tenant(conn, client, settings).outputs["billing"]["stripe_customer_id"]


def measure(conn, admitted: int, *, period: date = PERIOD, at: datetime = NOW, tenant_id: str = "acme-corp"):
    """What the enforcer does each cycle: the period's running total of admitted requests."""
    conn.execute(
        "INSERT INTO control.tenant_usage (tenant_id, period_start, quantity, admitted, attempted, measured_at)"
        " VALUES (%s, %s, 'api_requests', %s, %s, %s) ON CONFLICT (tenant_id, period_start, quantity)"
        " DO UPDATE SET admitted = EXCLUDED.admitted, attempted = EXCLUDED.attempted,"
        " measured_at = EXCLUDED.measured_at", (tenant_id, period, admitted, admitted, at))


def cursor(conn):
    return conn.execute("SELECT reported, pending_to FROM control.billing_usage_cursor").fetchone()


def billed(fake, customer):
    return fake.metered_total("saas_api_requests", customer)


def test_reports_growth_since_the_last_report(fake_stripe, client, settings, conn, tenant):
    measure(conn, 120)
    assert report_usage(conn, client, settings).units == 120
    measure(conn, 300)
    result = report_usage(conn, client, settings)
    assert (result.sent, result.units) == (1, 180)
    assert billed(fake_stripe, tenant) == 300
    assert [e["identifier"] for e in fake_stripe.state.meter_events] == [
        f"acme-corp:{PERIOD}:api_requests:0-120", f"acme-corp:{PERIOD}:api_requests:120-300"]
    assert cursor(conn) == (300, None)


class Crash(BaseException):
    """The process dies (Lambda timeout, kill): nothing after this point runs."""


def test_reporting_the_same_interval_twice_counts_once(fake_stripe, client, settings, conn, tenant, monkeypatch):
    measure(conn, 500)
    real_advance = usage._advance

    def crash(*args):
        raise Crash()

    monkeypatch.setattr(usage, "_advance", crash)  # dies after Stripe accepted, before the cursor moved
    with pytest.raises(Crash):
        report_usage(conn, client, settings)
    monkeypatch.setattr(usage, "_advance", real_advance)
    assert cursor(conn) == (0, 500)
    measure(conn, 650)  # more usage arrived meanwhile: the frozen interval is re-sent verbatim first
    result = report_usage(conn, client, settings)
    assert (result.duplicates, result.sent, result.units) == (1, 1, 650)
    assert billed(fake_stripe, tenant) == 650
    assert report_usage(conn, client, settings).sent == 0  # nothing new: nothing sent


def test_a_lost_response_does_not_double_count(fake_stripe, settings, conn, tenant):
    no_retry = stripe.StripeClient(FAKE_KEY, base_addresses={"api": fake_stripe.url}, max_network_retries=0)
    measure(conn, 100)
    fake_stripe.lose_response_next("POST", "^/v1/billing/meter_events$")
    result = report_usage(conn, no_retry, settings)
    assert result.stripe_unavailable and cursor(conn) == (0, 100)  # frozen, not advanced
    measure(conn, 180)
    result = report_usage(conn, no_retry, settings)
    assert (result.duplicates, result.sent) == (1, 1)
    assert billed(fake_stripe, tenant) == 180 and cursor(conn) == (180, None)


def test_stripe_down_loses_nothing(fake_stripe, client, settings, conn, tenant):
    measure(conn, 40)
    fake_stripe.down()
    for admitted in (70, 90):
        result = report_usage(conn, client, settings)
        assert result.stripe_unavailable and result.deferred
        measure(conn, admitted)
    assert billed(fake_stripe, tenant) == 0 and cursor(conn) == (0, 40)
    fake_stripe.down(False)
    result = report_usage(conn, client, settings)
    assert result.units == 90 and not result.deferred
    assert billed(fake_stripe, tenant) == 90


def test_overlapping_runs_count_once(fake_stripe, db, client, settings, conn, tenant):
    errors = []

    def run():
        try:
            with db.connection() as other:
                for admitted in range(10, 210, 10):
                    report_usage(other, client, settings)
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for admitted in range(10, 210, 10):
        measure(conn, admitted)
        if admitted == 10:
            for t in threads:
                t.start()
    for t in threads:
        t.join()
    report_usage(conn, client, settings)
    assert not errors
    assert billed(fake_stripe, tenant) == 200 and cursor(conn) == (200, None)


def test_usage_is_dated_inside_its_period(fake_stripe, client, settings, conn, tenant):
    previous = (PERIOD - timedelta(days=1)).replace(day=1)
    late = datetime.combine(PERIOD, datetime.min.time(), timezone.utc) + timedelta(minutes=3)
    measure(conn, 75, period=previous, at=late)  # last month's total, measured just after midnight
    report_usage(conn, client, settings)
    (event,) = fake_stripe.state.meter_events
    assert event["timestamp"] == int(late.timestamp()) - 181  # 23:59:59 on the period's last day


def test_usage_stripe_refuses_for_good_is_parked_once_then_resolved_by_an_operator(fake_stripe, client, settings,
                                                                                    conn, tenant):
    measure(conn, 10, period=date(2020, 1, 1), at=datetime(2020, 1, 15, tzinfo=timezone.utc))
    measure(conn, 25)
    result = report_usage(conn, client, settings)
    old = "acme-corp:2020-01-01:api_requests:0-10"
    assert result.failed == [old] and result.units == 25  # the current period still went through
    assert report_usage(conn, client, settings).failed == []  # parked: not an error every cycle
    (row,) = usage.parked(conn)
    assert (row["identifier"], row["units"]) == (old, 10) and "35 days" in row["failed_reason"]
    assert usage.retry_parked(conn, actor="test") == 1
    assert report_usage(conn, client, settings).failed == [old]  # still too old: parked again
    usage.mark_billed(conn, old, actor="test")  # billed by hand
    assert usage.parked(conn) == []
    assert conn.execute("SELECT reported FROM control.billing_usage_cursor WHERE period_start = '2020-01-01'"
                        ).fetchone() == (10,)
    with pytest.raises(InvalidInput):
        usage.mark_billed(conn, old, actor="test")
    assert billed(fake_stripe, tenant) == 25


def test_tenants_without_a_stripe_customer_are_not_reported(fake_stripe, client, settings, conn, tenant):
    conn.execute("DELETE FROM control.billing_accounts")
    measure(conn, 10)
    assert report_usage(conn, client, settings).sent == 0


# --- property: whatever happens between cycles, Stripe ends with exactly the admitted total -------

STEPS = st.lists(st.one_of(
    st.tuples(st.just("measure"), st.integers(min_value=1, max_value=500)),
    st.tuples(st.sampled_from(["report", "crash_after_send", "lost_response", "stripe_down", "stripe_up"]),
              st.just(0)),
), min_size=1, max_size=12)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_usage_is_billed_exactly_once_whatever_fails(fake_stripe, settings, conn, tenant, monkeypatch, steps):
    conn.execute("DELETE FROM control.billing_usage_cursor")
    conn.execute("DELETE FROM control.tenant_usage")
    fake_stripe.state.meter_events.clear()
    fake_stripe.down(False)
    no_retry = stripe.StripeClient(FAKE_KEY, base_addresses={"api": fake_stripe.url}, max_network_retries=0)
    admitted = 0
    for action, amount in steps:
        if action == "measure":
            admitted += amount
            measure(conn, admitted)
        elif action in ("stripe_down", "stripe_up"):
            fake_stripe.down(action == "stripe_down")
        elif action == "crash_after_send":
            with monkeypatch.context() as patch:
                patch.setattr(usage, "_advance", _crash)
                try:
                    report_usage(conn, no_retry, settings)
                except Crash:
                    pass
        else:
            if action == "lost_response":
                fake_stripe.lose_response_next("POST", "^/v1/billing/meter_events$")
            report_usage(conn, no_retry, settings)
        reported, pending_to = cursor(conn) or (0, None)
        assert billed(fake_stripe, tenant) in (reported, pending_to)  # never more than one frozen interval ahead
    fake_stripe.down(False)
    fake_stripe.clear_faults()
    report_usage(conn, no_retry, settings)
    assert billed(fake_stripe, tenant) == admitted
    assert cursor(conn) in (None, (admitted, None))


def _crash(*args):
    raise Crash()


def test_concurrent_runs_over_many_tenants_neither_deadlock_nor_double_count(fake_stripe, db, client, settings, conn,
                                                                             synced):
    customers = {}
    for i in range(12):
        tenant_id = f"tenant-{i:02d}"
        customers[tenant_id] = create_tenant(conn, client, settings, tenant_id=tenant_id) \
            .outputs["billing"]["stripe_customer_id"]
        measure(conn, 100 + i, tenant_id=tenant_id)

    def run():
        with db.connection() as other:
            report_usage(other, client, settings)

    assert not run_concurrently(run, 3)
    assert {t: billed(fake_stripe, c) for t, c in customers.items()} == {
        f"tenant-{i:02d}": 100 + i for i in range(12)}


def test_usage_of_a_tenant_with_an_incomplete_subscription_is_reported(fake_stripe, client, settings, conn,
                                                                       synced):
    """Stripe meters per customer: usage while the first invoice waits is billed once it is paid."""
    fake_stripe.without_card_on_file()
    customer = create_tenant(conn, client, settings).outputs["billing"]["stripe_customer_id"]
    assert [s["status"] for s in fake_stripe.subscriptions_of(customer)] == ["incomplete"]
    measure(conn, 250)
    assert report_usage(conn, client, settings).units == 250
    assert billed(fake_stripe, customer) == 250 and cursor(conn) == (250, None)
