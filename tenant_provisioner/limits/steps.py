"""The limits provisioning step (one of the lifecycle's extension steps, see `runtime.compose`).

``apply`` refuses the signup while the platform budget breaker blocks it (200 %: every signup;
100 %: free tiers), and gives the new tenant its breaker rows at ``ok`` for the current period,
so ``limits status`` shows it at once. ``undo`` removes those rows. Both are idempotent.
"""

from __future__ import annotations

from tenant_provisioner.limits.breakers import QUANTITIES
from tenant_provisioner.limits.budget import SignupBlocked, signup_block_reason
from tenant_provisioner.tenants.provisioning import ProvisionContext

_PERIOD = "SELECT date_trunc('month', now() AT TIME ZONE 'utc')::date"


class LimitsStep:
    name = "limits"

    def apply(self, ctx: ProvisionContext) -> None:
        with ctx.conn.transaction():
            row = ctx.conn.execute(_PERIOD).fetchone()
            assert row is not None
            period_start = row[0]
            reason = signup_block_reason(ctx.conn, ctx.tier, period_start)
            if reason:
                raise SignupBlocked(reason)
            ctx.conn.execute(
                "INSERT INTO control.tenant_breakers (tenant_id, quantity, level, period_start, tier)"
                " SELECT %s, quantity, 'ok', %s, %s FROM unnest(%s::text[]) AS quantity"
                " ON CONFLICT (tenant_id, quantity) DO NOTHING",
                (ctx.request.tenant_id, period_start, ctx.tier.name, list(QUANTITIES)))

    def undo(self, ctx: ProvisionContext) -> None:
        with ctx.conn.transaction():
            ctx.conn.execute("DELETE FROM control.tenant_breakers WHERE tenant_id = %s", (ctx.request.tenant_id,))

