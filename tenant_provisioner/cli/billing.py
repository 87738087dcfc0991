"""``python -m tenant_provisioner billing ...``: Stripe catalog, usage reports, payment grace, status.

Tier changes and offboarding move or cancel the subscription through the tenants CLI
(``change-tier``, ``offboard``), by the billing lifecycle hooks.

Stripe's key comes from ``STRIPE_API_KEY`` or the secret named by ``STRIPE_API_KEY_SECRET_ID``;
the database from the root options (``--database-url`` / ``DATABASE_URL``). Exit codes as in the
root CLI: 2 bad input or configuration, 1 any other failure (Stripe down included).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from contextlib import contextmanager
from typing import Annotated, Iterator

import psycopg
import stripe
import typer
from psycopg.rows import dict_row
from rich.console import Console
from rich.table import Table

from tenant_provisioner import validation
from tenant_provisioner.billing import payments
from tenant_provisioner.billing.accounts import Accounts
from tenant_provisioner.billing.catalog import sync_catalog
from tenant_provisioner.billing.settings import BillingSettings, skipped_notice, translate
from tenant_provisioner.billing import usage
from tenant_provisioner.billing.usage import report_usage
from tenant_provisioner.cli.context import actor, operator
from tenant_provisioner.cli.errors import handles_errors, print_table
from tenant_provisioner.errors import ConfigError, InvalidInput, TenantNotFound
from tenant_provisioner.tenants import records
from tenant_provisioner.tiers import load_tiers

app = typer.Typer(name="billing", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Stripe billing: catalog sync, usage reports, payment grace, subscriptions.")
out = Console()


@contextmanager
def _connection(ctx: typer.Context) -> Iterator[psycopg.Connection]:
    with operator(ctx).database() as db, db.connection() as conn:
        yield conn


def _optional_tenant(tenant: str | None) -> str | None:
    return validation.tenant_id(tenant) if tenant is not None else None


def _client(settings: BillingSettings, what: str) -> stripe.StripeClient:
    client = settings.client()
    if client is None:
        skipped_notice(what)
        raise ConfigError("no Stripe API key configured (STRIPE_API_KEY or STRIPE_API_KEY_SECRET_ID)")
    return client


@app.command("sync-catalog")
@handles_errors
def sync_catalog_command(ctx: typer.Context,
                         dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only")] = False
                         ) -> None:
    """Create/update the meter, one product per tier and its prices from the tiers file (idempotent)."""
    settings = operator(ctx).settings.billing
    client = settings.client()
    if client is None and dry_run:
        skipped_notice("catalog dry run: planning against an empty Stripe account")
    elif client is None:
        client = _client(settings, "catalog sync")
    result = sync_catalog(client, load_tiers(), settings, dry_run=dry_run)
    verb = "would" if dry_run else "did"
    for action in result.actions:
        out.print(f"{verb}: {action}", markup=False, highlight=False)
    if not result.actions:
        out.print("catalog already matches the tiers file", highlight=False)
    print(json.dumps({"dry_run": dry_run, "actions": len(result.actions), "meter": result.meter_id,
                      "prices": {t: vars(p) for t, p in result.prices.items()}}))


@app.command("report-usage")
@handles_errors
def report_usage_command(ctx: typer.Context,
                         tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None) -> None:
    """Send unreported API-request usage to Stripe now (the enforcer does this every cycle)."""
    tenant = _optional_tenant(tenant)
    settings = operator(ctx).settings.billing
    client = _client(settings, "usage report")
    with _connection(ctx) as conn:
        result = report_usage(conn, client, settings, tenant_id=tenant)
    print(json.dumps(result.to_dict()))
    if result.failed or result.stripe_unavailable:
        raise typer.Exit(1)


@app.command()
@handles_errors
def reconcile(ctx: typer.Context, tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
              period: Annotated[str | None, typer.Option(help="Billing period YYYY-MM (default: current)")] = None
              ) -> None:
    """Compare usage we reported with Stripe's meter summaries; exit 1 on a mismatch."""
    tenant = _optional_tenant(tenant)
    period_start = _period(period)
    settings = operator(ctx).settings.billing
    client = _client(settings, "reconcile")
    try:
        with _connection(ctx) as conn:
            rows = usage.reconcile(conn, client, settings, period_start=period_start, tenant_id=tenant)
    except stripe.StripeError as exc:
        raise translate(exc, "reading meter summaries") from exc
    print(json.dumps([r.to_dict() for r in rows]))
    if any(not r.matches for r in rows):
        raise typer.Exit(1)


def _period(text: str | None) -> date:
    if text is None:
        return datetime.now(timezone.utc).date().replace(day=1)
    try:
        return datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise InvalidInput("period", f"expected YYYY-MM, got {text!r}") from None


@app.command("usage-failures")
@handles_errors
def usage_failures(ctx: typer.Context, tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None
                   ) -> None:
    """Usage intervals Stripe refused for good (parked, not re-sent), with the reason."""
    tenant = _optional_tenant(tenant)
    with _connection(ctx) as conn:
        rows = usage.parked(conn, tenant)
    print(json.dumps([{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows]))


@app.command("retry-failed")
@handles_errors
def retry_failed(ctx: typer.Context, tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None
                 ) -> None:
    """Send parked usage again with the next report (after fixing the cause, e.g. a deleted customer)."""
    tenant = _optional_tenant(tenant)
    with _connection(ctx) as conn:
        count = usage.retry_parked(conn, actor=actor(), tenant_id=tenant)
    print(json.dumps({"requeued": count}))


@app.command("mark-billed")
@handles_errors
def mark_billed(ctx: typer.Context, identifier: Annotated[str, typer.Argument(help="Identifier of a parked interval")]
                ) -> None:
    """Record that a parked interval was billed by hand (e.g. older than Stripe's 35 days); audited."""
    with _connection(ctx) as conn:
        usage.mark_billed(conn, identifier, actor=actor())
    print(json.dumps({"identifier": identifier, "marked_billed": True}))


@app.command("enforce-grace")
@handles_errors
def enforce_grace_command(ctx: typer.Context) -> None:
    """Suspend tenants whose payment grace period has ended (the enforcer does this every cycle)."""
    with operator(ctx).database() as db, db.connection() as conn:
        result = payments.enforce_payment_grace(conn, operator(ctx).platform(db).lifecycle, actor=actor())
    print(json.dumps({"suspended": result.suspended, "skipped": result.skipped}))


_STATUS = """
SELECT t.tenant_id, t.state, coalesce(a.tier, t.tier) AS tier, a.stripe_customer_id, a.stripe_subscription_id,
       CASE WHEN a.stripe_subscription_id IS NULL THEN 'not billed' ELSE a.payment_state END AS payment_state,
       a.grace_until, a.offboard_after,
       (SELECT c.reported FROM control.billing_usage_cursor c WHERE c.tenant_id = a.tenant_id
         ORDER BY c.period_start DESC LIMIT 1) AS reported_this_period,
       (SELECT count(*) FROM control.billing_usage_cursor c WHERE c.tenant_id = a.tenant_id
         AND c.pending_to IS NOT NULL AND c.failed_at IS NULL) AS pending_reports,
       (SELECT count(*) FROM control.billing_usage_cursor c WHERE c.tenant_id = a.tenant_id
         AND c.failed_at IS NOT NULL) AS failed_reports
FROM control.tenants t LEFT JOIN control.billing_accounts a USING (tenant_id)
WHERE (%(tenant)s::text IS NULL OR t.tenant_id = %(tenant)s)
  AND (%(tenant)s::text IS NOT NULL OR t.state <> 'offboarded')
ORDER BY t.tenant_id
"""


@app.command()
@handles_errors
def status(ctx: typer.Context, tenant_id: Annotated[str | None, typer.Argument(help="One tenant")] = None,
           as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False) -> None:
    """Stripe ids, payment state, grace and pending usage reports of every tenant ("not billed" when it
    has no subscription: attach it with `billing attach`)."""
    tenant_id = _optional_tenant(tenant_id)
    with _connection(ctx) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_STATUS, {"tenant": tenant_id}).fetchall()
        due = payments.due_offboardings(conn)
    if tenant_id is not None and not rows:
        raise TenantNotFound(tenant_id)
    records = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()} for row in rows]
    if as_json:
        print(json.dumps({"accounts": records, "offboarding_due": due}))
        return
    table = Table(title="billing")
    columns = ("tenant_id", "state", "tier", "payment_state", "grace_until", "stripe_customer_id",
               "stripe_subscription_id", "reported_this_period", "pending_reports", "failed_reports")
    for column in columns:
        table.add_column(column.replace("_", " "))
    for record in records:
        table.add_row(*(str(record[c]) if record[c] is not None else "-" for c in columns))
    print_table(table)
    if due:
        out.print(f"offboarding due (run `offboard` with an export location): {', '.join(due)}", highlight=False)


@app.command()
@handles_errors
def attach(ctx: typer.Context,
           tenant_ids: Annotated[list[str] | None, typer.Argument(help="Tenants to bill")] = None,
           all_unbilled: Annotated[bool, typer.Option("--all-unbilled", help="Every active or suspended tenant "
                                                                              "without a subscription")] = False
           ) -> None:
    """Give tenants created while billing was skipped their Stripe customer and subscription (idempotent)."""
    if bool(tenant_ids) == all_unbilled:
        raise InvalidInput("tenant_ids", "name the tenants to attach, or pass --all-unbilled (not both)")
    tenant_ids = [validation.tenant_id(t) for t in tenant_ids or []]
    settings = operator(ctx).settings.billing
    accounts = Accounts(_client(settings, "attach"), settings)
    catalog = load_tiers()
    results = []
    with _connection(ctx) as conn:
        if all_unbilled:
            tenant_ids = [row[0] for row in conn.execute(
                "SELECT t.tenant_id FROM control.tenants t LEFT JOIN control.billing_accounts a USING (tenant_id)"
                " WHERE t.state IN ('active', 'suspended') AND a.stripe_subscription_id IS NULL"
                " ORDER BY t.tenant_id")]
        for tenant_id in tenant_ids:
            tenant = records.require(conn, tenant_id)
            account, attached = accounts.attach(conn, tenant, catalog.get(tenant.tier), actor=actor())
            results.append({"tenant_id": tenant_id, "attached": attached,
                            "stripe_customer_id": account.stripe_customer_id,
                            "stripe_subscription_id": account.stripe_subscription_id})
    print(json.dumps(results))
