"""Lambda entry point of the daily cost report: event → one idempotent run per date → result."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from tenant_provisioner.costs.delivery import once_per_date, send_report
from tenant_provisioner.costs.service import resolve_report_date, summary
from tenant_provisioner.costs.settings import ReportSettings
from tenant_provisioner.errors import InvalidInput
from tenant_provisioner.runtime import compose
from tenant_provisioner.runtime.lambda_handler import LambdaFunction
from tenant_provisioner.runtime.metrics import CostReportMetrics


def _bad_date(exc: InvalidInput) -> dict[str, Any]:
    """An on-demand call with a bad date: answered, never retried."""
    return {"error": exc.code, "field": exc.field, "message": exc.detail}


function = LambdaFunction(namespace=CostReportMetrics.NAMESPACE, rejects=(InvalidInput,), rejection=_bad_date,
                          build=lambda: compose.for_cost_report(ReportSettings.from_env()))
logger, metrics = function.logger, function.metrics
copy_config_to_registered_loggers(source_logger=logger, include={"tenant_provisioner.costs.cost_explorer",
                                                                 "tenant_provisioner.costs.platform_data"})


@function.handler
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    report = function.clients
    settings = report.settings
    metrics.add_dimension(name="environment", value=settings.environment)
    metrics.add_metric(name=CostReportMetrics.RUNS, unit=MetricUnit.Count, value=1)
    report_date = resolve_report_date(event or {}, settings, datetime.now(timezone.utc))

    run = report.run()

    def deliver(report_date: str) -> dict[str, Any]:
        built = run.build(date.fromisoformat(report_date))
        return summary(built, send_report(built, settings, report.ses))

    result = once_per_date(deliver, report.idempotency_table, context)(report_date=report_date.isoformat())
    metrics.add_metric(name=CostReportMetrics.REPORTS_DELIVERED, unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=CostReportMetrics.COST_EXPLORER_REQUESTS, unit=MetricUnit.Count,
                       value=result["cost_explorer_requests"])
    metrics.add_metric(name=CostReportMetrics.MONTH_TO_DATE_USD, unit=MetricUnit.NoUnit,
                       value=float(result["month_to_date_usd"]))
    logger.info("cost report done", extra=result)
    return result
