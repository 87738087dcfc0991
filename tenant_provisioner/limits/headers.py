"""RateLimit response fields per draft-ietf-httpapi-ratelimit-headers-10 (pinned; names changed
between drafts 06 and 07+, so clients should key on this version).

Two quota policies per tenant: ``"burst"`` (the GCRA bucket: ``q`` = burst, ``w`` = seconds to
refill it at the tier rate) and ``"monthly"`` (the billing-period hard limit). ``RateLimit``
carries only the policy with the lower remaining units, as the draft requires, which also keeps a
large monthly remainder from being advertised. Values are delta-seconds, never epoch times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DRAFT = "draft-ietf-httpapi-ratelimit-headers-10"
BURST_POLICY = "burst"
MONTHLY_POLICY = "monthly"


@dataclass(frozen=True)
class PolicyState:
    """One quota policy as advertised (`quota`, `window_s`) and its current state."""

    name: str
    quota: int
    window_s: int
    remaining: int
    reset_s: int


def delta_seconds(seconds: float) -> int:
    """Whole seconds, rounded up so a client never retries too early; never negative."""
    return max(0, math.ceil(seconds - 1e-9))


def ratelimit_fields(policies: list[PolicyState], retry_after: float | None) -> dict[str, str]:
    """`RateLimit-Policy`, `RateLimit` and, for a refusal that can be retried, `Retry-After`."""
    fields = {
        "RateLimit-Policy": ", ".join(f'"{p.name}";q={p.quota};w={p.window_s}' for p in policies),
    }
    tightest = min(policies, key=lambda p: (p.remaining, -p.reset_s))
    reset = tightest.reset_s
    if retry_after is not None:
        # Retry-After and t SHOULD name the same instant; Retry-After wins for clients anyway.
        reset = max(1, delta_seconds(retry_after))
        fields["Retry-After"] = str(reset)
    fields["RateLimit"] = f'"{tightest.name}";r={max(0, tightest.remaining)};t={reset}'
    return fields
