"""Tenant-scoped endpoints. Every query runs on a connection logged in as the caller's tenant
role (`tenant_db`), with unqualified table names resolved by the role's search_path: a row id of
another tenant simply does not exist here, so it is a 404 without any existence leak."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, AsyncIterator

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from psycopg import sql
from psycopg.rows import dict_row

from services.api import models
from services.api.problems import ApiProblem, PROBLEM_RESPONSES

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)
PathId = Annotated[int, Path(ge=1, le=models.MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=200)]
AfterId = Annotated[int, Query(ge=0, le=models.MAX_ID)]


async def tenant_db(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    """A connection as the request's tenant role (the load-test floor serves a shared pool behind the
    same `session`), held until the route returns — not while the response is sent."""
    async with request.app.state.pools.session(request.state.tenant) as conn:
        yield conn


Db = Annotated[psycopg.AsyncConnection, Depends(tenant_db, scope="function")]


def _not_found(what: str, item_id: int) -> ApiProblem:
    return ApiProblem(404, "not-found", "Not found", f"{what} {item_id} does not exist")


async def _one(conn: psycopg.AsyncConnection, query: str | sql.Composable, params: Any) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def _all(conn: psycopg.AsyncConnection, query: str | sql.Composable, params: Any) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def _existing(conn: psycopg.AsyncConnection, what: str, item_id: int, query: str | sql.Composable,
                    params: Any) -> dict[str, Any]:
    """The row ``query`` returns, or a 404 saying ``what`` ``item_id`` does not exist."""
    row = await _one(conn, query, params)
    if row is None:
        raise _not_found(what, item_id)
    return row


async def _created(conn: psycopg.AsyncConnection, response: Response, collection: str,
                   query: str | sql.Composable, params: Any) -> dict[str, Any]:
    """The row the INSERT ``query`` returns; its URL (under ``/v1/<collection>/``) goes in Location."""
    row = await _one(conn, query, params)
    assert row is not None
    response.headers["Location"] = f"/v1/{collection}/{row['id']}"
    return row


def _utc(value: datetime | None) -> datetime:
    """The given time (always with an offset: `models.Timestamp`), or now."""
    return datetime.now(timezone.utc) if value is None else value


# -- projects ---------------------------------------------------------------------------------------
_PROJECT = "id, name, created_at, archived_at"


@router.get("/projects", response_model=list[models.Project], tags=["projects"])
async def list_projects(db: Db, limit: Limit = 50, after_id: AfterId = 0,
                        include_archived: bool = False) -> list[dict[str, Any]]:
    return await _all(db, f"SELECT {_PROJECT} FROM projects WHERE id > %s AND (%s OR archived_at IS NULL)"
                          " ORDER BY id LIMIT %s", (after_id, include_archived, limit))


@router.post("/projects", status_code=201, response_model=models.Project, tags=["projects"])
async def create_project(body: models.ProjectIn, db: Db, response: Response) -> dict[str, Any]:
    return await _created(db, response, "projects", f"INSERT INTO projects (name) VALUES (%s) RETURNING {_PROJECT}",
                          (body.name,))


@router.get("/projects/{project_id}", response_model=models.Project, tags=["projects"])
async def get_project(project_id: PathId, db: Db) -> dict[str, Any]:
    return await _existing(db, "project", project_id, f"SELECT {_PROJECT} FROM projects WHERE id = %s", (project_id,))


@router.patch("/projects/{project_id}", response_model=models.Project, tags=["projects"])
async def update_project(project_id: PathId, body: models.ProjectPatch, db: Db) -> dict[str, Any]:
    archived = body.archived
    return await _existing(db, "project", project_id, f"""
        UPDATE projects SET name = coalesce(%s, name),
               archived_at = CASE WHEN %s::boolean IS NULL THEN archived_at
                                  WHEN %s::boolean THEN coalesce(archived_at, now()) ELSE NULL END
        WHERE id = %s RETURNING {_PROJECT}""", (body.name, archived, archived, project_id))


@router.delete("/projects/{project_id}", status_code=204, tags=["projects"])
async def delete_project(project_id: PathId, db: Db) -> Response:
    await _existing(db, "project", project_id, "DELETE FROM projects WHERE id = %s RETURNING id", (project_id,))
    return Response(status_code=204)


# -- usage ------------------------------------------------------------------------------------------
@router.post("/usage", status_code=201, response_model=models.UsageRecord, tags=["usage"])
async def record_usage(body: models.UsageIn, db: Db, request: Request) -> dict[str, Any]:
    """Record one AI call; queues a budget evaluation and a usage rollup for the tenant (debounced)."""
    row = await _existing(db, "project", body.project_id, """
        INSERT INTO ai_usage_records (project_id, provider, model, input_tokens, output_tokens, cost_usd, occurred_at)
        SELECT id, %s, %s, %s, %s, %s, %s FROM projects WHERE id = %s
        RETURNING id, project_id, provider, model, input_tokens, output_tokens, cost_usd, occurred_at, recorded_at""",
                          (body.provider, body.model, body.input_tokens, body.output_tokens, body.cost_usd,
                           _utc(body.occurred_at), body.project_id))
    await request.app.state.jobs.after_usage(request.state.tenant)  # the floor: a no-op
    return row


@router.get("/usage/summary", response_model=models.UsageSummary, tags=["usage"])
async def usage_summary(db: Db, start: models.Timestamp | None = None, end: models.Timestamp | None = None,
                        project_id: Annotated[int | None, Query(ge=1, le=models.MAX_ID)] = None) -> dict[str, Any]:
    """Totals per project, provider and model over [start, end) (default: the last 30 days)."""
    end_at = _utc(end)
    start_at = _utc(start) if start else end_at - timedelta(days=30)
    if start_at >= end_at:
        raise ApiProblem(422, "invalid-range", "Invalid time range", "start must be before end")
    rows = await _all(db, """
        SELECT project_id, provider, model, count(*) AS requests, sum(input_tokens) AS input_tokens,
               sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd
        FROM ai_usage_records
        WHERE occurred_at >= %s AND occurred_at < %s AND (%s::bigint IS NULL OR project_id = %s)
        GROUP BY project_id, provider, model ORDER BY project_id, provider, model LIMIT 1000""",
                      (start_at, end_at, project_id, project_id))
    return {"start": start_at, "end": end_at, "rows": rows,
            "total_cost_usd": sum((r["cost_usd"] for r in rows), Decimal(0))}


# -- budgets ----------------------------------------------------------------------------------------
_BUDGET = "id, project_id, period, amount_usd, warn_at_share, created_at"


@router.get("/budgets", response_model=list[models.Budget], tags=["budgets"])
async def list_budgets(db: Db, limit: Limit = 50, after_id: AfterId = 0) -> list[dict[str, Any]]:
    return await _all(db, f"SELECT {_BUDGET} FROM budgets WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit))


@router.post("/budgets", status_code=201, response_model=models.Budget, tags=["budgets"])
async def create_budget(body: models.BudgetIn, db: Db, response: Response) -> dict[str, Any]:
    if body.project_id is not None:
        await _existing(db, "project", body.project_id, "SELECT 1 FROM projects WHERE id = %s", (body.project_id,))
    return await _created(db, response, "budgets",
                          f"INSERT INTO budgets (project_id, period, amount_usd, warn_at_share)"
                          f" VALUES (%s, %s, %s, %s) RETURNING {_BUDGET}",
                          (body.project_id, body.period, body.amount_usd, body.warn_at_share))


@router.get("/budgets/{budget_id}", response_model=models.Budget, tags=["budgets"])
async def get_budget(budget_id: PathId, db: Db) -> dict[str, Any]:
    return await _existing(db, "budget", budget_id, f"SELECT {_BUDGET} FROM budgets WHERE id = %s", (budget_id,))


@router.patch("/budgets/{budget_id}", response_model=models.Budget, tags=["budgets"])
async def update_budget(budget_id: PathId, body: models.BudgetPatch, db: Db) -> dict[str, Any]:
    return await _existing(db, "budget", budget_id, f"""
        UPDATE budgets SET period = coalesce(%s, period), amount_usd = coalesce(%s, amount_usd),
               warn_at_share = coalesce(%s, warn_at_share)
        WHERE id = %s RETURNING {_BUDGET}""", (body.period, body.amount_usd, body.warn_at_share, budget_id))


@router.delete("/budgets/{budget_id}", status_code=204, tags=["budgets"])
async def delete_budget(budget_id: PathId, db: Db) -> Response:
    await _existing(db, "budget", budget_id, "DELETE FROM budgets WHERE id = %s RETURNING id", (budget_id,))
    return Response(status_code=204)


# -- alerts (raised by the worker's budget evaluation) ----------------------------------------------
_ALERT = "id, budget_id, kind, message, triggered_at, acknowledged_at"


@router.get("/alerts", response_model=list[models.Alert], tags=["alerts"])
async def list_alerts(db: Db, limit: Limit = 50, after_id: AfterId = 0,
                      acknowledged: bool | None = None) -> list[dict[str, Any]]:
    return await _all(db, f"SELECT {_ALERT} FROM alerts WHERE id > %s AND (%s::boolean IS NULL OR"
                          " (acknowledged_at IS NOT NULL) = %s) ORDER BY id LIMIT %s",
                      (after_id, acknowledged, acknowledged, limit))


@router.get("/alerts/{alert_id}", response_model=models.Alert, tags=["alerts"])
async def get_alert(alert_id: PathId, db: Db) -> dict[str, Any]:
    return await _existing(db, "alert", alert_id, f"SELECT {_ALERT} FROM alerts WHERE id = %s", (alert_id,))


@router.patch("/alerts/{alert_id}", response_model=models.Alert, tags=["alerts"])
async def acknowledge_alert(alert_id: PathId, body: models.AlertPatch, db: Db) -> dict[str, Any]:
    return await _existing(db, "alert", alert_id, f"""
        UPDATE alerts SET acknowledged_at = CASE WHEN %s THEN coalesce(acknowledged_at, now()) ELSE NULL END
        WHERE id = %s RETURNING {_ALERT}""", (body.acknowledged, alert_id))


@router.delete("/alerts/{alert_id}", status_code=204, tags=["alerts"])
async def delete_alert(alert_id: PathId, db: Db) -> Response:
    await _existing(db, "alert", alert_id, "DELETE FROM alerts WHERE id = %s RETURNING id", (alert_id,))
    return Response(status_code=204)
