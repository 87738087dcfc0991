"""Lambda entry point of the daily cost report: event → one idempotent run per date → result."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from tenant_provisioner.costs.delivery import once_per_date, send_report
from tenant_provisioner.costs.service import ReportRun, cost_source, platform_loader, resolve_report_date, summary
from tenant_provisioner.costs.settings import ReportSettings
from tenant_provisioner.errors import ConfigError, InvalidInput

logger = Logger()
metrics = Metrics(namespace="SaaS/CostReport")
copy_config_to_registered_loggers(source_logger=logger, include={"tenant_provisioner.costs.cost_explorer",
                                                                 "tenant_provisioner.costs.platform_data"})


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    settings = ReportSettings.from_env()
    metrics.add_dimension(name="environment", value=settings.environment)
    metrics.add_metric(name="Runs", unit=MetricUnit.Count, value=1)   # Runs - ReportsDelivered = failed runs
    if not settings.idempotency_table:
        raise ConfigError("IDEMPOTENCY_TABLE must name the DynamoDB table that keeps one report per date")
    try:
        report_date = resolve_report_date(event or {}, settings, datetime.now(timezone.utc))
    except InvalidInput as exc:   # an on-demand call with a bad date: answer, do not retry
        return {"error": exc.code, "field": exc.field, "message": exc.detail}
    run = ReportRun(settings, cost_source(settings), platform_loader(settings))
    ses = boto3.client("sesv2")

    def deliver(report_date: str) -> dict[str, Any]:
        report = run.build(date.fromisoformat(report_date))
        return summary(report, send_report(report, settings, ses))

    result = once_per_date(deliver, settings.idempotency_table, context)(report_date=report_date.isoformat())
    metrics.add_metric(name="ReportsDelivered", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="CostExplorerRequests", unit=MetricUnit.Count, value=result["cost_explorer_requests"])
    metrics.add_metric(name="MonthToDateUSD", unit=MetricUnit.NoUnit, value=float(result["month_to_date_usd"]))
    logger.info("cost report done", extra=result)
    return result
