"""How handlers read an event and answer what they refuse.

A refused event gets a structured answer (``{"status": "rejected", "error": {...}}``) so nobody
retries it — never a ``TypeError`` from reading a ``null``, a string or a list as a dict.
"""

from __future__ import annotations

from typing import Any

from tenant_provisioner.errors import InvalidInput, PlatformError


def rejected(exc: PlatformError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": exc.code, "message": str(exc)}
    if isinstance(exc, InvalidInput):
        error["field"] = exc.field
    return {"status": "rejected", "error": error}


def require_object(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidInput("event", f"must be a JSON object, got {type(event).__name__}")
    return event


def whole_number(event: dict[str, Any], key: str, default: int) -> int:
    value = event.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(key, f"must be a whole number, got {value!r}")
    return value
