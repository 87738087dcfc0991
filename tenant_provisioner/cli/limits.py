"""``python -m tenant_provisioner limits ...``: run the enforcer and show tenants' limits.

The database comes from the root options (``--database-url`` / ``DATABASE_URL``), Redis from
``--redis-url`` / ``REDIS_URL``. Exit codes as in the root CLI: 2 bad input or configuration,
1 any other failure (including a cycle that recorded errors).
"""

from __future__ import annotations

import functools
import json
from enum import Enum
from typing import Annotated, Any, Callable, Optional, TypeVar

import redis
import typer
from rich.console import Console
from rich.table import Table

from tenant_provisioner import validation
from tenant_provisioner.cli.context import operator
from tenant_provisioner.cli.errors import handles_errors, print_table
from tenant_provisioner.errors import ConfigError, TenantNotFound, TransientError
from tenant_provisioner.limits import state as redis_state
from tenant_provisioner.limits.breakers import hard_limit_of
from tenant_provisioner.limits.enforcer import Notice, run_cycle
from tenant_provisioner.limits.reaper import ReaperSettings
from tenant_provisioner.limits.notify import AwsNotifier, describe
from tenant_provisioner.runtime.settings import NotifierSettings
from tenant_provisioner.tiers import TierCatalog, load_tiers

app = typer.Typer(name="limits", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Tier limits: run the quota enforcer, show usage and breaker levels.")
out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
RedisUrl = Annotated[str, typer.Option(envvar="REDIS_URL", show_envvar=True, help="The limiter's Redis")]
# The same variable the suspend/resume hooks read: status and enforce must look at the limiter's keys.
KeyPrefix = Annotated[str, typer.Option(envvar="LIMITER_KEY_PREFIX", show_envvar=True,
                                        help="Limiter key prefix (empty in production)")]


class NotifyMode(str, Enum):
    aws = "aws"
    print = "print"


def _typed_errors(command: F) -> F:
    """The CLIs' error policy (`handles_errors`: one stderr line, the documented exit code), with
    Redis failures made `TransientError` first."""

    def redis_as_transient(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except redis.RedisError as exc:
            raise TransientError(f"redis: {exc}") from exc

    return handles_errors(functools.wraps(command)(redis_as_transient))  # type: ignore[return-value]


def _redis(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    client.ping()
    return client


def _print_notice(notice: Notice) -> None:
    subject, body = describe(notice)
    err.print("notice (not sent, --notify print): ", style="bold", end="", highlight=False)
    err.print(f"{subject}\n{body}", markup=False, highlight=False)  # "[tenant-id]" is text, not markup


def _aws_notifier() -> AwsNotifier:
    try:
        settings = NotifierSettings.from_env()
    except ConfigError as exc:
        raise ConfigError(f"{exc}; to run locally without sending anything, pass --notify print "
                          "(notices are shown on stderr)") from None
    return AwsNotifier(sender=settings.sender, ops_topic_arn=settings.ops_topic_arn)


@app.command()
@_typed_errors
def enforce(ctx: typer.Context, redis_url: RedisUrl = "redis://127.0.0.1:6379/0",
            tenant: Annotated[Optional[list[str]], typer.Option(help="Only these tenants (repeatable)")] = None,
            notify: Annotated[NotifyMode, typer.Option(help="aws: SES + SNS (LIMITS_SENDER_EMAIL, OPS_TOPIC_ARN); "
                                                            "print: show notices on stderr")] = NotifyMode.aws,
            key_prefix: KeyPrefix = "") -> None:
    """Run one enforcement cycle now; prints the summary as JSON."""
    notifier = _aws_notifier() if notify is NotifyMode.aws else _print_notice
    client = _redis(redis_url)
    with operator(ctx).database() as db:
        platform = operator(ctx).platform(db, redis_client=client, key_prefix=key_prefix)
        result = run_cycle(db, client, notifier=notifier, lifecycle=platform.lifecycle, key_prefix=key_prefix,
                           actor="cli:limits", tenant_ids=tenant, reporters=platform.reporters(),
                           reaper=ReaperSettings.from_env())
    print(json.dumps(result.to_dict()))
    if result.errors:
        raise typer.Exit(1)


_STATUS = """
SELECT t.tenant_id, t.tier, t.state, b.quantity, b.level, u.admitted, u.attempted, u.measured_at
FROM control.tenants t
LEFT JOIN control.tenant_breakers b USING (tenant_id)
LEFT JOIN control.tenant_usage u ON u.tenant_id = t.tenant_id AND u.quantity = b.quantity
                                 AND u.period_start = b.period_start
WHERE (%s::text IS NULL OR t.tenant_id = %s) AND t.state IN ('active', 'suspended')
ORDER BY t.tenant_id, b.quantity
"""


@app.command()
@_typed_errors
def status(ctx: typer.Context, tenant_id: Annotated[Optional[str], typer.Argument(help="One tenant")] = None,
           redis_url: RedisUrl = "redis://127.0.0.1:6379/0",
           key_prefix: KeyPrefix = "",
           as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False) -> None:
    """Breaker level and usage per tenant and quantity, with live API counters from Redis."""
    if tenant_id is not None:
        validation.tenant_id(tenant_id)
    client = _redis(redis_url)
    period = redis_state.server_period(client)
    with operator(ctx).database() as db, db.connection() as conn:
        rows = conn.execute(_STATUS, (tenant_id, tenant_id)).fetchall()
    if tenant_id is not None and not rows:
        raise TenantNotFound(tenant_id)
    live = redis_state.read_counters(client, sorted({r[0] for r in rows}), period, key_prefix)
    catalog = load_tiers()
    records = []
    for tid, tier, state, quantity, level, admitted, attempted, measured_at in rows:
        if quantity == "api_requests":  # Redis is ahead of the last cycle
            admitted, attempted = live[tid].current
        limit = _hard_limit(catalog, tier, quantity)
        records.append({"tenant_id": tid, "tier": tier, "state": state, "quantity": quantity or "-",
                        "level": level or "not enforced yet", "admitted": admitted, "attempted": attempted,
                        "hard_limit": limit, "used_share": round(admitted / limit, 4) if limit and admitted is not None
                        else None, "measured_at": measured_at.isoformat() if measured_at else None})
    if as_json:
        print(json.dumps({"period_start": period.isoformat(), "rows": records}))
        return
    table = Table(title=f"limits, period {period:%Y-%m}")
    table.add_column("tenant", no_wrap=True)
    for column in ("tier", "state", "quantity", "level", "used", "attempted", "hard limit", "share"):
        table.add_column(column)
    for r in records:
        share = f"{r['used_share']:.0%}" if r["used_share"] is not None else "-"
        table.add_row(r["tenant_id"], r["tier"], r["state"], r["quantity"], r["level"], _n(r["admitted"]),
                      _n(r["attempted"]), _n(r["hard_limit"]), share)
    print_table(table)


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _hard_limit(catalog: TierCatalog, tier: str, quantity: str | None) -> int | None:
    return hard_limit_of(catalog.get(tier), quantity) if quantity else None
