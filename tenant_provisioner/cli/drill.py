"""``tenant-provisioner drill ...``: run disaster-recovery drills on demand and read their history.

``drill failover rds|cache --env prod --api-url …`` fails a store over to its standby and prints
what API clients saw (docs/runbooks/db-failover.md, cache-failover.md).

``drill restore --env prod`` starts the environment's restore-drill state machine (the same one
the monthly schedule starts) and follows it to the end; ``--here`` runs every step in this process
instead (from a host inside the VPC, e.g. an SSM session). ``drill history`` lists past drills
from ``control.restore_drills``. Exit codes: 0 verified, 1 failed drill or any other failure,
2 bad input or configuration.
"""

from __future__ import annotations

import json
import time
from enum import Enum
from typing import Annotated, Any, Optional

import boto3
import psycopg
import typer
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from rich.console import Console
from rich.table import Table

from tenant_provisioner.cli.errors import fail, handles_errors
from tenant_provisioner.drills import failover, restore
from tenant_provisioner.drills.interruption import Probe
from tenant_provisioner.errors import ConfigError

app = typer.Typer(name="drill", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Disaster-recovery drills: RDS restore (on demand; monthly by schedule), history.")
out = Console()
err = Console(stderr=True)
STATE_MACHINE_PARAMETER = "/saas/{env}/platform/restore-drill-state-machine-arn"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def _root(ctx: typer.Context):
    return ctx.find_root().obj


@app.command("restore")
@handles_errors
def restore_command(
        ctx: typer.Context,
        env: Annotated[Optional[str], typer.Option(help="Start the state machine of this environment (dev, prod)")] = None,
        here: Annotated[bool, typer.Option("--here", help="Run every step in this process (needs the VPC)")] = False,
        source: Annotated[Optional[str], typer.Option(help="--here: the RDS instance to restore from")] = None,
        poll_seconds: Annotated[float, typer.Option(min=0, help="Seconds between status checks")] = 30,
        wait: Annotated[bool, typer.Option(help="Follow the execution until it ends")] = True) -> None:
    """Restore the latest restorable point into a temporary instance, verify it, measure RTO/RPO, delete it."""
    if here == (env is not None):
        raise fail("choose one: --env <env> (start the state machine) or --here --source <instance>", 2)
    if here:
        outcome = _run_here(ctx, source, poll_seconds)
    else:
        outcome = _run_state_machine(env or "", poll_seconds, wait)
    if outcome is None:
        return
    _print_outcome(outcome)
    if not outcome.get("verified"):
        raise typer.Exit(1)


def _run_here(ctx: typer.Context, source: str | None, poll_seconds: float) -> dict[str, Any]:
    if not source:
        raise ConfigError("--here needs --source <RDS instance identifier>")
    settings = _root(ctx)
    if not settings.database_url:
        raise ConfigError("--here needs the source database: --database-url or DATABASE_URL")
    dbname = conninfo_to_dict(settings.database_url).get("dbname") or "postgres"

    def connect_restored(*, host: str, port: int, user: str, password: str) -> psycopg.Connection:
        conn = psycopg.connect(host=host, port=port, user=user, password=password, dbname=dbname,
                               sslmode="require", connect_timeout=15, autocommit=True)
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(settings.provisioner_role)))
        return conn

    database = settings.database()
    drill = restore.RestoreDrill(rds=boto3.client("rds"), cloudwatch=boto3.client("cloudwatch"), source=source)
    try:
        state = restore.run(drill, database.connection, connect_restored, poll_seconds=poll_seconds,
                            on_progress=lambda message: err.print(message, highlight=False))
    finally:
        database.close()
    return state["outcome"]


def _run_state_machine(env: str, poll_seconds: float, wait: bool) -> dict[str, Any] | None:
    name = STATE_MACHINE_PARAMETER.format(env=env)
    ssm = boto3.client("ssm")
    try:
        arn = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        raise ConfigError(f"no restore-drill state machine for {env!r} ({name} not found): deploy the "
                          f"saas-{env}-dr stack first") from None
    sfn = boto3.client("stepfunctions")
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    err.print(f"started {execution}", highlight=False)
    if not wait:
        return None
    while (described := sfn.describe_execution(executionArn=execution))["status"] not in TERMINAL:
        time.sleep(poll_seconds)
    return _outcome_of(sfn, described)


