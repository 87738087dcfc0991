"""Stripe catalog from the tiers file: one meter, and per tier one product, a flat monthly price
and (for tiers with overage) a metered graduated price on the API-request meter.

Idempotent by construction: products have fixed ids (``<prefix>_<tier>``), prices are found by
lookup key (``<prefix>_<tier>_monthly`` / ``<prefix>_<tier>_api_requests``), the meter by its
event name. A price whose amounts no longer match the tiers file is replaced (Stripe prices are
immutable): the new price takes over the lookup key (``transfer_lookup_key``) and the old one is
archived; existing subscriptions keep their old price until their tier is changed. Every create
carries an idempotency key derived from what it creates (and, for a price, what it replaces), so a sync retried after a failure never
makes a duplicate. ``dry_run`` reads Stripe (or nothing, without a key) and returns the plan.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import stripe

from tenant_provisioner.billing.settings import BillingSettings, translate, unless_missing
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.tiers import Tier, TierCatalog

FLAT = "flat"
METERED = "metered"


@dataclass(frozen=True)
class PriceSpec:
    """What one price must look like, in Stripe's parameter shape."""

    tier: str
    kind: str                       # FLAT or METERED
    lookup_key: str
    params: dict[str, Any]

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.params, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TierPrices:
    flat: str
    metered: str | None


@dataclass
class SyncResult:
    """The actions taken (or, in a dry run, planned) and the resulting price ids per tier."""

    dry_run: bool
    actions: list[str] = field(default_factory=list)
    prices: dict[str, TierPrices] = field(default_factory=dict)
    meter_id: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def _decimal_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def product_id(settings: BillingSettings, tier: str) -> str:
    return f"{settings.catalog_prefix}_{tier}"


def lookup_key(settings: BillingSettings, tier: str, kind: str) -> str:
    return f"{settings.catalog_prefix}_{tier}_{'monthly' if kind == FLAT else 'api_requests'}"


def price_specs(settings: BillingSettings, tier: Tier, currency: str, meter_id: str) -> list[PriceSpec]:
    """The flat monthly price and, with overage, the graduated metered price (included units free)."""
    metadata = {"tier": tier.name, "catalog": settings.catalog_prefix}
    cents = Decimal(str(tier.price_usd_per_month)) * 100
    if cents != cents.to_integral_value():
        raise ConfigError(f"tier {tier.name}: price_usd_per_month must be whole cents")
    specs = [PriceSpec(tier.name, FLAT, lookup_key(settings, tier.name, FLAT), {
        "currency": currency, "unit_amount": int(cents), "nickname": f"{tier.display_name} monthly",
        "recurring": {"interval": "month", "usage_type": "licensed"},
        "metadata": {**metadata, "kind": FLAT},
    })]
    quota = tier.api_requests
    if quota.has_overage:
        per_request_cents = Decimal(str(quota.overage_usd_per_1000)) * 100 / 1000
        specs.append(PriceSpec(tier.name, METERED, lookup_key(settings, tier.name, METERED), {
            "currency": currency, "billing_scheme": "tiered", "tiers_mode": "graduated",
            "nickname": f"{tier.display_name} API requests above {quota.included:,}",
            "tiers": [{"up_to": quota.included, "unit_amount_decimal": "0"},
                      {"up_to": "inf", "unit_amount_decimal": _decimal_text(per_request_cents)}],
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
            "metadata": {**metadata, "kind": METERED},
        }))
    return specs


