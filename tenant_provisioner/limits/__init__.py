"""Tier limits with no exceptions: the Redis rate limiter, quota circuit breakers, the enforcer.

Entry points: `RateLimiter` / `AsyncRateLimiter` (one-round-trip decisions), `RateLimitMiddleware`
(ASGI), `tenant_provisioner.limits.enforcer.run_cycle` (the scheduled enforcement) and the
``limits`` CLI sub-app.
"""

from tenant_provisioner.limits.limiter import AsyncRateLimiter, Decision, RateLimiter, Reason, TenantKeys

__all__ = ["AsyncRateLimiter", "Decision", "RateLimiter", "Reason", "TenantKeys"]
