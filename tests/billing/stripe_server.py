"""A stateful Stripe-compatible HTTP server on 127.0.0.1 for tests (stdlib only, one thread).

Why not localstripe: it has no Prices and no Billing Meters; stripe-mock is stateless. This server
keeps state and follows the API reference for the endpoints the billing code uses:

- form-encoded request bodies (``a[b][0][c]=x``, as the SDK sends them) and query strings;
- ``Authorization: Bearer sk_test_...`` required (401 otherwise);
- ``Idempotency-Key`` on POST: the first response for a key is stored and replayed (with
  ``Idempotent-Replayed: true``); the same key with other parameters is an ``idempotency_error``;
- every request's parameters checked against stripe-python's generated request type of its
  endpoint (``stripe/params/``: nested keys, required keys, enum values; `stripe_params.py`);
- Stripe-shaped errors ``{"error": {"type", "code", "message", "param"}}`` with Stripe's status
  codes, and validation of required/enumerated parameters for customers, products, prices
  (lookup keys, tiers, metered prices on a meter), subscriptions (create, update with
  proration_behavior, cancel, list), billing meters, meter events (``identifier`` dedupe, the
  35-day / 5-minute timestamp window; a reused identifier refused as Stripe does, HTTP 400 "An event
  already exists with identifier …" without code or param) and meter event summaries (minute-aligned
  bounds); subscriptions start `incomplete` when the first invoice is due and the customer has no
  payment method (`without_card_on_file`), as with ``payment_behavior=allow_incomplete``.

Fault injection for tests: `fail_next` answers matching requests with a 500 before doing
anything, `lose_response_next` does the work (and stores the idempotent result) and then drops
the connection, as when a response is lost on the network; `down` refuses every request.
Webhook payloads are signed with Stripe's scheme by `sign_webhook` for the real library to verify.
"""

from __future__ import annotations

import calendar
import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from stripe import params

from tests.billing.stripe_params import ParamError, validate

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_MAX_EVENT_AGE_SECONDS = 35 * 24 * 3600
_MAX_EVENT_FUTURE_SECONDS = 5 * 60
_PRORATION_BEHAVIORS = {"create_prorations", "none", "always_invoice"}
_FORMULAS = {"sum", "count", "last"}
_INTERVALS = {"day", "week", "month", "year"}


class StripeError(Exception):
    """An error answered in Stripe's shape."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        return {"error": error}


def _missing(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def _invalid(param: str, message: str) -> StripeError:
    return StripeError(400, message, code="parameter_invalid_string", param=param)


def _no_such(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's nested form encoding (``items[0][price]=x``) → nested dicts and lists."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY_RE.match(raw_key)
        if not match:
            raise StripeError(400, f"Invalid parameter name: {raw_key}", code="parameter_unknown", param=raw_key)
        parts = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":  # `a[]=x` appends
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise StripeError(400, f"Invalid parameter: {raw_key}", param=raw_key)
    return _lists(root)


def _lists(node: Any) -> Any:
    """Dicts whose keys are 0..n-1 become lists, as Stripe reads indexed arrays."""
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        keys = sorted(converted, key=int)
        if [int(k) for k in keys] == list(range(len(keys))):
            return [converted[k] for k in keys]
    return converted


def _decimal(value: Any, param: str) -> str:
    """A decimal string with at most 12 decimal places, as Stripe accepts for *_decimal fields."""
    if not isinstance(value, str) or not re.fullmatch(r"\d+(\.\d{1,12})?", value):
        raise StripeError(400, f"Invalid decimal: {value}", code="parameter_invalid_string", param=param)
    return value


def _next_anchor(now: int, day: int, hour: int, minute: int, second: int) -> int:
    """The next `day` of a month at hour:minute:second UTC (the last day when the month is shorter)."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    year, month = moment.year, moment.month
    while True:
        last = calendar.monthrange(year, month)[1]
        candidate = datetime(year, month, min(day, last), hour, minute, second, tzinfo=timezone.utc)
        if candidate.timestamp() > now:
            return int(candidate.timestamp())
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _bool(params: dict[str, Any], name: str, default: bool | None = None) -> bool | None:
    if name not in params:
        return default
    value = params[name]
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise StripeError(400, f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=name)


def _int(params: dict[str, Any], name: str, *, required: bool = False, minimum: int | None = None) -> int | None:
    if name not in params or params[name] == "":
        if required:
            raise _missing(name)
        return None
    try:
        value = int(params[name])
    except (TypeError, ValueError):
        raise StripeError(400, f"Invalid integer: {params[name]}", code="parameter_invalid_integer",
                          param=name) from None
    if minimum is not None and value < minimum:
        raise StripeError(400, f"Invalid {name}: must be at least {minimum}", code="parameter_invalid_integer",
                          param=name)
    return value


def _metadata(params: dict[str, Any], current: dict[str, str] | None = None) -> dict[str, str]:
    """Metadata merge: keys set to "" are removed; at most 50 keys of 40 chars, values of 500."""
    merged = dict(current or {})
    raw = params.get("metadata", {})
    if raw == "":
        return {}
    if not isinstance(raw, dict):
        raise StripeError(400, "Invalid object", code="parameter_invalid_object", param="metadata")
    for key, value in raw.items():
        if len(key) > 40 or (isinstance(value, str) and len(value) > 500):
            raise _invalid(f"metadata[{key}]", "Metadata keys are limited to 40 characters, values to 500.")
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > 50:
        raise _invalid("metadata", "You can have at most 50 metadata keys.")
    return merged


