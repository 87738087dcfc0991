"""Billing figures (not a test): Stripe requests per signup and the usage report's cost per tenant,
against the fake Stripe server and the real test PostgreSQL.

Run: ``.venv/bin/python -m tests.billing.bench_usage [TENANTS]`` (default 200). Figures on a shared
machine vary with its load; compare runs on the same machine only.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import stripe

from tenant_provisioner import control
from tenant_provisioner.tenants import provisioning
from tenant_provisioner.runtime import compose
from tenant_provisioner.billing.catalog import sync_catalog
from tenant_provisioner.billing.settings import BillingSettings
from tenant_provisioner.billing.accounts import Accounts
from tenant_provisioner.billing.steps import StripeStep
from tenant_provisioner.billing.usage import report_usage
from tenant_provisioner.db import Database, admin_connect
from tenant_provisioner.tiers import load_tiers
from tests.billing.stripe_server import FakeStripe
from tests.billing.support import TINY_TIERS_FILE
from tests.support import databases, services

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later


def measure(db: Database, fake: FakeStripe, tenants: int) -> None:
    settings = BillingSettings(api_base=fake.url)
    client = stripe.StripeClient("sk_test_fake_bench", base_addresses={"api": fake.url})
    sync_catalog(client, load_tiers(), settings)
    steps = [provisioning.DatabaseStep(), StripeStep(Accounts(client, settings)), provisioning.ActivateStep()]
    with db.connection() as conn:
        before = len(fake.state.requests)
        started = time.perf_counter()
        for i in range(tenants):
            request = provisioning.CreateRequest(tenant_id=f"tenant-{i:04d}", tier="pro", admin_email=f"a{i}@example.com")
            lifecycle.create(conn, request, actor="bench", steps=steps)
        signup = (time.perf_counter() - started) / tenants
        per_signup = (len(fake.state.requests) - before) / tenants
        for i in range(tenants):
            conn.execute("INSERT INTO control.tenant_usage (tenant_id, period_start, quantity, admitted, attempted)"
                         " VALUES (%s, date_trunc('month', now())::date, 'api_requests', %s, %s)",
                         (f"tenant-{i:04d}", 1000 + i, 1000 + i))
        started = time.perf_counter()
        first = report_usage(conn, client, settings)
        busy = time.perf_counter() - started
        started = time.perf_counter()
        again = report_usage(conn, client, settings)
        idle = time.perf_counter() - started
    print(f"signups with the Stripe step: {tenants}; Stripe requests per signup: {per_signup:.1f}; "
          f"mean signup (database + fake Stripe): {signup * 1000:.1f} ms")
    print(f"usage report, {tenants} tenants with new usage: {first.sent} meter events in {busy:.2f} s "
          f"({busy / tenants * 1000:.1f} ms per tenant); nothing new: {again.sent} events in {idle * 1000:.0f} ms")


def main() -> None:
    tenants = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    os.environ["TIERS_FILE"] = str(TINY_TIERS_FILE)
    role = f"prov_{uuid.uuid4().hex[:10]}"
    admin = services.postgres_admin_url()
    url = databases.create_database(admin, prefix="bench")
    fake = FakeStripe().start()
    try:
        with admin_connect(url) as conn:
            control.init(conn, role)
        with Database(url, provisioner_role=role) as db:
            measure(db, fake, tenants)
    finally:
        fake.stop()
        databases.drop_database(admin, url)


if __name__ == "__main__":
    main()
