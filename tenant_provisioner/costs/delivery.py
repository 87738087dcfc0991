"""Sending the report through SES, once per report date.

The message is MIME multipart/alternative (plain text first, HTML second) sent with SESv2's raw
content, so both parts reach the reader. A failed send raises `ReportDeliveryError`, which fails
the invocation: the schedule's retries and the dead-letter queue then apply.

Once per date: the whole run (Cost Explorer queries included) is a Powertools idempotent
function keyed on the report date, persisted in DynamoDB. A retry after a successful send gets
the stored result and sends nothing; a run that failed leaves no record, so its retry sends.
DynamoDB was chosen over e.g. an S3 marker because Powertools also holds an in-progress lock,
so two overlapping invocations for one date cannot both send.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Callable

import boto3
from aws_lambda_powertools.utilities.idempotency import (DynamoDBPersistenceLayer, IdempotencyConfig,
                                                         idempotent_function)
from botocore.exceptions import BotoCoreError, ClientError

from tenant_provisioner.costs.render import render_html, render_text, subject
from tenant_provisioner.costs.report import Report
from tenant_provisioner.costs.settings import ReportSettings
from tenant_provisioner.errors import TransientError

# Long enough to cover every retry of a date (scheduler + async retries end within a day).
IDEMPOTENCY_TTL_SECONDS = 7 * 24 * 3600


class ReportDeliveryError(TransientError):
    """SES refused or failed to send the report."""

    code = "report_delivery_failed"


def build_message(report: Report, settings: ReportSettings) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(report)
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.sender.split("@", 1)[1])
    message.set_content(render_text(report))
    message.add_alternative(render_html(report), subtype="html")
    return message


def send_report(report: Report, settings: ReportSettings, ses_client: Any = None) -> str:
    """Send the report to every recipient; returns SES's message id, raises on any failure."""
    client = ses_client or boto3.client("sesv2")
    message = build_message(report, settings)
    try:
        response = client.send_email(
            FromEmailAddress=settings.sender,
            Destination={"ToAddresses": list(settings.recipients)},
            Content={"Raw": {"Data": message.as_bytes()}},
        )
    except (ClientError, BotoCoreError) as exc:
        raise ReportDeliveryError(f"SES did not send the cost report for {report.report_date}: {exc}") from exc
    return response["MessageId"]


def once_per_date(run: Callable[..., dict[str, Any]], table_name: str, lambda_context: Any = None,
                  dynamodb_client: Any = None) -> Callable[..., dict[str, Any]]:
    """`run(report_date=...)` made idempotent per report date, with its result stored in DynamoDB."""
    store = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb_client)
    config = IdempotencyConfig(expires_after_seconds=IDEMPOTENCY_TTL_SECONDS)
    if lambda_context is not None:
        config.register_lambda_context(lambda_context)
    return idempotent_function(run, data_keyword_argument="report_date", persistence_store=store, config=config)
