"""The operator CLI: output shapes, exit codes, and bad input that changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tenant_provisioner.cli.main import app

BAD_CREATES = [
    (["acme'; DROP TABLE control.tenants;--"], "tenant_id"),
    (["acme;corp"], "tenant_id"),
    (["\u00e4cme-corp"], "tenant_id"),
    (["Acme-Corp"], "tenant_id"),
    (["ab"], "tenant_id"),
    (["a" * 41], "tenant_id"),
    (["admin"], "reserved"),
    (["acme-"], "tenant_id"),
    (["acme-corp", "--tier", "platinum"], "unknown tier"),
    (["acme-corp", "--admin-email", "not-an-email"], "admin_email"),
]


@pytest.fixture()
def cli(tenant_db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", tenant_db.url)
    monkeypatch.setenv("TENANT_PROVISIONER_ROLE", tenant_db.provisioner_role)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)
    return run


def _catalog(tenant_db):
    """What a create could change: schemas and relations here, tenant roles, control rows.
    (Roles are counted as members of this database's tenant group: other runs share the cluster.)"""
    with tenant_db.admin() as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM pg_namespace), (SELECT count(*) FROM pg_class),"
            " (SELECT count(*) FROM pg_auth_members WHERE roleid = %s::regrole),"
            " (SELECT count(*) FROM control.tenants), (SELECT count(*) FROM control.audit_log)",
            (f"{tenant_db.provisioner_role}_tenants",)).fetchone()


def test_lifecycle_through_the_cli(cli, tmp_path):
    pool = cli("warm-pool", "--size", "1")
    assert pool.exit_code == 0 and json.loads(pool.stdout)["size"] == 1
    created = cli("create", "cli-co", "--tier", "starter", "--admin-email", "ops@cli.example", "--name", "CLI Co")
    assert created.exit_code == 0, created.output
    data = json.loads(created.stdout)
    assert set(data) >= {"tenant_id", "status", "tier", "schema", "role", "schema_version", "created", "duration_ms"}
    assert data["status"] == "active" and data["created"] is True
    again = json.loads(cli("create", "cli-co", "--tier", "starter", "--admin-email", "ops@cli.example").stdout)
    assert again["created"] is False and again["schema"] == data["schema"]
    assert json.loads(cli("show", "cli-co").stdout)["schema_name"] == data["schema"]
    listed = json.loads(cli("list", "--json").stdout)
    assert [t["tenant_id"] for t in listed] == ["cli-co"]
    assert cli("suspend", "cli-co", "--reason", "unpaid").exit_code == 0
    assert json.loads(cli("show", "cli-co").stdout)["state"] == "suspended"
    assert cli("resume", "cli-co").exit_code == 0
    assert cli("change-tier", "cli-co", "--tier", "pro").exit_code == 0
    assert "cli-co" in cli("list").stdout
    migrated = cli("migrate", "--concurrency", "2")
    assert migrated.exit_code == 0 and json.loads(migrated.stdout)["pending"] == 0
    offboarded = cli("offboard", "cli-co", "--export-dir", str(tmp_path), "--drop-now")
    assert offboarded.exit_code == 0, offboarded.output
    assert json.loads(offboarded.stdout)["status"] == "offboarded"


def test_offboard_keeps_the_data_for_the_configured_retention_unless_told_to_drop_now(cli, tenant_db, tmp_path):
    for tenant_id in ("keep-co", "drop-co"):
        assert cli("create", tenant_id, "--tier", "starter", "--admin-email", "ops@cli.example").exit_code == 0
    refused = cli("offboard", "drop-co", "--export-dir", str(tmp_path), "--retention-days", "0")
    assert refused.exit_code == 2 and "--drop-now" in refused.stderr
    assert json.loads(cli("show", "drop-co").stdout)["state"] == "active"  # refused before anything changed

    kept = cli("offboard", "keep-co", "--export-dir", str(tmp_path))
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.stdout)["status"] == "offboarding"  # dropped before the fix
    with tenant_db.admin() as conn:
        days = conn.execute("SELECT round(extract(epoch FROM drop_after - now()) / 86400)::int"
                            " FROM control.tenants WHERE tenant_id = 'keep-co'").fetchone()[0]
    assert days == 30

    dropped = cli("offboard", "drop-co", "--export-dir", str(tmp_path), "--drop-now")
    assert dropped.exit_code == 0 and json.loads(dropped.stdout)["status"] == "offboarded"