def _check_allowed(params: dict[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed | {"expand"}:
            raise StripeError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


def _list_of(params: dict[str, Any], name: str) -> list[Any]:
    value = params.get(name, [])
    if isinstance(value, dict):  # a single `name[0]` that did not form a list
        value = list(value.values())
    if not isinstance(value, list):
        value = [value]
    return value


@dataclass
class _Fault:
    method: str
    path_re: re.Pattern[str]
    mode: str           # "error" or "lost"
    remaining: int


@dataclass
class StripeState:
    customers: dict[str, dict] = field(default_factory=dict)
    products: dict[str, dict] = field(default_factory=dict)
    prices: dict[str, dict] = field(default_factory=dict)
    meters: dict[str, dict] = field(default_factory=dict)
    subscriptions: dict[str, dict] = field(default_factory=dict)
    meter_events: list[dict] = field(default_factory=list)
    idempotency: dict[tuple[str, str], tuple[str, int, dict]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict]] = field(default_factory=list)


class FakeStripe:
    """The server; start with `start()`, point the SDK at `url`, inspect `state`."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.state = StripeState()
        self.clock = clock
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._faults: list[_Fault] = []
        self._down = False
        self.card_on_file = True
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # (method, path, handler, the request type stripe-python generates for the endpoint)
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Any], type]] = [
            ("POST", re.compile(r"^/v1/customers$"), self._create_customer, params.CustomerCreateParams),
            ("GET", re.compile(r"^/v1/customers$"), self._list_customers, params.CustomerListParams),
            ("GET", re.compile(r"^/v1/customers/(?P<id>[^/]+)$"), self._get_customer, params.CustomerRetrieveParams),
            ("POST", re.compile(r"^/v1/customers/(?P<id>[^/]+)$"), self._update_customer,
             params.CustomerUpdateParams),
            ("DELETE", re.compile(r"^/v1/customers/(?P<id>[^/]+)$"), self._delete_customer,
             params.CustomerDeleteParams),
            ("POST", re.compile(r"^/v1/products$"), self._create_product, params.ProductCreateParams),
            ("GET", re.compile(r"^/v1/products$"), self._list_products, params.ProductListParams),
            ("GET", re.compile(r"^/v1/products/(?P<id>[^/]+)$"), self._get_product, params.ProductRetrieveParams),
            ("POST", re.compile(r"^/v1/products/(?P<id>[^/]+)$"), self._update_product, params.ProductUpdateParams),
            ("POST", re.compile(r"^/v1/prices$"), self._create_price, params.PriceCreateParams),
            ("GET", re.compile(r"^/v1/prices$"), self._list_prices, params.PriceListParams),
            ("GET", re.compile(r"^/v1/prices/(?P<id>[^/]+)$"), self._get_price, params.PriceRetrieveParams),
            ("POST", re.compile(r"^/v1/prices/(?P<id>[^/]+)$"), self._update_price, params.PriceUpdateParams),
            ("POST", re.compile(r"^/v1/billing/meters$"), self._create_meter, params.billing.MeterCreateParams),
            ("GET", re.compile(r"^/v1/billing/meters$"), self._list_meters, params.billing.MeterListParams),
            ("GET", re.compile(r"^/v1/billing/meters/(?P<id>[^/]+)$"), self._get_meter,
             params.billing.MeterRetrieveParams),
            ("GET", re.compile(r"^/v1/billing/meters/(?P<id>[^/]+)/event_summaries$"), self._event_summaries,
             params.billing.MeterListEventSummariesParams),
            ("POST", re.compile(r"^/v1/billing/meter_events$"), self._create_meter_event,
             params.billing.MeterEventCreateParams),
            ("POST", re.compile(r"^/v1/subscriptions$"), self._create_subscription, params.SubscriptionCreateParams),
            ("GET", re.compile(r"^/v1/subscriptions$"), self._list_subscriptions, params.SubscriptionListParams),
            ("GET", re.compile(r"^/v1/subscriptions/(?P<id>[^/]+)$"), self._get_subscription,
             params.SubscriptionRetrieveParams),
            ("POST", re.compile(r"^/v1/subscriptions/(?P<id>[^/]+)$"), self._update_subscription,
             params.SubscriptionUpdateParams),
            ("DELETE", re.compile(r"^/v1/subscriptions/(?P<id>[^/]+)$"), self._cancel_subscription,
             params.SubscriptionCancelParams),
        ]

    # ----------------------------------------------------------------- lifecycle and test controls
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeStripe":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-stripe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self.state = StripeState()
            self._faults.clear()
            self._down = False
            self.card_on_file = True

    def snapshot(self) -> StripeState:
        """A copy of the current state, to `restore` later (tests reuse a synced catalog)."""
        with self._lock:
            return copy.deepcopy(self.state)

    def restore(self, state: StripeState) -> None:
        with self._lock:
            self.state = copy.deepcopy(state)
            self._faults.clear()
            self._down = False

    def clear_faults(self) -> None:
        self._faults.clear()

    def fail_next(self, method: str, path_pattern: str, times: int = 1) -> None:
        """The next `times` matching requests get a 500 before anything is done."""
        self._faults.append(_Fault(method, re.compile(path_pattern), "error", times))

    def lose_response_next(self, method: str, path_pattern: str, times: int = 1) -> None:
        """The next matching requests are executed, then the connection drops without a response."""
        self._faults.append(_Fault(method, re.compile(path_pattern), "lost", times))

    def down(self, is_down: bool = True) -> None:
        """While down, every request is answered 503 (Stripe unreachable for the caller)."""
        self._down = is_down

    def without_card_on_file(self) -> None:
        """Customers created from now on have no payment method (the signup front end collected none),
        so a subscription whose first invoice is due starts `incomplete`, as Stripe does."""
        self.card_on_file = False

    def pay_first_invoice(self, subscription_id: str) -> dict:
        """The customer paid the first invoice within 23 hours: `incomplete` → `active`."""
        with self._lock:
            subscription = self._subscription(subscription_id)
            assert subscription["status"] == "incomplete", subscription["status"]
            subscription["status"] = "active"
            return subscription

    def expire_incomplete(self, subscription_id: str) -> dict:
        """23 hours passed without payment: Stripe ends the subscription as `incomplete_expired`."""
        with self._lock:
            subscription = self._subscription(subscription_id)
            assert subscription["status"] == "incomplete", subscription["status"]
            now = self._now()
            subscription.update(status="incomplete_expired", ended_at=now)
            return subscription

    def count_requests(self, method: str, path_pattern: str) -> int:
        pattern = re.compile(path_pattern)
        return sum(1 for m, p, _ in self.state.requests if m == method and pattern.search(p))

    def live_customers(self, **metadata: str) -> list[dict]:
        return [c for c in self.state.customers.values() if not c.get("deleted")
                and all(c["metadata"].get(k) == v for k, v in metadata.items())]

    def subscriptions_of(self, customer: str, *, status: str | None = None) -> list[dict]:
        return [s for s in self.state.subscriptions.values() if s["customer"] == customer
                and (status is None or s["status"] == status)]

    def metered_total(self, event_name: str, customer: str) -> float:
        return sum(float(e["payload"]["value"]) for e in self.state.meter_events
                   if e["event_name"] == event_name and e["payload"].get("stripe_customer_id") == customer)

    # ---------------------------------------------------------------------------------- dispatch
    def _fault_for(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method == method and fault.path_re.search(path):
                fault.remaining -= 1
                return fault
        return None

    def handle(self, method: str, path: str, query: str, body: str,
               headers: dict[str, str]) -> tuple[int, dict, dict[str, str], bool]:
        """(status, JSON body, extra headers, drop connection)."""
        if self._down:
            err = StripeError(503, "Stripe is unavailable (test outage).", type_="api_error")
            return 503, err.body(), {}, False
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].startswith(("sk_test_", "rk_test_")):
            err = StripeError(401, "You did not provide an API key.", type_="invalid_request_error")
            return 401, err.body(), {}, False
        try:
            params = decode_form(parse_qsl(body if method == "POST" else query, keep_blank_values=True))
        except StripeError as exc:
            return exc.status, exc.body(), {}, False
        fault = self._fault_for(method, path)
        if fault and fault.mode == "error":
            err = StripeError(500, "An unknown error occurred (injected).", type_="api_error")
            return 500, err.body(), {}, False
        key = headers.get("idempotency-key")
        with self._lock:
            self.state.requests.append((method, path, params))
            if method == "POST" and key:
                scope = (auth, key)
                fingerprint = json.dumps([method, path, params], sort_keys=True)
                if scope in self.state.idempotency:
                    stored_fp, status, stored = self.state.idempotency[scope]
                    if stored_fp != fingerprint:
                        err = StripeError(400, "Keys for idempotent requests can only be used with the same "
                                               f"parameters they were first used with. Try using a key other "
                                               f"than '{key}' if you meant to execute a different request.",
                                          type_="idempotency_error")
                        return 400, err.body(), {}, False
                    return status, stored, {"Idempotent-Replayed": "true", "Idempotency-Key": key}, False
            status, result, extra = self._route(method, path, params)
            # Stripe saves the result once the endpoint started executing (successes and 500s), not
            # for requests refused by validation, so a corrected retry with the same key can succeed.
            if method == "POST" and key and (status == 200 or status >= 500):
                self.state.idempotency[(auth, key)] = (fingerprint, status, result)
        if key:
            extra["Idempotency-Key"] = key
        return status, result, extra, bool(fault and fault.mode == "lost")

    def _route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict, dict[str, str]]:
        for route_method, pattern, func, request_type in self._routes:
            match = pattern.match(path)
            if match and route_method == method:
                try:
                    validate(params, request_type)
                    return 200, func(params, **match.groupdict()), {}
                except ParamError as exc:
                    err = StripeError(400, exc.message, code=exc.code, param=exc.param)
                    return err.status, err.body(), {}
                except StripeError as exc:
                    return exc.status, exc.body(), dict(exc.headers)
        err = StripeError(404, f"Unrecognized request URL ({method}: {path}).")
        return 404, err.body(), {}

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}{secrets.token_hex(5)}"

    def _now(self) -> int:
        return int(self.clock())

    def _page(self, params: dict[str, Any], rows: list[dict], url: str) -> dict:
        limit = _int(params, "limit", minimum=1) or 10
        if limit > 100:
            raise _invalid("limit", "This value must be less than or equal to 100.")
        rows = sorted(rows, key=lambda r: (r.get("created", 0), r["id"]), reverse=True)
        after = params.get("starting_after")
        if after:
            ids = [r["id"] for r in rows]
            if after not in ids:
                raise _no_such("object", after, "starting_after")
            rows = rows[ids.index(after) + 1:]
        return {"object": "list", "url": url, "has_more": len(rows) > limit, "data": rows[:limit]}

    # --------------------------------------------------------------------------------- customers
    def _create_customer(self, params: dict[str, Any]) -> dict:
        _check_allowed(params, {"email", "name", "description", "metadata", "phone"})
        customer = {"id": self._new_id("cus"), "object": "customer", "created": self._now(), "livemode": False,
                    "email": params.get("email"), "name": params.get("name"),
                    "description": params.get("description"), "metadata": _metadata(params),
                    "balance": 0, "currency": None, "delinquent": False,
                    "invoice_settings": {"default_payment_method": "pm_card_visa" if self.card_on_file else None}}
        self.state.customers[customer["id"]] = customer
        return customer

    def _customer(self, customer_id: str, param: str = "id", *, live: bool = False) -> dict:
        customer = self.state.customers.get(customer_id)
        if customer is None or (live and customer.get("deleted")):
            raise _no_such("customer", customer_id, param)
        return customer

    def _get_customer(self, params: dict[str, Any], id: str) -> dict:
        customer = self._customer(id)
        return {"id": id, "object": "customer", "deleted": True} if customer.get("deleted") else customer

    def _list_customers(self, params: dict[str, Any]) -> dict:
        rows = [c for c in self.state.customers.values() if not c.get("deleted")]
        if "email" in params:
            rows = [c for c in rows if c["email"] == params["email"]]
        return self._page(params, rows, "/v1/customers")

    def _update_customer(self, params: dict[str, Any], id: str) -> dict:
        _check_allowed(params, {"email", "name", "description", "metadata"})
        customer = self._customer(id, live=True)
        for name in ("email", "name", "description"):
            if name in params:
                customer[name] = params[name] or None
        customer["metadata"] = _metadata(params, customer["metadata"])
        return customer

    def _delete_customer(self, params: dict[str, Any], id: str) -> dict:
        customer = self._customer(id, live=True)
        customer["deleted"] = True
        for sub in self.subscriptions_of(id):
            if sub["status"] != "canceled":  # deleting a customer cancels its subscriptions at once
                self._end_subscription(sub)
        return {"id": id, "object": "customer", "deleted": True}

    # ---------------------------------------------------------------------------------- products
    def _create_product(self, params: dict[str, Any]) -> dict:
        _check_allowed(params, {"id", "name", "active", "description", "metadata", "unit_label"})
        if not params.get("name"):
            raise _missing("name")
        product_id = params.get("id") or self._new_id("prod")
        if product_id in self.state.products:
            raise StripeError(400, f"Product already exists.", code="resource_already_exists", param="id")
        now = self._now()
        product = {"id": product_id, "object": "product", "active": _bool(params, "active", True),
                   "created": now, "updated": now, "livemode": False, "name": params["name"],
                   "description": params.get("description"), "metadata": _metadata(params),
                   "default_price": None, "unit_label": params.get("unit_label"), "type": "service"}
        self.state.products[product_id] = product
        return product

    def _get_product(self, params: dict[str, Any], id: str) -> dict:
        if id not in self.state.products:
            raise _no_such("product", id)
        return self.state.products[id]

    def _list_products(self, params: dict[str, Any]) -> dict:
        rows = list(self.state.products.values())
        if "active" in params:
            rows = [p for p in rows if p["active"] == _bool(params, "active")]
        if "ids" in params:
            wanted = set(_list_of(params, "ids"))
            rows = [p for p in rows if p["id"] in wanted]
        return self._page(params, rows, "/v1/products")

    def _update_product(self, params: dict[str, Any], id: str) -> dict:
        _check_allowed(params, {"name", "active", "description", "metadata", "default_price", "unit_label"})
        product = self._get_product({}, id)
        if "name" in params:
            if not params["name"]:
                raise _invalid("name", "You passed an empty string for 'name'. We assume empty values are an "
                                       "attempt to unset a parameter; however 'name' cannot be unset.")
            product["name"] = params["name"]
        for name in ("description", "unit_label"):
            if name in params:
                product[name] = params[name] or None
        if "default_price" in params:
            price = self.state.prices.get(params["default_price"])
            if price is None or price["product"] != id:
                raise _no_such("price", params["default_price"], "default_price")
            product["default_price"] = price["id"]
        product["active"] = _bool(params, "active", product["active"])
        product["metadata"] = _metadata(params, product["metadata"])
        product["updated"] = self._now()
        return product

    # ------------------------------------------------------------------------------------ prices
    def _create_price(self, params: dict[str, Any]) -> dict:
        _check_allowed(params, {"currency", "product", "unit_amount", "unit_amount_decimal", "billing_scheme",
                                "tiers", "tiers_mode", "recurring", "lookup_key", "transfer_lookup_key",
                                "metadata", "nickname", "active", "tax_behavior"})
        currency = params.get("currency")
        if not currency:
            raise _missing("currency")
        if currency != currency.lower() or len(currency) != 3:
            raise _invalid("currency", f"Invalid currency: {currency}.")
        product_id = params.get("product")
        if not product_id:
            raise _missing("product")
        if product_id not in self.state.products:
            raise _no_such("product", product_id, "product")
        scheme = params.get("billing_scheme", "per_unit")
        if scheme not in ("per_unit", "tiered"):
            raise _invalid("billing_scheme", f"Invalid billing_scheme: {scheme}")
        recurring = self._recurring(params.get("recurring"))
        unit_amount = _int(params, "unit_amount", minimum=0)
        unit_amount_decimal = params.get("unit_amount_decimal")
        tiers = None
        tiers_mode = None
        if scheme == "per_unit":
            if unit_amount is None and unit_amount_decimal is None:
                raise StripeError(400, "You must pass either unit_amount or unit_amount_decimal.",
                                  param="unit_amount")
            if unit_amount is not None and unit_amount_decimal is not None:
                raise _invalid("unit_amount_decimal", "You may only specify one of unit_amount and "
                                                      "unit_amount_decimal.")
            if "tiers" in params:
                raise _invalid("tiers", "tiers requires billing_scheme=tiered.")
            unit_amount_decimal = str(unit_amount) if unit_amount is not None else _decimal(
                unit_amount_decimal, "unit_amount_decimal")
            if unit_amount is None and float(unit_amount_decimal).is_integer():
                unit_amount = int(float(unit_amount_decimal))
        else:
            tiers_mode = params.get("tiers_mode")
            if tiers_mode not in ("graduated", "volume"):
                raise _missing("tiers_mode") if tiers_mode is None else _invalid("tiers_mode", "Invalid tiers_mode")
            if unit_amount is not None or unit_amount_decimal is not None:
                raise _invalid("unit_amount", "unit_amount is not allowed with billing_scheme=tiered.")
            tiers = self._tiers(_list_of(params, "tiers"))
        lookup_key = params.get("lookup_key")
        if lookup_key:
            holder = self._price_by_lookup_key(lookup_key)
            if holder is not None:
                if not _bool(params, "transfer_lookup_key", False):
                    raise StripeError(400, f"A price (`{holder['id']}`) already uses that lookup key.",
                                      code="lookup_key_already_exists", param="lookup_key")
                holder["lookup_key"] = None
        price = {"id": self._new_id("price"), "object": "price", "active": _bool(params, "active", True),
                 "billing_scheme": scheme, "created": self._now(), "currency": currency, "livemode": False,
                 "lookup_key": lookup_key, "metadata": _metadata(params), "nickname": params.get("nickname"),
                 "product": product_id, "recurring": recurring, "tax_behavior": params.get("tax_behavior",
                                                                                        "unspecified"),
                 "tiers_mode": tiers_mode, "_tiers": tiers, "transform_quantity": None,
                 "type": "recurring" if recurring else "one_time", "unit_amount": unit_amount,
                 "unit_amount_decimal": unit_amount_decimal}
        self.state.prices[price["id"]] = price
        return self._price_view(price, _list_of(params, "expand"))

    def _recurring(self, raw: Any) -> dict | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise StripeError(400, "Invalid object", code="parameter_invalid_object", param="recurring")
        interval = raw.get("interval")
        if interval is None:
            raise _missing("recurring[interval]")
        if interval not in _INTERVALS:
            raise _invalid("recurring[interval]", f"Invalid recurring[interval]: must be one of {sorted(_INTERVALS)}")
        usage_type = raw.get("usage_type", "licensed")
        if usage_type not in ("licensed", "metered"):
            raise _invalid("recurring[usage_type]", "Invalid recurring[usage_type]")
        if "aggregate_usage" in raw:
            raise StripeError(400, "Received unknown parameter: recurring[aggregate_usage]",
                              code="parameter_unknown", param="recurring[aggregate_usage]")
        meter = raw.get("meter")
        if usage_type == "metered" and not meter:
            raise StripeError(400, "Metered prices must be backed by a meter: pass recurring[meter].",
                              code="parameter_missing", param="recurring[meter]")
        if meter and usage_type != "metered":
            raise _invalid("recurring[meter]", "recurring[meter] requires recurring[usage_type]=metered.")
        if meter and meter not in self.state.meters:
            raise _no_such("billing meter", meter, "recurring[meter]")
        return {"interval": interval, "interval_count": _int(raw, "interval_count", minimum=1) or 1,
                "usage_type": usage_type, "meter": meter, "trial_period_days": None}

    def _tiers(self, raw: list[Any]) -> list[dict]:
        if not raw:
            raise _missing("tiers")
        tiers = []
        previous = 0
        for index, tier in enumerate(raw):
            param = f"tiers[{index}]"
            if not isinstance(tier, dict) or "up_to" not in tier:
                raise _missing(f"{param}[up_to]")
            last = index == len(raw) - 1
            if tier["up_to"] == "inf":
                if not last:
                    raise _invalid(f"{param}[up_to]", "Only the last tier may have up_to=inf.")
                up_to = None
            else:
                up_to = _int(tier, "up_to", minimum=1)
                if last:
                    raise _invalid(f"{param}[up_to]", "The last tier must have up_to=inf.")
                if up_to <= previous:
                    raise _invalid(f"{param}[up_to]", "Tiers must be in ascending order of up_to.")
                previous = up_to
            unit = _int(tier, "unit_amount", minimum=0)
            unit_decimal = tier.get("unit_amount_decimal")
            flat = _int(tier, "flat_amount", minimum=0)
            if unit is None and unit_decimal is None and flat is None:
                raise StripeError(400, f"Each tier needs unit_amount, unit_amount_decimal or flat_amount.",
                                  code="parameter_missing", param=f"{param}[unit_amount]")
            if unit is not None and unit_decimal is not None:
                raise _invalid(f"{param}[unit_amount_decimal]", "Pass only one of unit_amount and "
                                                              "unit_amount_decimal.")
            unit_decimal = str(unit) if unit is not None else (
                _decimal(unit_decimal, f"{param}[unit_amount_decimal]") if unit_decimal is not None else None)
            tiers.append({"up_to": up_to, "unit_amount": unit, "unit_amount_decimal": unit_decimal,
                          "flat_amount": flat, "flat_amount_decimal": None if flat is None else str(flat)})
        return tiers

    def _price_by_lookup_key(self, lookup_key: str) -> dict | None:
        return next((p for p in self.state.prices.values() if p["lookup_key"] == lookup_key), None)

    @staticmethod
    def _price_view(price: dict, expand: list[str]) -> dict:
        """Prices show `tiers` only when expanded, as Stripe does."""
        view = {k: v for k, v in price.items() if k != "_tiers"}
        if price["billing_scheme"] == "tiered" and any(e in ("tiers", "data.tiers") for e in expand):
            view["tiers"] = price["_tiers"]
        return view

    def _price(self, price_id: str, param: str = "id") -> dict:
        if price_id not in self.state.prices:
            raise _no_such("price", price_id, param)
        return self.state.prices[price_id]

    def _get_price(self, params: dict[str, Any], id: str) -> dict:
        return self._price_view(self._price(id), _list_of(params, "expand"))

    def _list_prices(self, params: dict[str, Any]) -> dict:
        rows = list(self.state.prices.values())
        if "active" in params:
            rows = [p for p in rows if p["active"] == _bool(params, "active")]
        if "product" in params:
            rows = [p for p in rows if p["product"] == params["product"]]
        if "lookup_keys" in params:
            keys = _list_of(params, "lookup_keys")
            if len(keys) > 10:
                raise _invalid("lookup_keys", "You may pass at most 10 lookup_keys.")
            rows = [p for p in rows if p["lookup_key"] in set(keys)]
        page = self._page(params, rows, "/v1/prices")
        expand = _list_of(params, "expand")
        page["data"] = [self._price_view(p, expand) for p in page["data"]]
        return page

    def _update_price(self, params: dict[str, Any], id: str) -> dict:
        _check_allowed(params, {"active", "metadata", "nickname", "lookup_key", "transfer_lookup_key",
                                "tax_behavior"})
        price = self._price(id)
        if "lookup_key" in params:
            lookup_key = params["lookup_key"] or None
            holder = self._price_by_lookup_key(lookup_key) if lookup_key else None
            if holder is not None and holder is not price:
                if not _bool(params, "transfer_lookup_key", False):
                    raise StripeError(400, f"A price (`{holder['id']}`) already uses that lookup key.",
                                      code="lookup_key_already_exists", param="lookup_key")
                holder["lookup_key"] = None
            price["lookup_key"] = lookup_key
        price["active"] = _bool(params, "active", price["active"])
        if "nickname" in params:
            price["nickname"] = params["nickname"] or None
        price["metadata"] = _metadata(params, price["metadata"])
        return self._price_view(price, _list_of(params, "expand"))

    # ------------------------------------------------------------------------------------ meters
    def _create_meter(self, params: dict[str, Any]) -> dict:
        _check_allowed(params, {"display_name", "event_name", "default_aggregation", "customer_mapping",
                                "value_settings", "event_time_window"})
        for required in ("display_name", "event_name"):
            if not params.get(required):
                raise _missing(required)
        aggregation = params.get("default_aggregation")
        if not isinstance(aggregation, dict) or "formula" not in aggregation:
            raise _missing("default_aggregation[formula]")
        if aggregation["formula"] not in _FORMULAS:
            raise _invalid("default_aggregation[formula]", f"Invalid formula: must be one of {sorted(_FORMULAS)}")
        if len(params["event_name"]) > 100:
            raise _invalid("event_name", "event_name is limited to 100 characters.")
        if any(m["event_name"] == params["event_name"] and m["status"] == "active"
               for m in self.state.meters.values()):
            raise StripeError(400, f"An active meter with event_name `{params['event_name']}` already exists.",
                              code="resource_already_exists", param="event_name")
        mapping = params.get("customer_mapping") or {"type": "by_id", "event_payload_key": "stripe_customer_id"}
        if mapping.get("type") != "by_id" or not mapping.get("event_payload_key"):
            raise _invalid("customer_mapping", "customer_mapping needs type=by_id and an event_payload_key.")
        value_settings = params.get("value_settings") or {"event_payload_key": "value"}
        now = self._now()
        meter = {"id": self._new_id("mtr"), "object": "billing.meter", "created": now, "updated": now,
                 "livemode": False, "display_name": params["display_name"], "event_name": params["event_name"],
                 "status": "active", "status_transitions": {"deactivated_at": None},
                 "default_aggregation": {"formula": aggregation["formula"]},
                 "customer_mapping": {"type": "by_id", "event_payload_key": mapping["event_payload_key"]},
                 "value_settings": {"event_payload_key": value_settings.get("event_payload_key", "value")},
                 "event_time_window": params.get("event_time_window")}
        self.state.meters[meter["id"]] = meter
        return meter

    def _get_meter(self, params: dict[str, Any], id: str) -> dict:
        if id not in self.state.meters:
            raise _no_such("billing meter", id)
        return self.state.meters[id]

    def _list_meters(self, params: dict[str, Any]) -> dict:
        rows = list(self.state.meters.values())
        if "status" in params:
            rows = [m for m in rows if m["status"] == params["status"]]
        return self._page(params, rows, "/v1/billing/meters")

    def _create_meter_event(self, params: dict[str, Any]) -> dict:
        _check_allowed(params, {"event_name", "payload", "identifier", "timestamp"})
        event_name = params.get("event_name")
        if not event_name:
            raise _missing("event_name")
        payload = params.get("payload")
        if not isinstance(payload, dict) or not payload:
            raise _missing("payload")
        now = self._now()
        timestamp = _int(params, "timestamp")
        timestamp = now if timestamp is None else timestamp
        if timestamp < now - _MAX_EVENT_AGE_SECONDS:
            raise StripeError(400, "Timestamp must be within the past 35 calendar days.",
                              code="timestamp_too_far_in_past", param="timestamp")
        if timestamp > now + _MAX_EVENT_FUTURE_SECONDS:
            raise StripeError(400, "Timestamp must not be more than 5 minutes in the future.",
                              code="timestamp_in_future", param="timestamp")
        # This server validates against the meter synchronously (Stripe reports these problems
        # asynchronously through meter error reports): a test must never pass on usage Stripe drops.
        meter = next((m for m in self.state.meters.values()
                      if m["event_name"] == event_name and m["status"] == "active"), None)
        if meter is None:
            raise StripeError(400, f"No active meter for event_name `{event_name}`.", code="no_meter",
                              param="event_name")
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        if customer_key not in payload:
            raise StripeError(400, f"payload[{customer_key}] is required.", code="meter_event_no_customer_defined",
                              param=f"payload[{customer_key}]")
        self._customer(payload[customer_key], f"payload[{customer_key}]", live=True)
        if meter["default_aggregation"]["formula"] != "count":
            try:
                float(payload.get(value_key, ""))
            except ValueError:
                raise StripeError(400, f"payload[{value_key}] must be a number.", code="meter_event_invalid_value",
                                  param=f"payload[{value_key}]") from None
        identifier = params.get("identifier") or self._new_id("mevt")
        if len(identifier) > 100:
            raise _invalid("identifier", "identifier is limited to 100 characters.")
        if any(e["identifier"] == identifier and e["created"] > now - 24 * 3600 for e in self.state.meter_events):
            # What Stripe answers (no documented code or param; it tells the SDK not to retry).
            raise StripeError(400, f"An event already exists with identifier {identifier}.",
                              headers={"Stripe-Should-Retry": "false"})
        event = {"object": "billing.meter_event", "created": now, "event_name": event_name,
                 "identifier": identifier, "livemode": False, "payload": payload, "timestamp": timestamp}
        self.state.meter_events.append(event)
        return event

    def _event_summaries(self, params: dict[str, Any], id: str) -> dict:
        meter = self._get_meter({}, id)
        customer = params.get("customer")
        if not customer:
            raise _missing("customer")
        start = _int(params, "start_time", required=True)
        end = _int(params, "end_time", required=True)
        window = params.get("value_grouping_window")
        if window not in (None, "hour", "day"):
            raise _invalid("value_grouping_window", "value_grouping_window must be hour or day.")
        for name, value in (("start_time", start), ("end_time", end)):
            if value % 60:
                raise _invalid(name, f"{name} must be aligned to minute boundaries.")
        if end <= start:
            raise _invalid("end_time", "end_time must be after start_time.")
        step = {"hour": 3600, "day": 86400}.get(window or "", end - start)
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        rows = []
        for bucket in range(start, end, step):
            events = [e for e in self.state.meter_events if e["event_name"] == meter["event_name"]
                      and e["payload"].get(customer_key) == customer and bucket <= e["timestamp"] < bucket + step]
            if meter["default_aggregation"]["formula"] == "count":
                value = float(len(events))
            elif meter["default_aggregation"]["formula"] == "last":
                value = float(events[-1]["payload"][value_key]) if events else 0.0
            else:
                value = sum(float(e["payload"][value_key]) for e in events)
            rows.append({"id": f"mtrusg_{bucket}", "object": "billing.meter_event_summary",
                         "aggregated_value": value, "start_time": bucket, "end_time": min(bucket + step, end),
                         "livemode": False, "meter": id})
        rows.sort(key=lambda r: r["start_time"])
        limit = _int(params, "limit", minimum=1) or 10
        return {"object": "list", "url": f"/v1/billing/meters/{id}/event_summaries",
                "has_more": len(rows) > limit, "data": rows[:limit]}

    # ----------------------------------------------------------------------------- subscriptions
    def _item(self, subscription_id: str, price: dict, raw: dict[str, Any], start: int, end: int) -> dict:
        metered = price["recurring"]["usage_type"] == "metered"
        if metered and "quantity" in raw:
            raise _invalid("items[quantity]", "Quantity should not be specified where usage_type is `metered`.")
        return {"id": self._new_id("si"), "object": "subscription_item", "created": self._now(),
                "metadata": _metadata(raw), "price": self._price_view(price, []),
                "quantity": None if metered else (_int(raw, "quantity", minimum=0) or 1),
                "subscription": subscription_id, "current_period_start": start, "current_period_end": end}

    def _check_item_prices(self, prices: list[dict]) -> None:
        seen: set[str] = set()
        intervals = set()
        for index, price in enumerate(prices):
            if not price["active"]:
                raise _invalid(f"items[{index}][price]", f"The price specified is inactive: {price['id']}.")
            if price["recurring"] is None:
                raise _invalid(f"items[{index}][price]", "The price specified is not recurring.")
            if price["id"] in seen:
                raise _invalid(f"items[{index}][price]", "Cannot add multiple subscription items with the same "
                                                         "price.")
            seen.add(price["id"])
            intervals.add((price["recurring"]["interval"], price["recurring"]["interval_count"]))
        if len(intervals) > 1:
            raise _invalid("items", "All prices on a subscription must have the same recurring interval.")

    def _create_subscription(self, params: dict[str, Any]) -> dict:
        _check_allowed(params, {"customer", "items", "metadata", "collection_method", "days_until_due",
                                "payment_behavior", "proration_behavior", "billing_cycle_anchor",
                                "billing_cycle_anchor_config", "trial_period_days", "description"})
        customer_id = params.get("customer")
        if not customer_id:
            raise _missing("customer")
        customer = self._customer(customer_id, "customer", live=True)
        raw_items = _list_of(params, "items")
        if not raw_items:
            raise _missing("items")
        for index, raw in enumerate(raw_items):
            if not isinstance(raw, dict) or not raw.get("price"):
                raise _missing(f"items[{index}][price]")
        prices = [self._price(raw["price"], f"items[{index}][price]") for index, raw in enumerate(raw_items)]
        self._check_item_prices(prices)
        collection = params.get("collection_method", "charge_automatically")
        if collection not in ("charge_automatically", "send_invoice"):
            raise _invalid("collection_method", "Invalid collection_method")
        if collection == "send_invoice" and "days_until_due" not in params:
            raise _missing("days_until_due")
        behavior = params.get("payment_behavior", "allow_incomplete")
        if behavior not in ("allow_incomplete", "default_incomplete", "error_if_incomplete",
                            "pending_if_incomplete"):
            raise _invalid("payment_behavior", "Invalid payment_behavior")
        if params.get("proration_behavior", "create_prorations") not in _PRORATION_BEHAVIORS:
            raise _invalid("proration_behavior", "Invalid proration_behavior")
        now = self._now()
        anchor = params.get("billing_cycle_anchor_config")
        start, end = now, now + 30 * 86400
        if anchor is not None:
            anchor = self._anchor_config(anchor, now)
            end = _next_anchor(now, anchor["day_of_month"], anchor["hour"], anchor["minute"], anchor["second"])
        status = self._first_status(customer, prices, collection, behavior)
        sub_id = self._new_id("sub")
        subscription = {
            "id": sub_id, "object": "subscription", "created": now, "livemode": False, "customer": customer_id,
            "status": status,
            "collection_method": collection, "days_until_due": _int(params, "days_until_due"),
            "billing_cycle_anchor": end if anchor else start, "billing_cycle_anchor_config": anchor,
            "cancel_at_period_end": False, "canceled_at": None, "ended_at": None, "start_date": now,
            "metadata": _metadata(params), "latest_invoice": None, "description": params.get("description"),
            "items": {"object": "list", "has_more": False, "url": f"/v1/subscription_items?subscription={sub_id}",
                      "data": [self._item(sub_id, p, raw, start, end) for p, raw in zip(prices, raw_items)]},
        }
        self.state.subscriptions[sub_id] = subscription
        return subscription

    @staticmethod
    def _first_status(customer: dict, prices: list[dict], collection: str, behavior: str) -> str:
        """`active` when the first invoice is paid at once (nothing due, a card on file, or sent as an
        invoice); otherwise `incomplete` — or HTTP 402 with error_if_incomplete."""
        amount_due = sum(p["unit_amount"] or 0 for p in prices if p["recurring"]["usage_type"] == "licensed")
        if collection == "send_invoice" or amount_due == 0:
            return "active"
        if behavior == "default_incomplete":
            return "incomplete"
        if customer["invoice_settings"]["default_payment_method"]:
            return "active"
        if behavior == "error_if_incomplete":
            raise StripeError(402, "This customer has no attached payment source or default payment method.",
                              type_="card_error", code="resource_missing")
        return "incomplete"

    @staticmethod
    def _anchor_config(raw: Any, now: int) -> dict:
        """Stripe fills an unset hour/minute/second from the creation time, not with 0: without them a
        subscription created at 14:28 renews at 14:28 on the anchor day (the first period is prorated)."""
        if not isinstance(raw, dict):
            raise StripeError(400, "Invalid object", code="parameter_invalid_object",
                              param="billing_cycle_anchor_config")
        created = datetime.fromtimestamp(now, timezone.utc)
        config: dict[str, Any] = {"month": None}
        for name, low, high, default in (("day_of_month", 1, 31, None), ("hour", 0, 23, created.hour),
                                         ("minute", 0, 59, created.minute), ("second", 0, 59, created.second)):
            value = _int(raw, name, required=default is None, minimum=low)
            if value is not None and value > high:
                raise _invalid(f"billing_cycle_anchor_config[{name}]", f"{name} must be {low}-{high}.")
            config[name] = default if value is None else value
        return config

    def _subscription(self, subscription_id: str) -> dict:
        if subscription_id not in self.state.subscriptions:
            raise _no_such("subscription", subscription_id)
        return self.state.subscriptions[subscription_id]

    def _get_subscription(self, params: dict[str, Any], id: str) -> dict:
        return self._subscription(id)

    def _list_subscriptions(self, params: dict[str, Any]) -> dict:
        rows = list(self.state.subscriptions.values())
        status = params.get("status")
        if status is None:
            rows = [s for s in rows if s["status"] != "canceled"]
        elif status != "all":
            rows = [s for s in rows if s["status"] == status]
        if "customer" in params:
            rows = [s for s in rows if s["customer"] == params["customer"]]
        if "price" in params:
            rows = [s for s in rows if any(i["price"]["id"] == params["price"] for i in s["items"]["data"])]
        return self._page(params, rows, "/v1/subscriptions")

    def _update_subscription(self, params: dict[str, Any], id: str) -> dict:
        _check_allowed(params, {"items", "metadata", "proration_behavior", "cancel_at_period_end",
                                "description"})
        subscription = self._subscription(id)
        if subscription["status"] in ("canceled", "incomplete_expired"):
            raise StripeError(400, "A canceled subscription can only update its cancellation_details and "
                                   "metadata.", param="items" if "items" in params else None)
        if subscription["status"] == "incomplete" and "items" in params:
            raise StripeError(400, "A subscription with status `incomplete` can only have metadata and "
                                   "default_source updated.", param="items")
        behavior = params.get("proration_behavior", "create_prorations")
        if behavior not in _PRORATION_BEHAVIORS:
            raise _invalid("proration_behavior", "Invalid proration_behavior")
        items = list(subscription["items"]["data"])
        for index, raw in enumerate(_list_of(params, "items")):
            if not isinstance(raw, dict):
                raise StripeError(400, "Invalid object", code="parameter_invalid_object", param=f"items[{index}]")
            if "id" in raw:
                existing = next((i for i in items if i["id"] == raw["id"]), None)
                if existing is None:
                    raise _no_such("subscription item", raw["id"], f"items[{index}][id]")
                if _bool(raw, "deleted", False):
                    items.remove(existing)
                    continue
                if "price" in raw:
                    replacement = self._item(id, self._price(raw["price"], f"items[{index}][price]"), raw,
                                             existing["current_period_start"], existing["current_period_end"])
                    replacement["id"] = existing["id"]
                    items[items.index(existing)] = replacement
                elif "quantity" in raw:
                    existing["quantity"] = _int(raw, "quantity", minimum=0)
            else:
                if not raw.get("price"):
                    raise _missing(f"items[{index}][price]")
                first = items[0] if items else {"current_period_start": self._now(),
                                                "current_period_end": self._now() + 30 * 86400}
                items.append(self._item(id, self._price(raw["price"], f"items[{index}][price]"), raw,
                                        first["current_period_start"], first["current_period_end"]))
        if not items:
            raise _invalid("items", "A subscription must keep at least one item.")
        self._check_item_prices([self.state.prices[i["price"]["id"]] for i in items])
        subscription["items"]["data"] = items
        subscription["metadata"] = _metadata(params, subscription["metadata"])
        subscription["cancel_at_period_end"] = _bool(params, "cancel_at_period_end",
                                                     subscription["cancel_at_period_end"])
        return subscription

    def _end_subscription(self, subscription: dict) -> None:
        now = self._now()
        subscription.update(status="canceled", canceled_at=now, ended_at=now)

    def _cancel_subscription(self, params: dict[str, Any], id: str) -> dict:
        _check_allowed(params, {"invoice_now", "prorate", "cancellation_details"})
        subscription = self._subscription(id)
        if subscription["status"] == "canceled":
            raise StripeError(400, f"A canceled subscription can only update its cancellation_details and "
                                   f"metadata.", code="resource_missing")
        _bool(params, "invoice_now")
        _bool(params, "prorate")
        self._end_subscription(subscription)
        return subscription

    # ---------------------------------------------------------------------------------- webhooks
    def event(self, event_type: str, data_object: dict, *, event_id: str | None = None,
              previous_attributes: dict | None = None, created: int | None = None) -> dict:
        """A Stripe `Event` envelope around a copy of `data_object`."""
        data: dict[str, Any] = {"object": json.loads(json.dumps(data_object))}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        return {"id": event_id or self._new_id("evt"), "object": "event", "api_version": "2026-10-28.endive",
                "created": created or self._now(), "livemode": False, "pending_webhooks": 1, "type": event_type,
                "request": {"id": None, "idempotency_key": None}, "data": data}

    def invoice(self, customer: str, subscription: str | None, *, status: str, amount_due: int = 4900) -> dict:
        """A minimal Invoice object for invoice.* events."""
        return {"id": self._new_id("in"), "object": "invoice", "customer": customer, "status": status,
                "amount_due": amount_due, "amount_paid": amount_due if status == "paid" else 0,
                "currency": "usd", "attempt_count": 1, "created": self._now(), "livemode": False,
                "parent": {"type": "subscription_details",
                           "subscription_details": {"subscription": subscription, "metadata": {}}}}


def sign_webhook(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends: ``t=<ts>,v1=<HMAC-SHA256(secret, "<ts>.<body>")>``."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


class _Handler(BaseHTTPRequestHandler):
    fake: FakeStripe
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, extra, drop = self.fake.handle(self.command, parts.path, parts.query, body, headers)
        if drop:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        self.send_header("Stripe-Version", headers.get("stripe-version", "2026-10-28.endive"))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve
