"""Helpers the settings classes share to read and write environment variables (and nothing else)."""

from __future__ import annotations

import os
from typing import Any, Mapping

from tenant_provisioner.errors import ConfigError

Env = Mapping[str, str]


def environ(env: Env | None) -> Env:
    """`env`, or the process environment: the one place a settings class reaches ``os.environ``."""
    return os.environ if env is None else env


def optional(env: Env, name: str) -> str | None:
    """The variable's value; None when unset or empty."""
    return env.get(name) or None


def required(env: Env, name: str, why: str) -> str:
    value = env.get(name)
    if not value:
        raise ConfigError(f"{name} is not set: {why}")
    return value


def whole_number(env: Env, name: str, default: int, minimum: int | None = None) -> int:
    """The variable as an int, refused below `minimum`; `default` (as given) when unset or empty."""
    return _parse(env, name, default, int, "a whole number", minimum)


def number(env: Env, name: str, default: float, minimum: float | None = None) -> float:
    """The variable as a float, refused below `minimum`; `default` (as given) when unset or empty."""
    return _parse(env, name, default, float, "a number", minimum)


def _parse(env: Env, name: str, default: Any, kind: type, described: str, minimum: float | None) -> Any:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {described}, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def names(env: Env, name: str) -> tuple[str, ...]:
    """A comma-separated list."""
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def to_env(values: Mapping[str, Any]) -> dict[str, str]:
    """Variables to set: None and empty values are left out (unset reads as the default)."""
    return {name: ",".join(value) if isinstance(value, tuple) else str(value)
            for name, value in values.items() if value is not None and value != "" and value != ()}
