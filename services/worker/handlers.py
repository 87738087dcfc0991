"""Tenant job handlers (budget evaluation, daily usage rollups). Each runs on a connection logged in as the job's tenant role and is
idempotent: running a job twice (at-least-once delivery) changes nothing the second time."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import psycopg

from tenant_provisioner.gateway.jobs import EVALUATE_BUDGETS, ROLLUP_USAGE

# Spend of a budget's current period (UTC), the whole tenant or one project.
_SPEND = """
WITH bounds AS (
    SELECT date_trunc(%(period)s, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start_at,
           (date_trunc(%(period)s, now() AT TIME ZONE 'UTC') + ('1 ' || %(period)s)::interval) AT TIME ZONE 'UTC' AS end_at)
SELECT bounds.start_at, coalesce(sum(u.cost_usd), 0)
FROM bounds LEFT JOIN ai_usage_records u
  ON u.occurred_at >= bounds.start_at AND u.occurred_at < bounds.end_at
 AND (%(project)s::bigint IS NULL OR u.project_id = %(project)s)
GROUP BY bounds.start_at
"""


async def evaluate_budgets(conn: psycopg.AsyncConnection, payload: dict[str, Any]) -> int:
    """Raise one ``budget_warning`` / ``budget_exceeded`` alert per budget and period at most.

    The budget row is locked while it is evaluated, so two evaluations of one tenant (a retried
    job and a new one) cannot both insert the same alert. Returns the alerts raised."""
    raised = 0
    budgets = await (await conn.execute("SELECT id FROM budgets ORDER BY id")).fetchall()
    for (budget_id,) in budgets:
        async with conn.transaction():
            row = await (await conn.execute(
                "SELECT project_id, period, amount_usd, warn_at_share FROM budgets WHERE id = %s FOR UPDATE",
                (budget_id,))).fetchone()
            if row is None:
                continue  # deleted meanwhile
            project_id, period, amount, share = row
            period = period if period in ("day", "week", "month") else "month"
            spent_row = await (await conn.execute(_SPEND, {"period": period, "project": project_id})).fetchone()
            assert spent_row is not None
            start_at, spent = spent_row
            reached = [kind for kind, threshold in (("budget_warning", amount * share), ("budget_exceeded", amount))
                       if spent >= threshold]
            for kind in reached:
                exists = await (await conn.execute(
                    "SELECT 1 FROM alerts WHERE budget_id = %s AND kind = %s AND triggered_at >= %s",
                    (budget_id, kind, start_at))).fetchone()
                if exists:
                    continue
                scope = f"project {project_id}" if project_id else "all projects"
                await conn.execute(
                    "INSERT INTO alerts (budget_id, kind, message) VALUES (%s, %s, %s)",
                    (budget_id, kind, f"{scope}: ${spent:.2f} spent this {period} of a ${amount:.2f} budget "
                                      f"({float(spent / amount):.0%})"))
                raised += 1
    return raised


# Days (UTC) that received usage records in the last `lookback` and their full totals.
_ROLLUP = """
WITH touched AS (
    SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date AS day
    FROM ai_usage_records WHERE recorded_at >= now() - make_interval(secs => %(lookback)s))
INSERT INTO usage_daily AS d (day, project_id, provider, model, requests, input_tokens, output_tokens, cost_usd)
SELECT t.day, u.project_id, u.provider, u.model, count(*), sum(u.input_tokens), sum(u.output_tokens), sum(u.cost_usd)
FROM touched t JOIN ai_usage_records u
  ON u.occurred_at >= t.day::timestamp AT TIME ZONE 'UTC' AND u.occurred_at < (t.day + 1)::timestamp AT TIME ZONE 'UTC'
GROUP BY t.day, u.project_id, u.provider, u.model
ON CONFLICT (day, project_id, provider, model) DO UPDATE
SET requests = EXCLUDED.requests, input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens,
    cost_usd = EXCLUDED.cost_usd, updated_at = now()
WHERE (d.requests, d.cost_usd) IS DISTINCT FROM (EXCLUDED.requests, EXCLUDED.cost_usd)
"""
ROLLUP_LOOKBACK_S = 2 * 86400


async def rollup_usage(conn: psycopg.AsyncConnection, payload: dict[str, Any]) -> int:
    """Recompute the daily totals of every day that received records recently (idempotent: a day
    is always recomputed whole, never incremented). Returns the rows written."""
    async with conn.transaction():
        cur = await conn.execute(_ROLLUP, {"lookback": float(payload.get("lookback_s", ROLLUP_LOOKBACK_S))})
        return cur.rowcount


Handler = Callable[[psycopg.AsyncConnection, dict[str, Any]], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {EVALUATE_BUDGETS: evaluate_budgets, ROLLUP_USAGE: rollup_usage}
