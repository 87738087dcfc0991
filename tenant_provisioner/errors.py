"""Typed errors with messages an operator or a signup flow can act on.

Every error carries an `exit_code` the CLI returns and a stable `code` the Lambda handlers put
in structured error responses, so callers never have to parse message text.
"""

from __future__ import annotations


class PlatformError(Exception):
    """Base of every error this package raises on purpose."""

    code = "platform_error"
    exit_code = 1
    retryable = False


class InvalidInput(PlatformError):
    """The caller sent something we refuse; nothing was changed."""

    code = "invalid_input"
    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


class ConfigError(PlatformError):
    """A configuration file or setting is wrong; names the file and field."""

    code = "config_error"
    exit_code = 2


class TenantNotFound(PlatformError):
    code = "tenant_not_found"
    exit_code = 2

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} does not exist")
        self.tenant_id = tenant_id


class TenantConflict(PlatformError):
    """The tenant exists in a state or tier that makes the request impossible as asked."""

    code = "tenant_conflict"
    exit_code = 2


class TransientError(PlatformError):
    """A dependency failed in a way a retry may fix (database, AWS, Stripe, Redis)."""

    code = "transient"
    exit_code = 1
    retryable = True
