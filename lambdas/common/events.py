"""How handlers read an event: what they refuse is an `InvalidInput` (the shared decorator,
`tenant_provisioner.runtime.lambda_handler`, answers it with a structured rejection) — never a
``TypeError`` from reading a ``null``, a string or a list as a dict.
"""

from __future__ import annotations

from typing import Any

from tenant_provisioner.errors import InvalidInput


def require_object(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidInput("event", f"must be a JSON object, got {type(event).__name__}")
    return event


def whole_number(event: dict[str, Any], key: str, default: int) -> int:
    value = event.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(key, f"must be a whole number, got {value!r}")
    return value
