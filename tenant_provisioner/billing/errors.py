"""Billing's typed error, beside the package-wide ones in `tenant_provisioner.errors`."""

from __future__ import annotations

from tenant_provisioner.errors import PlatformError


class StripeRejected(PlatformError):
    """Stripe refused a request for a reason a retry will not fix; the message is Stripe's."""

    code = "stripe_rejected"
    exit_code = 1
