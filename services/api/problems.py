"""Every error as RFC 9457 problem+json, including validation errors and database surprises:
the API answers 4xx for bad input and 503 for trouble a retry may fix, never a bare 500."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from services.api.models import Problem
from tenant_provisioner.errors import TransientError
from tenant_provisioner.gateway.middleware import problem_body
from tenant_provisioner.gateway.sessions import PoolExhausted

log = logging.getLogger("saas.api")
MEDIA_TYPE = "application/problem+json"

_PROBLEM_CONTENT = {MEDIA_TYPE: {"schema": Problem.model_json_schema()}}
# Documented on every tenant route, so clients and schemathesis know every error shape.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": _PROBLEM_CONTENT, "model": None}
    for status, text in ((400, "Malformed request body"), (401, "Missing, unknown or revoked API key"), (403, "Tenant not active"),
                         (404, "No such resource for this tenant"), (409, "Conflicts with existing data"),
                         (422, "Invalid input"), (429, "Rate limit or quota exceeded (see Retry-After)"),
                         (503, "Temporarily unavailable (see Retry-After)"))
}
for _entry in PROBLEM_RESPONSES.values():
    del _entry["model"]


class ApiProblem(Exception):
    def __init__(self, status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = headers or {}
        self.extra = extra


def problem(status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> Response:
    return Response(problem_body(status, slug, title, detail, **extra), status_code=status,
                    media_type=MEDIA_TYPE, headers=headers)


async def _api_problem(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    return problem(exc.status, exc.slug, exc.title, exc.detail, exc.headers, **exc.extra)


async def _http(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    slug = {400: "malformed-request", 404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem(exc.status_code, slug, str(exc.detail), str(exc.detail), dict(exc.headers or {}))


async def _validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    return problem(422, "invalid-input", "Invalid input", "The request does not match the API schema.",
                   errors=errors)


async def _database(request: Request, exc: Exception) -> Response:
    """Constraint failures the models could not rule out (e.g. a duplicate name) are the caller's;
    lost connections and timeouts are retryable."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return problem(409, "conflict", "Conflict", "A resource with these values already exists.")
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return problem(409, "conflict", "Conflict", "The resource is referenced by, or refers to, a missing resource.")
    if isinstance(exc, (psycopg.errors.IntegrityError, psycopg.errors.DataError)):
        return problem(422, "invalid-input", "Invalid input", "The database refused a value of the request.")
    if isinstance(exc, (psycopg.OperationalError, psycopg.errors.QueryCanceled)):
        return problem(503, "temporarily-unavailable", "Service unavailable",
                       "The tenant database did not answer in time; retry shortly.", {"Retry-After": "1"})
    log.error("unexpected database error", exc_info=exc,
              extra={"fields": {"request_id": getattr(request.state, "request_id", None)}})
    return problem(500, "internal", "Internal error", "Unexpected error; it was logged with the request id.")


async def _transient(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, TransientError)
    retry = str(exc.retry_after) if isinstance(exc, PoolExhausted) else "1"
    return problem(503, "temporarily-unavailable", "Service unavailable",
                   "No database capacity for this tenant right now; retry after the indicated delay.",
                   {"Retry-After": retry})


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc,
              extra={"fields": {"request_id": getattr(request.state, "request_id", None)}})
    return problem(500, "internal", "Internal error", "Unexpected error; it was logged with the request id.")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(psycopg.Error, _database)
    app.add_exception_handler(TransientError, _transient)
    app.add_exception_handler(Exception, _unexpected)
