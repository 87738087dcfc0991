"""Billing across the components: signup through the default pipeline, usage admitted by the real
limiter (Redis), the real enforcer cycle reporting it to Stripe, a failed payment suspending the
tenant and a paid invoice bringing it back."""

from __future__ import annotations

import json

from tenant_provisioner.tenants import records
from tenant_provisioner.runtime import compose
from tenant_provisioner.billing import payments, webhooks
from tenant_provisioner.billing.accounts import load_account
from tenant_provisioner.billing.settings import BillingSettings
from tenant_provisioner.limits import RateLimiter
from tenant_provisioner.limits.enforcer import run_cycle
from tenant_provisioner.limits.limiter import Reason
from tenant_provisioner.tenants.provisioning import CreateRequest
from tests.billing.support import WEBHOOK_SECRET
from tests.billing.stripe_server import sign_webhook


def test_signup_usage_payment_failure_and_recovery(fake_stripe, client, synced, db, conn, redis_client, redis_prefix):
    settings = BillingSettings(api_base=fake_stripe.url, max_network_retries=1,
                               payment_grace_days=0)  # grace ends at the failure itself
    platform = compose.wire(database=db, billing=settings, stripe_client=client, redis_client=redis_client,
                            key_prefix=redis_prefix)
    request = CreateRequest.parse({"tenant_id": "acme-corp", "tier": "pro", "admin_email": "admin@acme.example"})
    result = platform.lifecycle.create(conn, request, actor="test")
    customer = result.outputs["billing"]["stripe_customer_id"]

    limiter = RateLimiter(redis_client, key_prefix=redis_prefix)
    assert limiter.acquire("acme-corp", "pro", cost=40).reason is Reason.OK

    def cycle():
        outcome = run_cycle(db, redis_client, notifier=lambda notice: None, lifecycle=platform.lifecycle,
                            key_prefix=redis_prefix, actor="test:enforcer", reporters=platform.reporters())
        assert outcome.errors == []
        return outcome

    cycle()
    assert fake_stripe.metered_total("saas_api_requests", customer) == 40
    cycle()  # nothing new: nothing sent again
    assert fake_stripe.metered_total("saas_api_requests", customer) == 40

    account = load_account(conn, "acme-corp")
    failed = fake_stripe.event("invoice.payment_failed",
                               fake_stripe.invoice(customer, account.stripe_subscription_id, status="open"))
    body = json.dumps(failed).encode()
    assert webhooks.handle(conn, body, sign_webhook(body, WEBHOOK_SECRET), secret=WEBHOOK_SECRET,
                           settings=settings, lifecycle=platform.lifecycle).status == 200
    cycle()  # grace over: suspended by the enforcer's billing reporter
    assert records.require(conn, "acme-corp").suspended_reason == payments.NON_PAYMENT_REASON
    cycle()  # the next cycle pushes the suspension to the limiter
    assert limiter.acquire("acme-corp", "pro").reason is Reason.SUSPENDED

    paid = fake_stripe.event("invoice.paid", dict(failed["data"]["object"], status="paid"))  # that invoice, paid
    body = json.dumps(paid).encode()
    webhooks.handle(conn, body, sign_webhook(body, WEBHOOK_SECRET), secret=WEBHOOK_SECRET, settings=settings,
                    lifecycle=platform.lifecycle)
    assert records.require(conn, "acme-corp").state == "active"
    cycle()
    assert limiter.acquire("acme-corp", "pro").reason is Reason.OK
