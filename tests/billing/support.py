"""Constants and helpers the billing tests share (imported by conftest and by tests; fixtures stay in conftest)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from tenant_provisioner.tenants import provisioning
from tenant_provisioner.runtime import compose
from tenant_provisioner.billing.accounts import Accounts
from tenant_provisioner.billing.steps import StripeStep

lifecycle = compose.lifecycle()   # no Stripe key, no Redis: billing skipped, the limiter follows later

TINY_TIERS_FILE = Path(__file__).resolve().parents[1] / "data" / "tiny_tiers.yaml"
FAKE_KEY = "sk_test_fake_billing_tests_0000"
WEBHOOK_SECRET = "whsec_fake_billing_tests_0000"


def create_tenant(conn, client, settings, *extra_steps, tenant_id: str = "acme-corp", tier: str = "pro"):
    """Provision a tenant through the real pipeline with the Stripe step (and any extra steps)."""
    request = provisioning.CreateRequest(tenant_id=tenant_id, tier=tier, admin_email="admin@acme.example",
                                     company_name="Acme")
    steps = [provisioning.DatabaseStep(), StripeStep(Accounts(client, settings)), *extra_steps, provisioning.ActivateStep()]
    return lifecycle.create(conn, request, actor="test", steps=steps)


def run_concurrently(job: Callable[[], object], times: int) -> list[Exception]:
    """Run ``job`` in ``times`` threads at once and wait for all; the exceptions they raised."""
    errors: list[Exception] = []

    def guarded() -> None:
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
