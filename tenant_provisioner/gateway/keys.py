"""API keys: issued by the operator CLI, resolved by the services on every request.

Format: ``<tier>_<key_id>_<secret>``, e.g. ``pro_3f9a0c1d2b4e5f60_<48 base32 chars>``.

- ``<tier>_`` is the tier at issue time, so the edge WAF's per-tier rate rules (scope-down
  ``STARTS_WITH "<tier>_"``) keep working; the services never trust it (the tier comes from the
  tenant row), so a stale prefix after a tier change only changes the coarse edge backstop.
- ``key_id`` (16 hex) is public: the primary key of ``control.api_keys``, so resolving a key is one
  indexed lookup and never a scan of tenant schemas. ``prefix`` = ``<tier>_<key_id>`` is what logs
  and the CLI show.
- ``secret`` is 240 random bits (base32, no underscore). Only SHA-256 of the whole key is stored:
  with that much entropy a slow password hash buys nothing, and the hash is compared with
  `hmac.compare_digest` (constant time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from tenant_provisioner import audit, validation
from tenant_provisioner.tenants import records as tenants
from tenant_provisioner.errors import InvalidInput, PlatformError, TenantConflict

KEY_PATTERN = re.compile(r"(?P<tier>[a-z][a-z0-9_]{0,39})_(?P<key_id>[0-9a-f]{16})_(?P<secret>[a-z2-7]{48})")
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")
ISSUABLE_STATES = ("active",)
MAX_KEYS_PER_TENANT = 50


class KeyNotFound(PlatformError):
    code = "key_not_found"
    exit_code = 2

    def __init__(self, key_id: str) -> None:
        super().__init__(f"API key {key_id!r} does not exist")


@dataclass(frozen=True)
class IssuedKey:
    """The result of `create`: ``api_key`` is shown once and never stored."""

    key_id: str
    api_key: str
    prefix: str
    tenant_id: str
    name: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "api_key": self.api_key, "prefix": self.prefix, "tenant_id": self.tenant_id,
                "name": self.name, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class KeyInfo:
    """A stored key without its secret (``keys list``)."""

    key_id: str
    tenant_id: str
    name: str
    prefix: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "tenant_id": self.tenant_id, "name": self.name, "prefix": self.prefix,
                "created_by": self.created_by, "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "status": "revoked" if self.revoked_at else "active"}


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    digest: bytes


def digest(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode()).digest()


def parse(api_key: str) -> ParsedKey | None:
    """The key id and hash of a well-formed key; None for anything else (never an exception)."""
    if not isinstance(api_key, str) or len(api_key) > 120:
        return None
    match = KEY_PATTERN.fullmatch(api_key)
    if match is None:
        return None
    return ParsedKey(key_id=match["key_id"], digest=digest(api_key))


def matches(parsed: ParsedKey, stored_hash: bytes) -> bool:
    return hmac.compare_digest(parsed.digest, bytes(stored_hash))


def _new_key(tier: str) -> tuple[str, str]:
    key_id = secrets.token_hex(8)
    secret = base64.b32encode(secrets.token_bytes(30)).decode().lower()
    return key_id, f"{tier}_{key_id}_{secret}"


def _name(value: object) -> str:
    text = validation.text(value, "name", required=True)
    assert text is not None
    if len(text) > 100:
        raise InvalidInput("name", "must be at most 100 characters")
    return text


def key_id(value: object) -> str:
    if not isinstance(value, str) or not KEY_ID_PATTERN.fullmatch(value):
        raise InvalidInput("key_id", f"{value!r} is not a key id (16 hex digits, the part after the tier "
                                     "in the key's prefix)")
    return value


def create(conn: psycopg.Connection, tenant_id: str, *, name: str, actor: str) -> IssuedKey:
    """Issue a key for an active tenant (one transaction with its audit entry)."""
    tenant_id, name, actor = validation.tenant_id(tenant_id), _name(name), validation.actor(actor)
    with conn.transaction():
        tenant = tenants.require(conn, tenant_id, for_update=True)
        if tenant.state not in ISSUABLE_STATES:
            raise TenantConflict(f"tenant {tenant_id!r} is {tenant.state}; keys are issued only to active tenants")
        row = conn.execute("SELECT count(*) FROM control.api_keys WHERE tenant_id = %s AND revoked_at IS NULL",
                           (tenant_id,)).fetchone()
        if row is not None and row[0] >= MAX_KEYS_PER_TENANT:
            raise TenantConflict(f"tenant {tenant_id!r} already has {MAX_KEYS_PER_TENANT} active keys; "
                                 "revoke one first")
        new_id, api_key = _new_key(tenant.tier)
        prefix = f"{tenant.tier}_{new_id}"
        created = conn.execute(
            "INSERT INTO control.api_keys (key_id, tenant_id, name, prefix, key_hash, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING created_at",
            (new_id, tenant_id, name, prefix, digest(api_key), actor)).fetchone()
        assert created is not None
        audit.record(conn, tenant_id=tenant_id, action="api_key.created", actor=actor,
                     detail={"key_id": new_id, "prefix": prefix, "name": name})
    return IssuedKey(key_id=new_id, api_key=api_key, prefix=prefix, tenant_id=tenant_id, name=name,
                     created_at=created[0])


_SELECT_INFO = ("SELECT key_id, tenant_id, name, prefix, created_by, created_at, revoked_at"
                " FROM control.api_keys")


def list_keys(conn: psycopg.Connection, tenant_id: str) -> list[KeyInfo]:
    tenants.require(conn, validation.tenant_id(tenant_id))
    with conn.cursor(row_factory=class_row(KeyInfo)) as cur:
        return cur.execute(_SELECT_INFO + " WHERE tenant_id = %s ORDER BY created_at, key_id", (tenant_id,)).fetchall()


def revoke(conn: psycopg.Connection, key: str, *, actor: str) -> KeyInfo:
    """Revoke by key id (or by the prefix ``<tier>_<key_id>``); repeating it is a no-op.

    Services cache a resolved key for at most `services` ``KEY_CACHE_SECONDS`` (2 s), so the key
    stops working on every instance within that time."""
    wanted = key_id(key.rsplit("_", 1)[-1] if isinstance(key, str) else key)
    actor = validation.actor(actor)
    with conn.transaction():
        with conn.cursor(row_factory=class_row(KeyInfo)) as cur:
            found = cur.execute(_SELECT_INFO + " WHERE key_id = %s FOR UPDATE", (wanted,)).fetchone()
        if found is None:
            raise KeyNotFound(wanted)
        if found.revoked_at is not None:
            return found
        conn.execute("UPDATE control.api_keys SET revoked_at = now() WHERE key_id = %s", (wanted,))
        audit.record(conn, tenant_id=found.tenant_id, action="api_key.revoked", actor=actor,
                     detail={"key_id": wanted, "prefix": found.prefix})
        with conn.cursor(row_factory=class_row(KeyInfo)) as cur:
            revoked = cur.execute(_SELECT_INFO + " WHERE key_id = %s", (wanted,)).fetchone()
    assert revoked is not None
    return revoked
