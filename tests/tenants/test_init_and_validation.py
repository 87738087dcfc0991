"""`init` (idempotent, concurrent, tamper-evident, hardening) and input validation."""

from __future__ import annotations

import string
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_provisioner import control, migrations, validation
from tenant_provisioner.db import admin_connect
from tenant_provisioner.errors import ConfigError, InvalidInput


def test_init_is_idempotent_and_concurrent_runs_queue(fresh_tenant_db):
    def run(_):
        with admin_connect(fresh_tenant_db.url) as conn:
            return control.init(conn, fresh_tenant_db.provisioner_role)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, range(3)))
    assert all(r.applied == () for r in results)  # the fixture already applied everything
    with fresh_tenant_db.admin() as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM control.schema_migrations ORDER BY 1")]
        assert versions == [m.version for m in migrations.load("control")]
        public = conn.execute("SELECT count(*) FROM pg_database, aclexplode(datacl) a"
                              " WHERE datname = current_database() AND a.grantee = 0").fetchone()
        assert public == (0,)


def test_init_refuses_an_edited_applied_migration(fresh_tenant_db):
    with fresh_tenant_db.admin() as conn:
        conn.execute("UPDATE control.schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(ConfigError, match="changed after it was applied"):
            control.init(conn, fresh_tenant_db.provisioner_role)


@pytest.mark.parametrize("bad", ["acme'; DROP TABLE x;--", "acme;corp", "\u00e4cme", "ACME", "ab", "a" * 41,
                                 "1acme", "acme-", "ac--me", "admin", "public", "", None, 42, "acme corp"])
def test_invalid_tenant_ids(bad):
    with pytest.raises(InvalidInput) as caught:
        validation.tenant_id(bad)
    assert caught.value.field == "tenant_id"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + "-_;'\" \u00e9\u4e2d", max_size=45))
def test_tenant_ids_are_either_valid_slugs_or_invalid_input(candidate):
    try:
        accepted = validation.tenant_id(candidate)
    except InvalidInput:
        return
    assert validation.TENANT_ID_PATTERN.fullmatch(accepted) and accepted not in validation.RESERVED_TENANT_IDS


@pytest.mark.parametrize("bad", ["nope", "a@b", "a@@b.io", "a b@c.io", "x" * 250 + "@example.com", None])
def test_invalid_emails(bad):
    with pytest.raises(InvalidInput):
        validation.email(bad)


def test_free_text_is_bounded_and_printable():
    assert validation.text("  Acme  ", "company_name", required=False) == "Acme"
    assert validation.text("", "company_name", required=False) is None
    for bad in ("x" * 201, "line\nbreak", "\x00"):
        with pytest.raises(InvalidInput):
            validation.text(bad, "company_name", required=False)
    with pytest.raises(InvalidInput):
        validation.text(None, "reason", required=True)
