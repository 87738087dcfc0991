"""Catalog sync from the tiers file: the right objects, idempotent, replaced (never duplicated) on change."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tenant_provisioner.billing.catalog import sync_catalog, tier_prices
from tenant_provisioner.errors import ConfigError, TransientError
from tenant_provisioner.tiers import load_tiers


def _active_prices(fake):
    return [p for p in fake.state.prices.values() if p["active"]]


def test_sync_creates_meter_products_and_prices(fake_stripe, client, settings, tiny_tiers):
    result = sync_catalog(client, load_tiers(), settings)
    assert len(fake_stripe.state.meters) == 1
    meter = next(iter(fake_stripe.state.meters.values()))
    assert meter["event_name"] == "saas_api_requests" and meter["default_aggregation"]["formula"] == "sum"
    assert set(fake_stripe.state.products) == {"saas_starter", "saas_pro", "saas_business"}
    by_key = {p["lookup_key"]: p for p in _active_prices(fake_stripe)}
    assert set(by_key) == {"saas_starter_monthly", "saas_pro_monthly", "saas_business_monthly",
                           "saas_pro_api_requests", "saas_business_api_requests"}
    assert by_key["saas_pro_monthly"]["unit_amount"] == 4900
    assert by_key["saas_starter_monthly"]["recurring"]["usage_type"] == "licensed"
    metered = by_key["saas_pro_api_requests"]
    assert metered["recurring"] == {"interval": "month", "interval_count": 1, "usage_type": "metered",
                                    "meter": meter["id"], "trial_period_days": None}
    # Tiny pro tier: 1,000 included, then $0.02 per 1,000 = 0.002 cents per request.
    assert [(t["up_to"], Decimal(t["unit_amount_decimal"])) for t in metered["_tiers"]] == [
        (1000, Decimal("0")), (None, Decimal("0.002"))]
    assert result.prices["starter"].metered is None
    assert result.prices["pro"].metered == metered["id"]


def test_sync_twice_changes_nothing(fake_stripe, client, settings, tiny_tiers):
    first = sync_catalog(client, load_tiers(), settings)
    before = (dict(fake_stripe.state.products), dict(fake_stripe.state.prices), dict(fake_stripe.state.meters))
    second = sync_catalog(client, load_tiers(), settings)
    assert second.actions == []
    assert second.prices == first.prices
    assert (fake_stripe.state.products, fake_stripe.state.prices, fake_stripe.state.meters) == before


def test_changed_price_replaces_the_old_one_and_keeps_the_lookup_key(fake_stripe, client, settings, tmp_path,
                                                                     tiny_tiers, monkeypatch):
    sync_catalog(client, load_tiers(), settings)
    old = tier_prices(client, settings, load_tiers().get("pro"))
    changed = tmp_path / "tiers.yaml"
    changed.write_text(tiny_tiers.read_text().replace("price_usd_per_month: 49", "price_usd_per_month: 59")
                       .replace("overage_usd_per_1000: 0.02", "overage_usd_per_1000: 0.03"))
    monkeypatch.setenv("TIERS_FILE", str(changed))
    result = sync_catalog(client, load_tiers(), settings)
    assert len(result.actions) == 4  # two new prices, two archived
    new = tier_prices(client, settings, load_tiers().get("pro"))
    assert new.flat != old.flat and new.metered != old.metered
    assert fake_stripe.state.prices[old.flat]["active"] is False
    assert fake_stripe.state.prices[new.flat]["unit_amount"] == 5900
    assert len([p for p in _active_prices(fake_stripe) if p["lookup_key"] == "saas_pro_monthly"]) == 1
    assert sync_catalog(client, load_tiers(), settings).actions == []


def test_dry_run_plans_without_writing(fake_stripe, client, settings, tiny_tiers):
    plan = sync_catalog(client, load_tiers(), settings, dry_run=True)
    assert plan.dry_run and len(plan.actions) == 1 + 3 + 5  # meter, products, prices
    assert any("create price saas_pro_api_requests" in a for a in plan.actions)
    assert not fake_stripe.state.products and not fake_stripe.state.prices and not fake_stripe.state.meters
    assert fake_stripe.count_requests("POST", ".") == 0


def test_dry_run_without_a_key_plans_everything(settings, tiny_tiers):
    plan = sync_catalog(None, load_tiers(), settings, dry_run=True)
    assert len(plan.actions) == 9
    with pytest.raises(ConfigError):
        sync_catalog(None, load_tiers(), settings)


def test_sync_interrupted_midway_converges_without_duplicates(fake_stripe, client, settings, tiny_tiers):
    fake_stripe.fail_next("POST", "^/v1/prices$", times=2)  # the first create and its SDK retry fail
    with pytest.raises(TransientError):
        sync_catalog(client, load_tiers(), settings)
    fake_stripe.lose_response_next("POST", "^/v1/prices$")  # done by Stripe, answer lost, replayed on retry
    sync_catalog(client, load_tiers(), settings)
    keys = [p["lookup_key"] for p in fake_stripe.state.prices.values()]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 5
    assert len(fake_stripe.state.meters) == 1 and len(fake_stripe.state.products) == 3


def test_tier_prices_says_when_the_catalog_was_never_synced(client, settings, tiny_tiers):
    with pytest.raises(ConfigError, match="sync-catalog"):
        tier_prices(client, settings, load_tiers().get("pro"))


def test_price_reverted_within_the_idempotency_window_gets_a_live_price(fake_stripe, client, settings, tmp_path,
                                                                        tiny_tiers, monkeypatch):
    """A → B → A in one day: the second A is a new price, not Stripe's replay of the archived first one."""
    sync_catalog(client, load_tiers(), settings)
    first = tier_prices(client, settings, load_tiers().get("pro"))
    changed = tmp_path / "tiers.yaml"
    changed.write_text(tiny_tiers.read_text().replace("price_usd_per_month: 49", "price_usd_per_month: 59"))
    monkeypatch.setenv("TIERS_FILE", str(changed))
    sync_catalog(client, load_tiers(), settings)
    monkeypatch.setenv("TIERS_FILE", str(tiny_tiers))
    sync_catalog(client, load_tiers(), settings)
    reverted = tier_prices(client, settings, load_tiers().get("pro"))  # raised ConfigError before the fix
    price = fake_stripe.state.prices[reverted.flat]
    assert reverted.flat != first.flat and price["active"] and price["unit_amount"] == 4900
    assert sync_catalog(client, load_tiers(), settings).actions == []  # converged: no loop
