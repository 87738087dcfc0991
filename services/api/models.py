"""Request and response bodies: every input bounded so nothing reaches PostgreSQL that it would
reject with an error (bigint range, numeric precision, NUL bytes, invalid UTF-8)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

MAX_ID = 2**63 - 1
MAX_TOKENS = 10**12


def _storable(value: str) -> str:
    """Text PostgreSQL can store: valid UTF-8 (no lone surrogates), no control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: object) -> object:
    """Only what the OpenAPI document promises (RFC 3339 `date-time` with an offset): pydantic would
    also take numbers as Unix times and naive times, which the schema calls invalid."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-11-29T12:00:00Z")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]


def Text(max_length: int) -> type[str]:  # noqa: N802 - a type alias factory
    return Annotated[str, Field(min_length=1, max_length=max_length), AfterValidator(_storable)]  # type: ignore[return-value]


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Usd = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=6, allow_inf_nan=False)]
BudgetUsd = Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2, allow_inf_nan=False)]
Share = Annotated[Decimal, Field(gt=0, le=1, max_digits=4, decimal_places=3, allow_inf_nan=False)]
Period = Literal["day", "week", "month"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectIn(Strict):
    name: Text(100)  # type: ignore[valid-type]


class ProjectPatch(Strict):
    name: Text(100) | None = None  # type: ignore[valid-type]
    archived: bool | None = None


class Project(BaseModel):
    id: int
    name: str
    created_at: datetime
    archived_at: datetime | None


class UsageIn(Strict):
    project_id: Id
    provider: Text(50)  # type: ignore[valid-type]
    model: Text(100)  # type: ignore[valid-type]
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    cost_usd: Usd
    occurred_at: Timestamp | None = Field(default=None, description="default: now")


class UsageRecord(BaseModel):
    id: int
    project_id: int
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    occurred_at: datetime
    recorded_at: datetime


class UsageSummaryRow(BaseModel):
    project_id: int
    provider: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


class UsageSummary(BaseModel):
    start: datetime
    end: datetime
    rows: list[UsageSummaryRow]
    total_cost_usd: Decimal


class BudgetIn(Strict):
    project_id: Id | None = Field(default=None, description="null: the whole tenant")
    period: Period = "month"
    amount_usd: BudgetUsd
    warn_at_share: Share = Decimal("0.8")


class BudgetPatch(Strict):
    period: Period | None = None
    amount_usd: BudgetUsd | None = None
    warn_at_share: Share | None = None


class Budget(BaseModel):
    id: int
    project_id: int | None
    period: str
    amount_usd: Decimal
    warn_at_share: Decimal
    created_at: datetime


class Alert(BaseModel):
    id: int
    budget_id: int
    kind: str
    message: str
    triggered_at: datetime
    acknowledged_at: datetime | None


class AlertPatch(Strict):
    acknowledged: bool


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict] | None = None