def _outcome_of(sfn: Any, described: dict[str, Any]) -> dict[str, Any]:
    """The Report step's outcome (also on the failure path), else the execution's own error."""
    events = sfn.get_execution_history(executionArn=described["executionArn"], reverseOrder=True,
                                       maxResults=100)["events"]
    for event in events:
        details = event.get("taskSucceededEventDetails") or event.get("lambdaFunctionSucceededEventDetails")
        if details and '"outcome"' in details.get("output", ""):
            return json.loads(details["output"])["outcome"]
    return {"verified": False, "error": f"execution {described['status']}: {described.get('cause') or described.get('error')}"}


def _print_outcome(outcome: dict[str, Any]) -> None:
    comparison = outcome.get("comparison") or {}
    verdict = "[green]VERIFIED[/green]" if outcome.get("verified") else "[red]FAILED[/red]"
    rto = outcome.get("rto_seconds")
    out.print(f"restore drill {verdict}: RTO {_minutes(rto)}, RPO {_minutes(outcome.get('rpo_seconds'))}; "
              f"{comparison.get('tenants_verified', 0)}/{comparison.get('tenants_expected', 0)} tenants, "
              f"{comparison.get('tables_verified', 0)} tables, {comparison.get('rows_verified', 0)} rows verified; "
              f"temporary instance: {outcome.get('cleanup')}", highlight=False)
    for tenant in comparison.get("tenants_written_during_capture", []):
        out.print(f"  written during capture (schema version checked only): {tenant}", highlight=False)
    for problem in comparison.get("problems", []):
        out.print(f"  problem: {problem}", highlight=False)
    if outcome.get("error"):
        out.print(f"  error: {outcome['error']}", highlight=False)


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min"


@app.command("history")
@handles_errors
def history(ctx: typer.Context,
            limit: Annotated[int, typer.Option(min=1, help="How many drills, newest first")] = 12,
            as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False) -> None:
    """Past restore drills of this database with their RTO, RPO and outcome."""
    with _root(ctx).database() as db, db.connection() as conn:
        rows = conn.execute("SELECT drill_id, source_instance, restore_time, finished_at, outcome "
                            "FROM control.restore_drills ORDER BY captured_at DESC LIMIT %s", (limit,)).fetchall()
    if as_json:
        for drill_id, source, restore_time, finished_at, outcome in rows:
            typer.echo(json.dumps({"drill_id": drill_id, "source": source, "restore_time": restore_time,
                                   "finished_at": finished_at, "outcome": outcome}, default=str))
        return
    table = Table("drill", "source", "restore point", "verified", "RTO", "RPO", "tenants verified")
    for drill_id, source, restore_time, finished_at, outcome in rows:
        outcome = outcome or {}
        comparison = outcome.get("comparison") or {}
        table.add_row(drill_id, source, f"{restore_time:%Y-%m-%d %H:%M:%S}",
                      "running" if finished_at is None else ("yes" if outcome.get("verified") else "NO"),
                      _minutes(outcome.get("rto_seconds")), _minutes(outcome.get("rpo_seconds")),
                      f"{comparison.get('tenants_verified', 0)}/{comparison.get('tenants_expected', 0)}")
    out.print(table)


class Store(str, Enum):
    rds = "rds"
    cache = "cache"


@app.command("failover")
@handles_errors
def failover_command(
        store: Annotated[Store, typer.Argument(help="rds: reboot with failover; cache: ElastiCache test failover")],
        env: Annotated[str, typer.Option(help="Environment whose store fails over (saas-<env>-postgres / -cache)")],
        api_url: Annotated[str, typer.Option(help="Base URL of the reference API to probe, e.g. https://api.example.com")],
        api_key: Annotated[Optional[str], typer.Option(envvar="DRILL_API_KEY", show_envvar=False,
                                                       help="Also probe GET /v1/projects as this key's tenant")] = None,
        settle_seconds: Annotated[float, typer.Option(min=1, help="Failure-free seconds that end the drill")] = 30,
        yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False) -> None:
    """Fail the store over to its standby/replica and measure what API clients saw (JSON on stdout)."""
    if not yes:
        typer.confirm(f"Fail over saas-{env}-{'postgres' if store is Store.rds else 'cache'} now? Clients will "
                      "see errors for up to a few minutes", abort=True)
    target: failover.FailoverTarget = (
        failover.RdsFailover(rds=boto3.client("rds"), instance=f"saas-{env}-postgres") if store is Store.rds
        else failover.CacheFailover(elasticache=boto3.client("elasticache"), replication_group=f"saas-{env}-cache"))
    paths = ("/readyz", "/v1/projects") if api_key else ("/readyz",)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    report = failover.run(target, Probe(base_url=api_url, paths=paths, headers=headers, workers=4),
                          settle_seconds=settle_seconds, on_progress=lambda m: err.print(m, highlight=False))
    typer.echo(json.dumps(report.to_json()))
