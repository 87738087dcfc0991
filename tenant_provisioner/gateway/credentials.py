"""Tenant database passwords derived from one key, so credentials cost does not grow with tenants.

``password = base64url(HMAC-SHA256(key, "<role>:<version>"))``: the provisioner sets each tenant
role's password to its derived value (as a SCRAM verifier, `schema.set_password`), and a service
holding the key (one Secrets Manager secret, $0.40/month whatever the tenant count, instead of
one $0.40 secret per tenant) derives the password of the role it must act as. Rotation: publish
a new key version, run ``tenant-provisioner keys sync-passwords`` (sets every role to the new
version's password), then retire the old key. Any language can derive it (HMAC-SHA256 + base64url,
docs/request-path.md), so a Node/Prisma service needs no Python.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import psycopg

from tenant_provisioner import audit
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.tenants import schema

MIN_KEY_BYTES = 32


@dataclass(frozen=True, repr=False)
class PasswordDeriver:
    """Derives tenant role passwords from `key` (never printed: ``repr`` hides it)."""

    key: bytes
    version: int = 1

    @classmethod
    def from_text(cls, text: str, version: int = 1) -> "PasswordDeriver":
        raw = text.encode()
        if len(raw) < MIN_KEY_BYTES:
            raise ConfigError(f"TENANT_DB_PASSWORD_KEY must be at least {MIN_KEY_BYTES} bytes "
                              "(e.g. `openssl rand -base64 48`)")
        return cls(key=raw, version=version)

    def password(self, role: str) -> str:
        mac = hmac.new(self.key, f"{role}:{self.version}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def __repr__(self) -> str:
        return f"PasswordDeriver(version={self.version})"


def sync_passwords(conn: psycopg.Connection, deriver: PasswordDeriver, *, actor: str) -> int:
    """Set every live tenant role's password to its derived value (rotation, or moving a fleet off
    per-tenant secrets; a suspended tenant's is recorded and applied on resume); idempotent.
    Returns the roles updated. One audit entry per run."""
    roles = [row[0] for row in conn.execute(
        "SELECT role_name FROM control.tenants WHERE state IN ('active', 'suspended') ORDER BY tenant_id")]
    with conn.transaction():
        for role in roles:
            schema.set_password(conn, role, deriver.password(role))
        audit.record(conn, tenant_id=None, action="tenant_passwords.derived", actor=actor,
                     detail={"roles": len(roles), "version": deriver.version})
    return len(roles)
