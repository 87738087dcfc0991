"""The fake Stripe server behaves as Stripe's API reference says for the endpoints billing uses.

Driven through the real `stripe` SDK where possible, so error mapping and encoding are the SDK's.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from tests.billing.support import FAKE_KEY
from tests.billing.stripe_server import decode_form, sign_webhook


@pytest.fixture()
def meter(client):
    return client.v1.billing.meters.create(params={"display_name": "API", "event_name": "api_calls",
                                                   "default_aggregation": {"formula": "sum"}})


@pytest.fixture()
def customer(client):
    return client.v1.customers.create(params={"email": "a@example.com"})


def _raw(fake, method, path, body="", key=FAKE_KEY):
    request = urllib.request.Request(fake.url + path, data=body.encode() if body else None, method=method,
                                     headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_form_decoding_matches_stripes_encoding():
    pairs = [("items[0][price]", "p1"), ("items[1][price]", "p2"), ("metadata[a]", "x"), ("expand[]", "tiers"),
             ("tiers[0][up_to]", "10"), ("tiers[1][up_to]", "inf")]
    assert decode_form(pairs) == {"items": [{"price": "p1"}, {"price": "p2"}], "metadata": {"a": "x"},
                                  "expand": ["tiers"], "tiers": [{"up_to": "10"}, {"up_to": "inf"}]}


def test_requests_without_a_key_are_401(fake_stripe):
    status, body = _raw(fake_stripe, "GET", "/v1/customers", key=None)
    assert status == 401 and body["error"]["type"] == "invalid_request_error"


def test_unknown_url_and_unknown_parameter(fake_stripe, client):
    assert _raw(fake_stripe, "GET", "/v1/usage_records")[0] == 404
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.create(params={"emali": "typo@example.com"})
    assert exc.value.code == "parameter_unknown" and exc.value.param == "emali"


@pytest.mark.parametrize(("body", "param", "says"), [
    # misspelt nested keys: Stripe answers 400 parameter_unknown (they returned 200 before)
    ("currency=usd&product=p&unit_amount=1&recurring[interval]=month&recurring[usage_typ]=metered",
     "recurring[usage_typ]", "Received unknown parameter"),
    ("currency=usd&product=p&billing_scheme=tiered&tiers_mode=graduated&tiers[0][up_to]=inf"
     "&tiers[0][flat_amnt]=5", "tiers[0][flat_amnt]", "Received unknown parameter"),
    # enums and required nested keys, as stripe-python's request types declare them
    ("currency=usd&product=p&unit_amount=1&recurring[interval]=month&recurring[usage_type]=metred",
     "recurring[usage_type]", "must be one of 'licensed' or 'metered'"),
    ("currency=usd&product=p&unit_amount=1&recurring[interval]=fortnight", "recurring[interval]", "must be one of"),
    ("currency=usd&product=p&unit_amount=1&recurring[usage_type]=licensed", "recurring[interval]",
     "Missing required param"),
    ("currency=usd&product=p&unit_amount=ten", "unit_amount", "Invalid integer"),
])
def test_prices_are_validated_against_the_sdks_request_types(fake_stripe, body, param, says):
    status, answer = _raw(fake_stripe, "POST", "/v1/prices", body)
    assert status == 400 and answer["error"]["param"] == param and says in answer["error"]["message"]
    assert not fake_stripe.state.prices


def test_subscription_items_and_enums_are_validated(fake_stripe, client, customer):
    for params, param in [({"customer": customer.id, "items": [{"prise": "price_x"}]}, "items[0][prise]"),
                          ({"customer": customer.id, "items": [{"price": "price_x"}],
                            "payment_behavior": "allow_incompleet"}, "payment_behavior"),
                          ({"customer": customer.id, "items": [{"price": "price_x"}],
                            "billing_cycle_anchor_config": {"day_of_month": 1, "hours": 0}},
                           "billing_cycle_anchor_config[hours]")]:
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.subscriptions.create(params=params)
        assert exc.value.param == param and exc.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.billing.meter_events.create(params={"event_name": "e", "payload": {"value": "1"},
                                                      "identifer": "typo"})
    assert exc.value.param == "identifer"


def test_idempotency_key_replays_the_first_response_and_rejects_other_parameters(fake_stripe, client):
    first = client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k"})
    again = client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k"})
    assert first.id == again.id and len(fake_stripe.state.customers) == 1
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "k"})


def test_price_validation(client, meter):
    client.v1.products.create(params={"id": "prod_x", "name": "X"})
    base = {"product": "prod_x", "currency": "usd"}
    cases = [
        ({**base, "recurring": {"interval": "month", "usage_type": "metered"}, "unit_amount": 1}, "recurring[meter]"),
        ({**base, "recurring": {"interval": "month", "aggregate_usage": "sum"}, "unit_amount": 1},
         "recurring[aggregate_usage]"),
        ({**base, "billing_scheme": "tiered", "tiers_mode": "graduated", "recurring": {"interval": "month"},
          "tiers": [{"up_to": 10, "unit_amount": 0}, {"up_to": 20, "unit_amount": 1}]}, "tiers[1][up_to]"),
        ({**base, "recurring": {"interval": "fortnight"}, "unit_amount": 1}, "recurring[interval]"),
        ({"currency": "usd", "unit_amount": 1}, "product"),
    ]
    for params, param in cases:
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.prices.create(params=params)
        assert exc.value.param == param, params


def test_lookup_keys_are_unique_unless_transferred(client):
    client.v1.products.create(params={"id": "prod_x", "name": "X"})
    params = {"product": "prod_x", "currency": "usd", "unit_amount": 100, "lookup_key": "k"}
    old = client.v1.prices.create(params=params)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.prices.create(params=params)
    assert exc.value.code == "lookup_key_already_exists"
    new = client.v1.prices.create(params={**params, "transfer_lookup_key": True})
    found = client.v1.prices.list(params={"lookup_keys": ["k"]}).data
    assert [p.id for p in found] == [new.id] and client.v1.prices.retrieve(old.id).lookup_key is None


def test_meter_events_dedupe_identifiers_and_enforce_the_time_window(fake_stripe, client, meter, customer):
    def send(**extra):
        return client.v1.billing.meter_events.create(params={
            "event_name": "api_calls", "payload": {"stripe_customer_id": customer.id, "value": "5"}, **extra})

    send(identifier="one")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        send(identifier="one")
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (400, None, None)
    assert exc.value.user_message == "An event already exists with identifier one."
    assert exc.value.headers["stripe-should-retry"] == "false"
    for extra, code in [({"timestamp": int(time.time()) - 36 * 86400}, "timestamp_too_far_in_past"),
                        ({"timestamp": int(time.time()) + 600}, "timestamp_in_future")]:
        with pytest.raises(stripe.InvalidRequestError) as exc:
            send(**extra)
        assert exc.value.code == code
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.billing.meter_events.create(params={"event_name": "nope",
                                                      "payload": {"stripe_customer_id": customer.id, "value": "1"}})
    assert exc.value.code == "no_meter"
    assert fake_stripe.metered_total("api_calls", customer.id) == 5


def test_event_summaries_need_minute_aligned_bounds(client, meter, customer):
    now = int(time.time()) // 60 * 60
    client.v1.billing.meter_events.create(params={"event_name": "api_calls", "timestamp": now - 30,
                                                  "payload": {"stripe_customer_id": customer.id, "value": "7"}})
    summary = client.v1.billing.meters.event_summaries.list(
        meter.id, params={"customer": customer.id, "start_time": now - 3600, "end_time": now + 60})
    assert [s.aggregated_value for s in summary.data] == [7.0]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.billing.meters.event_summaries.list(
            meter.id, params={"customer": customer.id, "start_time": now - 3599, "end_time": now})
    assert exc.value.param == "start_time"


def test_subscription_rules(client, meter, customer):
    client.v1.products.create(params={"id": "prod_x", "name": "X"})
    metered = client.v1.prices.create(params={"product": "prod_x", "currency": "usd", "unit_amount_decimal": "0.5",
                                              "recurring": {"interval": "month", "usage_type": "metered",
                                                            "meter": meter.id}})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscriptions.create(params={"customer": customer.id,
                                               "items": [{"price": metered.id, "quantity": 3}]})
    assert "metered" in exc.value.user_message
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": metered.id}]})
    client.v1.subscriptions.cancel(sub.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.cancel(sub.id)
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
    assert len(client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"}).data) == 1
    client.v1.customers.delete(customer.id)
    assert client.v1.customers.retrieve(customer.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": metered.id}]})
    assert exc.value.code == "resource_missing"


def test_list_pagination(client):
    ids = [client.v1.customers.create(params={"email": f"{i}@example.com"}).id for i in range(5)]
    page = client.v1.customers.list(params={"limit": 2})
    assert page.has_more and len(page.data) == 2
    assert sorted(c.id for c in page.auto_paging_iter()) == sorted(ids)


def test_webhook_signatures_verify_with_the_real_library():
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "invoice.paid", "data": {"object": {}}}).encode()
    event = stripe.Webhook.construct_event(payload, sign_webhook(payload, "whsec_test_x"), "whsec_test_x")
    assert event.id == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, sign_webhook(payload, "whsec_other"), "whsec_test_x")


def test_a_request_refused_by_validation_is_not_saved_under_its_idempotency_key(client):
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.products.create(params={"name": ""}, options={"idempotency_key": "p1"})
    assert exc.value.code == "parameter_missing"
    product = client.v1.products.create(params={"name": "Fixed"}, options={"idempotency_key": "p1"})
    assert product.name == "Fixed"  # the corrected retry runs (no idempotency_error, no replayed 400)


_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_SCALARS = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
                   max_size=10)
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.dictionaries(_KEYS, inner, min_size=1, max_size=3), st.lists(inner, min_size=1, max_size=3)), max_leaves=8)


@given(st.dictionaries(_KEYS, _VALUES, min_size=1, max_size=4))
def test_form_decoding_inverts_the_sdks_encoding(params):
    from urllib.parse import parse_qsl, urlencode

    from stripe._encode import _api_encode

    body = urlencode(list(_api_encode(params)))
    assert decode_form(parse_qsl(body, keep_blank_values=True)) == params