def test_a_refused_create_prints_only_its_error(cli):
    assert cli("create", "dup-co", "--tier", "starter", "--admin-email", "ops@cli.example").exit_code == 0
    conflict = cli("create", "dup-co", "--tier", "pro", "--admin-email", "ops@cli.example")
    assert conflict.exit_code == 2
    assert conflict.stderr.splitlines() == [line for line in conflict.stderr.splitlines() if line.startswith("error:")]
    assert "notice" not in conflict.stderr


def test_list_never_cuts_ids_when_not_a_terminal(cli):
    tenant_id = "a-very-long-tenant-id-of-forty-chars-xyz"
    assert cli("create", tenant_id, "--tier", "starter", "--admin-email", "someone.long@example.com").exit_code == 0
    schema = json.loads(cli("show", tenant_id).stdout)["schema_name"]
    table = cli("list").stdout
    assert tenant_id in table and schema in table and "someone.long@example.com" in table and "…" not in table


@pytest.mark.parametrize(("extra", "message"), BAD_CREATES)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(cli, tenant_db, extra, message):
    args = {"--tier": "pro", "--admin-email": "a@example.com"}
    tenant_id, *overrides = extra
    for flag, value in zip(overrides[::2], overrides[1::2]):
        args[flag] = value
    before = _catalog(tenant_db)
    result = cli("create", tenant_id, *[part for pair in args.items() for part in pair])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert _catalog(tenant_db) == before


@pytest.mark.parametrize("args", [
    ["show", "no-such-co"], ["suspend", "bad;id", "--reason", "x"], ["resume", "no-such-co"],
    ["change-tier", "no-such-co", "--tier", "gold"], ["migrate", "--concurrency", "0"], ["warm-pool", "--size", "-1"],
    ["offboard", "no-such-co"], ["suspend", "no-such-co", "--reason", ""],
])
def test_other_bad_input_exits_2(cli, args):
    result = cli(*args)
    assert result.exit_code == 2 and result.stderr.startswith("error:")


def test_module_entry_point_and_failure_exit_code(tenant_db):
    env = {**os.environ, "DATABASE_URL": tenant_db.url, "TENANT_PROVISIONER_ROLE": tenant_db.provisioner_role}
    bad = subprocess.run([sys.executable, "-m", "tenant_provisioner", "create", "x;y", "--tier", "pro",
                          "--admin-email", "a@example.com"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"
    down = subprocess.run([sys.executable, "-m", "tenant_provisioner", "list"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert down.returncode == 1 and down.stderr.startswith("error:")


def test_running_before_init_says_what_to_do(cli, monkeypatch):
    monkeypatch.setenv("TENANT_PROVISIONER_ROLE", "no_such_provisioner")
    result = cli("list")
    assert result.exit_code == 2 and "tenant-provisioner init" in result.stderr


def test_init_against_a_database_that_does_not_exist_says_how_to_create_it(tenant_db, monkeypatch):
    from psycopg.conninfo import make_conninfo

    missing = make_conninfo(tenant_db.url, dbname="app_not_created_yet")
    result = CliRunner().invoke(app, ["--database-url", missing, "init"])
    assert result.exit_code == 2, result.output  # was 1 with the server's raw "FATAL: database ... does not exist"
    (line,) = result.stderr.strip().splitlines()
    assert "'app_not_created_yet' does not exist" in line and "CREATE DATABASE app_not_created_yet" in line
    assert "FATAL" not in line
    monkeypatch.setenv("TENANT_PROVISIONER_ROLE", tenant_db.provisioner_role)
    listed = CliRunner().invoke(app, ["--database-url", missing, "list"])  # a service would retry: exit 1
    assert listed.exit_code == 1 and "CREATE DATABASE app_not_created_yet" in listed.stderr
