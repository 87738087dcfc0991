"""`tenant-provisioner keys`: JSON output, secrets shown once and stored only as hashes, exit code 2
for bad input with nothing changed; `sync-passwords` sets SCRAM verifiers of derived passwords."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import psycopg
from typer.testing import CliRunner

from tenant_provisioner.cli.main import app
from tenant_provisioner.gateway import keys
from tenant_provisioner.gateway.credentials import PasswordDeriver

runner = CliRunner()


def _cli(platform, *args, env=None):
    return runner.invoke(app, ["--database-url", platform.url, "--provisioner-role", platform.provisioner_role,
                               *args], env=env)


def test_create_list_revoke(platform):
    platform.tenant("cli-co", "starter")
    created = _cli(platform, "keys", "create", "cli-co", "--name", "ci deploys")
    assert created.exit_code == 0, created.output
    issued = json.loads(created.stdout)
    assert set(issued) >= {"key_id", "api_key", "prefix", "tenant_id"}
    assert issued["api_key"].startswith(f"starter_{issued['key_id']}_") and issued["prefix"] == f"starter_{issued['key_id']}"
    with psycopg.connect(platform.url) as conn:
        stored = conn.execute("SELECT key_hash FROM control.api_keys WHERE key_id = %s", (issued["key_id"],)).fetchone()
    assert bytes(stored[0]) == hashlib.sha256(issued["api_key"].encode()).digest()
    listed = json.loads(_cli(platform, "keys", "list", "cli-co").stdout)
    assert issued["api_key"] not in json.dumps(listed)
    assert {k["key_id"]: k["status"] for k in listed}[issued["key_id"]] == "active"
    revoked = _cli(platform, "keys", "revoke", issued["prefix"])
    assert revoked.exit_code == 0 and json.loads(revoked.stdout)["status"] == "revoked"
    assert _cli(platform, "keys", "revoke", issued["key_id"]).exit_code == 0  # idempotent


def test_bad_input_exits_2_and_changes_nothing(platform):
    platform.tenant("quiet-co", "starter")
    with psycopg.connect(platform.url) as conn:
        before = conn.execute("SELECT count(*) FROM control.api_keys").fetchone()[0]
    for args in (["create", "Bad_Id"], ["create", "nobody-co"], ["create", "quiet-co", "--name", ""],
                 ["list", "nobody-co"], ["revoke", "xyz"], ["revoke", "0123456789abcdef"]):
        result = _cli(platform, "keys", *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ")
    with psycopg.connect(platform.url) as conn:
        assert conn.execute("SELECT count(*) FROM control.api_keys").fetchone()[0] == before


def test_keys_of_suspended_tenants_are_not_issued(platform):
    platform.tenant("paused-co", "starter")
    assert _cli(platform, "suspend", "paused-co", "--reason", "test").exit_code == 0
    assert _cli(platform, "keys", "create", "paused-co").exit_code == 2


def _scram_matches(verifier: str, password: str) -> bool:
    """Check a PostgreSQL SCRAM-SHA-256 verifier against a password (RFC 5802 StoredKey)."""
    _, params, keys_part = verifier.split("$")
    iterations, salt = params.split(":")
    stored_key = base64.b64decode(keys_part.split(":")[0])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest() == stored_key


def test_sync_passwords_sets_every_live_role_to_its_derived_password(platform):
    platform.tenant("pw-co", "starter")
    key = "k" * 40
    result = _cli(platform, "keys", "sync-passwords", env={"TENANT_DB_PASSWORD_KEY": key})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["roles_updated"] >= 1
    with psycopg.connect(platform.url) as conn:
        role = conn.execute("SELECT role_name FROM control.tenants WHERE tenant_id = 'pw-co'").fetchone()[0]
        verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()[0]
    assert _scram_matches(verifier, PasswordDeriver.from_text(key).password(role))
    assert not _scram_matches(verifier, PasswordDeriver.from_text(key, version=2).password(role))
    assert _cli(platform, "keys", "sync-passwords", env={"TENANT_DB_PASSWORD_KEY": "short"}).exit_code == 2


def test_parse_never_raises_and_accepts_only_the_format():
    for junk in ("", "x" * 500, "pro_", "pro_0123456789abcdef_", "PRO_0123456789abcdef_" + "a" * 48, "\x00", "é" * 70):
        assert keys.parse(junk) is None
    assert keys.parse("pro_0123456789abcdef_" + "a" * 48).key_id == "0123456789abcdef"
