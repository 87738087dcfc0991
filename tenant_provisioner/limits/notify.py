"""Breaker notifications: SES email to the tenant admin, SNS to ops (suspension pages).

Messages carry numbers and levels, never secrets. Configured by ``LIMITS_SENDER_EMAIL`` (a
verified SES identity) and ``OPS_TOPIC_ARN``; a missing setting is a `ConfigError` at start-up,
not a silently skipped notification.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

from tenant_provisioner.limits.breakers import Level
from tenant_provisioner.limits.enforcer import Notice

_WHAT = {
    Level.WARNING: "has used {share} of its {quantity} limit for {period}. At 100 % metered calls are refused "
                   "until the period ends or the plan is upgraded.",
    Level.HARD_LIMIT: "has reached its {quantity} limit for {period}: {consequence}",
    Level.SUSPENDED: "kept calling at {attempted_share} of its {quantity} limit for {period} and has been "
                     "suspended: API and database access are disabled until an operator resumes it.",
}
_QUANTITY = {"api_requests": "API requests", "storage_bytes": "storage", "seats": "seats"}
_CONSEQUENCE = {
    "api_requests": "metered calls are refused (HTTP 429 quota-exceeded) until the period ends or the plan is "
                    "upgraded.",
    "storage_bytes": "no more data can be stored until some is deleted or the plan is upgraded.",
    "seats": "no more users can be added until some are deactivated or the plan is upgraded.",
}


def describe(notice: Notice) -> tuple[str, str]:
    """(subject, plain-text body) for one notice."""
    share = f"{notice.admitted / notice.hard_limit:.0%}" if notice.hard_limit else "all"
    attempted_share = f"{notice.attempted / notice.hard_limit:.0%}" if notice.hard_limit else "far above"
    name = notice.company_name or notice.tenant_id
    quantity = _QUANTITY.get(notice.quantity, notice.quantity)
    period = f"{notice.period_start:%B %Y}"
    # A suspension is decided on attempted usage: the subject quotes the share the body explains.
    shown = f"{attempted_share} attempted" if notice.level is Level.SUSPENDED else share
    subject = f"[{notice.tenant_id}] {quantity}: {notice.level.label.replace('_', ' ')} ({shown} of {notice.tier} limit)"
    body = (f"Tenant {name} ({notice.tenant_id}, {notice.tier} plan) "
            + _WHAT[notice.level].format(share=share, attempted_share=attempted_share, quantity=quantity,
                                         period=period, consequence=_CONSEQUENCE[notice.quantity])
            + f"\n\nUsed: {notice.admitted:,} of {notice.hard_limit:,}; attempted: {notice.attempted:,}.\n")
    return subject[:100], body


@dataclass
class AwsNotifier:
    """Sends each notice once to the tenant admin (SES) and to the ops topic (SNS)."""

    sender: str
    ops_topic_arn: str
    ses: Any = None
    sns: Any = None

    def __post_init__(self) -> None:
        self.ses = self.ses or boto3.client("sesv2")
        self.sns = self.sns or boto3.client("sns")

    def __call__(self, notice: Notice) -> None:
        subject, body = describe(notice)
        self.ses.send_email(FromEmailAddress=self.sender, Destination={"ToAddresses": [notice.admin_email]},
                            Content={"Simple": {"Subject": {"Data": subject}, "Body": {"Text": {"Data": body}}}})
        severity = "page" if notice.level is Level.SUSPENDED else "info"
        self.sns.publish(
            TopicArn=self.ops_topic_arn, Subject=subject,
            Message=json.dumps({"tenant_id": notice.tenant_id, "quantity": notice.quantity,
                                "level": notice.level.label, "period_start": notice.period_start.isoformat(),
                                "admitted": notice.admitted, "attempted": notice.attempted,
                                "hard_limit": notice.hard_limit, "tier": notice.tier, "text": body}),
            MessageAttributes={"severity": {"DataType": "String", "StringValue": severity}})
