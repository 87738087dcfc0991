"""Fixtures for the billing tests: the fake Stripe server, a client on it, a control database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
import stripe
from psycopg import sql

from tenant_provisioner import control
from tenant_provisioner.tenants import schema
from tenant_provisioner.billing.catalog import sync_catalog
from tenant_provisioner.billing.settings import BillingSettings
from tenant_provisioner.db import Database, admin_connect
from tenant_provisioner.tiers import load_tiers
from tests.billing.stripe_server import FakeStripe
from tests.billing.support import FAKE_KEY, TINY_TIERS_FILE, WEBHOOK_SECRET



@pytest.fixture(autouse=True)
def _fast_stripe_retries(monkeypatch):
    """The SDK's retry back-off (0.5 s and up) only slows tests down; retries still happen."""
    from stripe._http_client import HTTPClient

    monkeypatch.setattr(HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(HTTPClient, "MAX_DELAY", 0.05)


@pytest.fixture(scope="session")
def _fake_stripe_server():
    server = FakeStripe().start()
    yield server
    server.stop()


@pytest.fixture()
def fake_stripe(_fake_stripe_server) -> FakeStripe:
    """The fake Stripe server with empty state for this test."""
    _fake_stripe_server.reset()
    return _fake_stripe_server


@pytest.fixture()
def settings(fake_stripe) -> BillingSettings:
    return BillingSettings(api_base=fake_stripe.url, max_network_retries=1)


@pytest.fixture()
def client(fake_stripe, settings) -> stripe.StripeClient:
    return stripe.StripeClient(FAKE_KEY, base_addresses={"api": fake_stripe.url}, max_network_retries=1)


@pytest.fixture()
def stripe_env(monkeypatch, fake_stripe):
    """Environment as a Lambda/CLI sees it: key and signing secret set, Stripe at the fake server."""
    monkeypatch.setenv("STRIPE_API_KEY", FAKE_KEY)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("STRIPE_API_BASE", fake_stripe.url)
    monkeypatch.setenv("STRIPE_MAX_NETWORK_RETRIES", "1")


@pytest.fixture(scope="session")
def _synced_snapshot(_fake_stripe_server):
    """The tiny tiers' catalog synced once per session; tests get a copy of that Stripe state."""
    _fake_stripe_server.reset()
    client = stripe.StripeClient(FAKE_KEY, base_addresses={"api": _fake_stripe_server.url})
    result = sync_catalog(client, load_tiers(TINY_TIERS_FILE), BillingSettings(api_base=_fake_stripe_server.url))
    return result, _fake_stripe_server.snapshot()


@pytest.fixture()
def synced(fake_stripe, _synced_snapshot, tiny_tiers):
    """The catalog of the tiny tiers, synced into the fake Stripe."""
    result, state = _synced_snapshot
    fake_stripe.restore(state)
    return result


@dataclass(frozen=True)
class ControlDatabase:
    url: str
    role: str


@pytest.fixture(scope="module")
def _control_database(module_database_url) -> ControlDatabase:
    """One database per test module with the control plane applied (init is the slow part)."""
    role = f"prov_{uuid.uuid4().hex[:10]}"
    with admin_connect(module_database_url) as conn:
        control.init(conn, role)
    return ControlDatabase(module_database_url, role)


def _reset(conn) -> None:
    """Drop every tenant's schema and role and empty the control tables (not the migration record)."""
    for schema_name, role_name in conn.execute("SELECT schema_name, role_name FROM control.tenants").fetchall():
        schema.drop(conn, schema=schema_name, role=role_name)
    tables = [row[0] for row in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'control' AND tablename <> 'schema_migrations'")]
    conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(
        sql.SQL(", ").join(sql.Identifier("control", t) for t in tables)))


@pytest.fixture()
def control_url(_control_database, monkeypatch) -> str:
    """URL of the module's control database, emptied for this test; the provisioner role in the env."""
    monkeypatch.setenv("TENANT_PROVISIONER_ROLE", _control_database.role)
    with Database(_control_database.url, provisioner_role=_control_database.role) as database, \
            database.connection() as conn:
        _reset(conn)
    return _control_database.url


@pytest.fixture()
def db(control_url, _control_database):
    """A provisioner-role pool on the control database."""
    database = Database(control_url, provisioner_role=_control_database.role, max_size=6)
    yield database
    database.close()


@pytest.fixture()
def conn(db):
    with db.connection() as connection:
        yield connection