def _matches(existing: Any, spec: PriceSpec) -> bool:
    """Whether an existing Stripe price already bills exactly what `spec` asks for."""
    data = existing.to_dict()
    recurring = data.get("recurring") or {}
    wanted = spec.params
    if not data.get("active") or data.get("currency") != wanted["currency"]:
        return False
    if recurring.get("interval") != "month" or recurring.get("usage_type") != wanted["recurring"]["usage_type"]:
        return False
    if spec.kind == FLAT:
        return data.get("billing_scheme") == "per_unit" and data.get("unit_amount") == wanted["unit_amount"]
    if recurring.get("meter") != wanted["recurring"]["meter"] or data.get("tiers_mode") != "graduated":
        return False
    have = [(t.get("up_to"), Decimal(str(t.get("unit_amount_decimal") or 0))) for t in data.get("tiers") or []]
    want = [(None if t["up_to"] == "inf" else t["up_to"], Decimal(t["unit_amount_decimal"]))
            for t in wanted["tiers"]]
    return have == want


class _Sync:
    """One sync run: reads current state, then creates/updates only what differs."""

    def __init__(self, client: stripe.StripeClient | None, settings: BillingSettings, dry_run: bool) -> None:
        self.client = client
        self.settings = settings
        self.result = SyncResult(dry_run=dry_run)

    def act(self, description: str, call: Callable[[], Any], placeholder: str) -> str:
        """Record an action; run it unless dry-running. Returns the id of what it made or changed."""
        self.result.actions.append(description)
        if self.result.dry_run:
            return placeholder
        try:
            return call().id
        except stripe.StripeError as exc:
            raise translate(exc, description) from exc

    def read(self, description: str, call: Callable[[], Any]) -> Any:
        """What Stripe has (None if nothing, or no client: a dry run plans against an empty account)."""
        return None if self.client is None else unless_missing(description, call)

    def meter(self) -> str:
        event_name = self.settings.meter_event_name
        meters = self.read("listing meters", lambda: self.client.v1.billing.meters.list(
            params={"status": "active", "limit": 100}))
        existing = next((m for m in (meters.auto_paging_iter() if meters else []) if m.event_name == event_name),
                        None)
        if existing is not None:
            if existing.default_aggregation.formula != "sum":
                raise ConfigError(f"Stripe meter {existing.id} ({event_name}) aggregates with "
                                  f"{existing.default_aggregation.formula!r}, not 'sum'; deactivate it in Stripe "
                                  "and sync again")
            return existing.id
        params = {"display_name": "API requests", "event_name": event_name,
                  "default_aggregation": {"formula": "sum"},
                  "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
                  "value_settings": {"event_payload_key": "value"}}
        return self.act(f"create meter {event_name} (sum of payload.value per customer)",
                        lambda: self.client.v1.billing.meters.create(
                            params=params, options={"idempotency_key": f"catalog:meter:{event_name}"}),
                        "<new meter>")

    def product(self, tier: Tier) -> str:
        pid = product_id(self.settings, tier.name)
        wanted = {"name": tier.display_name, "metadata": {"tier": tier.name, "catalog": self.settings.catalog_prefix}}
        existing = self.read(f"reading product {pid}", lambda: self.client.v1.products.retrieve(pid))
        if existing is None:
            return self.act(f"create product {pid} ({tier.display_name})", lambda: self.client.v1.products.create(
                params={"id": pid, **wanted}, options={"idempotency_key": f"catalog:product:{pid}"}), pid)
        metadata = existing.metadata.to_dict() if existing.metadata else {}
        if (existing.name != tier.display_name or not existing.active
                or any(metadata.get(k) != v for k, v in wanted["metadata"].items())):
            self.act(f"update product {pid} (name/metadata/active)", lambda: self.client.v1.products.update(
                pid, params={**wanted, "active": True}), pid)
        return pid

    def price(self, spec: PriceSpec, product: str, existing: Any) -> str:
        if existing is not None and _matches(existing, spec):
            return existing.id
        params = {**spec.params, "product": product, "lookup_key": spec.lookup_key, "transfer_lookup_key": True}
        verb = "create" if existing is None else f"replace {existing.id} with"
        # The key names the price being replaced too: a revert A → B → A within Stripe's 24-hour
        # idempotency window must create a new A, not replay the first (since archived) one.
        replaces = existing.id if existing is not None else "none"
        key = f"catalog:price:{spec.lookup_key}:{spec.fingerprint()}:{replaces}"
        new_id = self.act(f"{verb} price {spec.lookup_key} ({_describe(spec)})",
                          lambda: self.client.v1.prices.create(params=params, options={"idempotency_key": key}),
                          f"<new {spec.lookup_key}>")
        if existing is not None:
            self.act(f"archive price {existing.id} (no longer matches the tiers file)",
                     lambda: self.client.v1.prices.update(existing.id, params={"active": False}), existing.id)
        return new_id

    def tier(self, tier: Tier, currency: str, meter_id: str) -> TierPrices:
        product = self.product(tier)
        specs = price_specs(self.settings, tier, currency, meter_id)
        found = self.read(f"listing prices of {tier.name}", lambda: self.client.v1.prices.list(params={
            "lookup_keys": [s.lookup_key for s in specs], "expand": ["data.tiers"], "limit": 10}))
        by_key = {p.lookup_key: p for p in (found.data if found else [])}
        ids = {spec.kind: self.price(spec, product, by_key.get(spec.lookup_key)) for spec in specs}
        if METERED not in ids:
            self.retire_metered(tier)
        return TierPrices(flat=ids[FLAT], metered=ids.get(METERED))


    def retire_metered(self, tier: Tier) -> None:
        """A tier that lost its overage must not keep a live metered price under its lookup key."""
        key = lookup_key(self.settings, tier.name, METERED)
        stale = self.read(f"looking for {key}", lambda: self.client.v1.prices.list(
            params={"lookup_keys": [key], "active": True}))
        for old in stale.data if stale else []:
            self.act(f"archive price {old.id} ({tier.name} no longer has overage)",
                     lambda: self.client.v1.prices.update(old.id, params={"active": False, "lookup_key": ""}),
                     old.id)


def _describe(spec: PriceSpec) -> str:
    if spec.kind == FLAT:
        return f"{spec.params['unit_amount'] / 100:.2f} {spec.params['currency']}/month"
    free, paid = spec.params["tiers"]
    return (f"first {free['up_to']:,} requests free, then {paid['unit_amount_decimal']} cents each "
            f"on {spec.params['recurring']['meter']}")


def sync_catalog(client: stripe.StripeClient | None, tiers: TierCatalog, settings: BillingSettings, *,
                 dry_run: bool = False) -> SyncResult:
    """Make Stripe's catalog match the tiers file (or, with `dry_run`, say what that would take).

    Without a client only a dry run is possible; it plans as if Stripe were empty.
    """
    if client is None and not dry_run:
        raise ConfigError("catalog sync needs a Stripe API key (or --dry-run)")
    sync = _Sync(client, settings, dry_run)
    sync.result.meter_id = sync.meter()
    for tier in tiers.tiers.values():
        sync.result.prices[tier.name] = sync.tier(tier, tiers.currency, sync.result.meter_id)
    return sync.result


def tier_prices(client: stripe.StripeClient, settings: BillingSettings, tier: Tier) -> TierPrices:
    """The active price ids of `tier` (found by lookup key); ConfigError if the catalog was never synced."""
    keys = {lookup_key(settings, tier.name, FLAT): FLAT}
    if tier.api_requests.has_overage:
        keys[lookup_key(settings, tier.name, METERED)] = METERED
    try:
        found = client.v1.prices.list(params={"lookup_keys": list(keys), "active": True, "limit": 10})
    except stripe.StripeError as exc:
        raise translate(exc, f"looking up the prices of tier {tier.name}") from exc
    ids = {keys[p.lookup_key]: p.id for p in found.data if p.lookup_key in keys}
    if set(ids) != set(keys.values()):
        raise ConfigError(f"the Stripe catalog has no prices for tier {tier.name!r} "
                          f"(missing lookup keys: {sorted(k for k, kind in keys.items() if kind not in ids)}); "
                          "run `python -m tenant_provisioner billing sync-catalog`")
    return TierPrices(flat=ids[FLAT], metered=ids.get(METERED))
