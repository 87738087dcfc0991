"""Input checks that run before anything touches the database, so bad input changes nothing."""

from __future__ import annotations

import re

from tenant_provisioner.errors import InvalidInput

TENANT_ID_PATTERN = re.compile(r"[a-z][a-z0-9-]{2,39}")
# Slugs that would be confusing or dangerous as a customer's name: our own hosts, SQL/system
# words, and names that look like ours.
RESERVED_TENANT_IDS = frozenset({
    "admin", "administrator", "api", "app", "auth", "billing", "control", "dashboard", "default",
    "docs", "help", "internal", "login", "mail", "ops", "pg-catalog", "platform", "postgres",
    "provisioner", "public", "root", "saas", "security", "signup", "status", "stripe", "support",
    "system", "tenant", "tenants", "test", "www",
})
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_MAX_TEXT = 200


def tenant_id(value: object) -> str:
    """A customer slug: ``^[a-z][a-z0-9-]{2,39}$``, no ``--`` or trailing dash, not reserved."""
    if not isinstance(value, str):
        raise InvalidInput("tenant_id", "must be a string")
    if not TENANT_ID_PATTERN.fullmatch(value):
        raise InvalidInput("tenant_id", f"{value!r} must match ^[a-z][a-z0-9-]{{2,39}}$ "
                                        "(3-40 lower-case letters, digits, dashes; starts with a letter)")
    if value.endswith("-") or "--" in value:
        raise InvalidInput("tenant_id", f"{value!r} must not end with a dash or contain '--'")
    if value in RESERVED_TENANT_IDS:
        raise InvalidInput("tenant_id", f"{value!r} is reserved")
    return value


def email(value: object, field: str = "admin_email") -> str:
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.fullmatch(value):
        raise InvalidInput(field, f"{value!r} is not a valid email address")
    return value


def text(value: object, field: str, *, required: bool) -> str | None:
    """Free text (company name, suspension reason): printable, at most 200 characters."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(field, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    value = value.strip()
    if len(value) > _MAX_TEXT or not value.isprintable():
        raise InvalidInput(field, f"must be printable text of at most {_MAX_TEXT} characters")
    return value


def actor(value: object) -> str:
    checked = text(value, "actor", required=True)
    assert checked is not None
    return checked
