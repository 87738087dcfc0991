"""The Stripe provisioning step inside the real pipeline: retried signups converge on one
customer and one subscription, failures later in the pipeline clean Stripe up, tier changes
prorate, offboarding cancels."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import stripe

from tenant_provisioner.tenants import provisioning, records
from tenant_provisioner.runtime import compose
from tenant_provisioner.billing.accounts import Accounts, load_account
from tenant_provisioner.errors import ConfigError, TenantConflict, TransientError
from tenant_provisioner.tenants.provisioning import CreateRequest
from tenant_provisioner.tiers import load_tiers
from tests.billing.support import FAKE_KEY, create_tenant, run_concurrently

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later


class Boom(RuntimeError):
    pass


class FailingStep:
    """A later pipeline step that fails (secret store down, limiter unreachable, ...)."""

    name = "later"

    def __init__(self, times: int = 1) -> None:
        self.remaining = times

    def apply(self, ctx):
        if self.remaining:
            self.remaining -= 1
            raise Boom("later step failed")

    def undo(self, ctx):
        pass


def _request(tier: str = "pro") -> CreateRequest:
    return CreateRequest(tenant_id="acme-corp", tier=tier, admin_email="admin@acme.example", company_name="Acme")


def _create(conn, client, settings, *extra, tier: str = "pro"):
    return create_tenant(conn, client, settings, *extra, tier=tier)


def _assert_one_live(fake, tier_flat_price: str | None = None):
    customers = fake.live_customers(tenant_id="acme-corp")
    assert len(customers) == 1
    assert customers[0]["email"] == "admin@acme.example"
    assert customers[0]["metadata"] == {"tenant_id": "acme-corp", "admin_email": "admin@acme.example"}
    live = [s for s in fake.state.subscriptions.values() if s["status"] == "active"]
    assert len(live) == 1 and live[0]["customer"] == customers[0]["id"]
    if tier_flat_price:
        assert tier_flat_price in {i["price"]["id"] for i in live[0]["items"]["data"]}
    return customers[0], live[0]


def assert_calendar_month_periods(sub):
    """Renewals at 00:00:00 UTC on the 1st: Stripe takes an unset hour/minute/second from the signup time."""
    config = sub["billing_cycle_anchor_config"]
    assert (config["day_of_month"], config["hour"], config["minute"], config["second"]) == (1, 0, 0, 0)
    period_end = datetime.fromtimestamp(sub["items"]["data"][0]["current_period_end"], timezone.utc)
    assert (period_end.day, period_end.hour, period_end.minute, period_end.second) == (1, 0, 0, 0)


def test_signup_creates_customer_and_subscription_to_the_tier_prices(fake_stripe, client, settings, synced, conn):
    result = _create(conn, client, settings)
    customer, sub = _assert_one_live(fake_stripe)
    prices = {i["price"]["id"] for i in sub["items"]["data"]}
    assert prices == {synced.prices["pro"].flat, synced.prices["pro"].metered}
    assert sub["metadata"] == {"tenant_id": "acme-corp", "tier": "pro"}
    assert_calendar_month_periods(sub)
    assert result.outputs["billing"] == {"stripe_customer_id": customer["id"], "stripe_subscription_id": sub["id"]}
    account = load_account(conn, "acme-corp")
    assert (account.stripe_customer_id, account.stripe_subscription_id, account.tier) == (
        customer["id"], sub["id"], "pro")
    again = _create(conn, client, settings)  # same id + tier: same tenant, nothing new in Stripe
    assert again.created is False
    assert len(fake_stripe.state.customers) == 1 and len(fake_stripe.state.subscriptions) == 1


def test_starter_subscription_has_only_the_flat_price(fake_stripe, client, settings, synced, conn):
    _create(conn, client, settings, tier="starter")
    _, sub = _assert_one_live(fake_stripe)
    assert [i["price"]["id"] for i in sub["items"]["data"]] == [synced.prices["starter"].flat]


@pytest.mark.parametrize("fail", [
    ("POST", "^/v1/customers$"),
    ("POST", "^/v1/subscriptions$"),
    ("GET", "^/v1/prices$"),
])
def test_signup_retried_after_a_stripe_failure_converges(fake_stripe, client, settings, synced, conn, fail):
    fake_stripe.fail_next(*fail, times=2)  # the call and the SDK's retry
    with pytest.raises(TransientError):
        _create(conn, client, settings)
    assert fake_stripe.live_customers() == []  # cleaned up by the pipeline's undo
    assert not [s for s in fake_stripe.state.subscriptions.values() if s["status"] != "canceled"]
    assert records.all_tenants(conn) == []
    _create(conn, client, settings)
    _assert_one_live(fake_stripe, synced.prices["pro"].flat)


def test_a_later_step_failing_cancels_and_deletes_then_the_retry_starts_clean(fake_stripe, client, settings,
                                                                             synced, conn):
    later = FailingStep()
    with pytest.raises(Boom):
        _create(conn, client, settings, later)
    assert len(fake_stripe.state.customers) == 1 and fake_stripe.live_customers() == []
    assert [s["status"] for s in fake_stripe.state.subscriptions.values()] == ["canceled"]
    assert load_account(conn, "acme-corp").attempt == 1
    _create(conn, client, settings, later)
    _assert_one_live(fake_stripe)


@pytest.mark.parametrize("lost", ["^/v1/customers$", "^/v1/subscriptions$"])
def test_a_response_lost_on_the_network_is_replayed_not_repeated(fake_stripe, client, settings, synced, conn, lost):
    fake_stripe.lose_response_next("POST", lost)
    _create(conn, client, settings)
    _assert_one_live(fake_stripe)
    assert len(fake_stripe.state.customers) == 1 and len(fake_stripe.state.subscriptions) == 1


def test_a_killed_signup_is_finished_by_the_retry_with_the_same_objects(fake_stripe, client, settings, synced,
                                                                        conn):
    """Killed after Stripe made the customer but before our database heard of it (no undo runs)."""
    no_retry = stripe.StripeClient(FAKE_KEY, base_addresses={"api": fake_stripe.url}, max_network_retries=0)
    fake_stripe.lose_response_next("POST", "^/v1/customers$")
    with pytest.raises(TransientError):
        Accounts(no_retry, settings).ensure(conn, tenant_id="acme-corp", tier=load_tiers().get("pro"),
                                            admin_email="admin@acme.example", company_name="Acme")
    assert load_account(conn, "acme-corp").stripe_customer_id is None
    _create(conn, client, settings)
    _assert_one_live(fake_stripe)
    assert len(fake_stripe.state.customers) == 1  # the idempotency key found the first one


def test_retry_with_other_details_is_a_conflict_not_a_second_customer(fake_stripe, client, settings, synced, conn):
    accounts = Accounts(client, settings)
    accounts.ensure(conn, tenant_id="acme-corp", tier=load_tiers().get("pro"), admin_email="a@acme.example",
                    company_name=None)
    accounts_row = load_account(conn, "acme-corp")
    conn.execute("UPDATE control.billing_accounts SET stripe_customer_id = NULL WHERE tenant_id = 'acme-corp'")
    with pytest.raises(TenantConflict):
        accounts.ensure(conn, tenant_id="acme-corp", tier=load_tiers().get("pro"), admin_email="b@acme.example",
                        company_name=None)
    assert len(fake_stripe.state.customers) == 1 and accounts_row.attempt == 0


def test_tier_change_moves_prices_with_proration(fake_stripe, client, settings, synced, conn):
    _create(conn, client, settings, tier="starter")
    accounts = Accounts(client, settings)
    assert accounts.change_tier(conn, "acme-corp", load_tiers().get("business")) is True
    _, sub = _assert_one_live(fake_stripe)
    assert {i["price"]["id"] for i in sub["items"]["data"]} == {synced.prices["business"].flat,
                                                                synced.prices["business"].metered}
    update = [p for m, path, p in fake_stripe.state.requests
              if m == "POST" and path == f"/v1/subscriptions/{sub['id']}"]
    assert update[-1]["proration_behavior"] == "create_prorations"
    assert accounts.change_tier(conn, "acme-corp", load_tiers().get("business")) is False
    accounts.change_tier(conn, "acme-corp", load_tiers().get("pro"))
    _, sub = _assert_one_live(fake_stripe)
    assert {i["price"]["id"] for i in sub["items"]["data"]} == {synced.prices["pro"].flat,
                                                                synced.prices["pro"].metered}
    accounts.change_tier(conn, "acme-corp", load_tiers().get("starter"))
    _, sub = _assert_one_live(fake_stripe)
    assert [i["price"]["id"] for i in sub["items"]["data"]] == [synced.prices["starter"].flat]
    assert load_account(conn, "acme-corp").tier == "starter"


def test_offboarding_cancels_and_a_later_signup_gets_a_new_subscription(fake_stripe, client, settings, synced,
                                                                       conn):
    _create(conn, client, settings)
    accounts = Accounts(client, settings)
    sub_id = load_account(conn, "acme-corp").stripe_subscription_id
    assert accounts.cancel(conn, "acme-corp") is True
    assert fake_stripe.state.subscriptions[sub_id]["status"] == "canceled"
    cancel = [p for m, path, p in fake_stripe.state.requests if m == "DELETE" and path.endswith(sub_id)]
    assert cancel == [{"invoice_now": "true", "prorate": "false"}]
    assert accounts.cancel(conn, "acme-corp") is False
    accounts.ensure(conn, tenant_id="acme-corp", tier=load_tiers().get("pro"), admin_email="admin@acme.example",
                    company_name="Acme")
    _assert_one_live(fake_stripe)


def test_without_a_key_the_step_is_skipped_loudly(conn, capsys, tiny_tiers):
    result = lifecycle.create(conn, _request(), actor="test")   # the lifecycle of a process with no key
    assert result.outputs["billing"] == "skipped"
    assert "BILLING SKIPPED" in capsys.readouterr().err


def test_simultaneous_signups_of_one_id_make_one_customer(fake_stripe, db, client, settings, synced):
    def signup():
        with db.connection() as conn:
            create_tenant(conn, client, settings)

    assert not run_concurrently(signup, 6)
    _assert_one_live(fake_stripe)
    assert len(fake_stripe.state.customers) == 1 and len(fake_stripe.state.subscriptions) == 1


def test_signup_before_the_catalog_was_synced_fails_clearly_and_creates_nothing(fake_stripe, client, settings, conn,
                                                                               tiny_tiers):
    with pytest.raises(ConfigError, match="sync-catalog"):
        _create(conn, client, settings)
    assert fake_stripe.state.customers == {} and records.all_tenants(conn) == []


# --------------------------------------------- incomplete subscriptions (no payment method at signup)
def test_signup_without_a_card_gets_an_incomplete_subscription_and_retries_reuse_it(fake_stripe, client, settings,
                                                                                    synced, conn):
    fake_stripe.without_card_on_file()
    _create(conn, client, settings)
    (sub,) = fake_stripe.state.subscriptions.values()
    assert sub["status"] == "incomplete"
    assert records.require(conn, "acme-corp").state == "active"  # usable while the first invoice waits
    again = _create(conn, client, settings)  # the signup flow retries: same objects, nothing new
    assert again.created is False and len(fake_stripe.state.subscriptions) == 1
    fake_stripe.pay_first_invoice(sub["id"])
    _assert_one_live(fake_stripe, synced.prices["pro"].flat)


def test_signup_retried_after_the_incomplete_subscription_expired_gets_a_new_one(fake_stripe, client, settings,
                                                                                 synced, conn):
    fake_stripe.without_card_on_file()
    accounts = Accounts(client, settings)
    pro = load_tiers().get("pro")
    first = accounts.ensure(conn, tenant_id="acme-corp", tier=pro, admin_email="admin@acme.example",
                            company_name="Acme")
    fake_stripe.expire_incomplete(first.stripe_subscription_id)
    second = accounts.ensure(conn, tenant_id="acme-corp", tier=pro, admin_email="admin@acme.example",
                             company_name="Acme")
    assert second.stripe_subscription_id != first.stripe_subscription_id
    assert second.stripe_customer_id == first.stripe_customer_id
    assert fake_stripe.state.subscriptions[second.stripe_subscription_id]["status"] == "incomplete"


def test_tier_change_of_an_incomplete_subscription_replaces_it(fake_stripe, client, settings, synced, conn):
    fake_stripe.without_card_on_file()
    _create(conn, client, settings, tier="starter")
    old = load_account(conn, "acme-corp").stripe_subscription_id
    assert Accounts(client, settings).change_tier(conn, "acme-corp", load_tiers().get("business")) is True
    account = load_account(conn, "acme-corp")
    assert fake_stripe.state.subscriptions[old]["status"] == "canceled"
    new = fake_stripe.state.subscriptions[account.stripe_subscription_id]
    assert new["status"] == "incomplete" and account.tier == "business"
    assert {i["price"]["id"] for i in new["items"]["data"]} == {synced.prices["business"].flat,
                                                                synced.prices["business"].metered}
    assert [s["id"] for s in fake_stripe.state.subscriptions.values() if s["status"] != "canceled"] == [new["id"]]
