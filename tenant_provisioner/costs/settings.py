"""Report settings: read by the cost-report function (`from_env`), set by its stack (`to_env`),
filled in by the local command."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tenant_provisioner.db import DatabaseSettings
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.runtime import env as envvars

_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


@dataclass(frozen=True, kw_only=True)
class ReportSettings:
    environment: str
    recipients: tuple[str, ...]
    sender: str
    monthly_budget_usd: Decimal
    timezone: ZoneInfo
    anomaly_min_share: Decimal = Decimal("0.25")
    anomaly_min_usd: Decimal = Decimal("5")
    tag_key: str = "tenant"
    scope_tag: str | None = None    # count only cost tagged <scope_tag>=<environment> (shared accounts)
    top_services: int = 8
    idempotency_table: str | None = None
    database: DatabaseSettings | None = None   # tenant data; None: the report says it has none

    @property
    def scope(self) -> tuple[str, str] | None:
        """The (tag key, value) every Cost Explorer query is limited to, if any."""
        return (self.scope_tag, self.environment) if self.scope_tag else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ReportSettings":
        """Parse and validate; a bad value raises `ConfigError` naming the variable."""
        env = envvars.environ(env)
        recipients = tuple(r.strip() for r in env.get("REPORT_RECIPIENTS", "").split(",") if r.strip())
        if not recipients or not all(_EMAIL.match(r) for r in recipients):
            raise ConfigError(f"REPORT_RECIPIENTS must be comma-separated e-mail addresses, got {recipients!r}")
        sender = env.get("REPORT_SENDER", "").strip()
        if not _EMAIL.match(sender):
            raise ConfigError(f"REPORT_SENDER must be an e-mail address, got {sender!r}")
        tz_name = env.get("REPORT_TIMEZONE", "UTC")
        try:
            timezone = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"REPORT_TIMEZONE is not a known time zone: {tz_name!r}") from None
        return cls(
            environment=env.get("ENVIRONMENT_NAME", "dev"),
            recipients=recipients,
            sender=sender,
            monthly_budget_usd=_positive(env, "MONTHLY_BUDGET_USD", None),
            timezone=timezone,
            anomaly_min_share=_positive(env, "ANOMALY_MIN_SHARE", "0.25"),
            anomaly_min_usd=_positive(env, "ANOMALY_MIN_USD", "5"),
            tag_key=env.get("COST_TAG_KEY", "tenant"),
            scope_tag=env.get("COST_SCOPE_TAG") or None,
            idempotency_table=env.get("IDEMPOTENCY_TABLE") or None,
            database=DatabaseSettings.from_env(env) if env.get("DATABASE_URL") or env.get("DATABASE_SECRET_ARN")
            else None,
        )

    def to_env(self) -> dict[str, str]:
        return {**envvars.to_env({
            "ENVIRONMENT_NAME": self.environment, "REPORT_RECIPIENTS": self.recipients, "REPORT_SENDER": self.sender,
            "MONTHLY_BUDGET_USD": self.monthly_budget_usd, "REPORT_TIMEZONE": self.timezone.key,
            "ANOMALY_MIN_SHARE": self.anomaly_min_share, "ANOMALY_MIN_USD": self.anomaly_min_usd,
            "COST_TAG_KEY": self.tag_key, "COST_SCOPE_TAG": self.scope_tag,
            "IDEMPOTENCY_TABLE": self.idempotency_table}), **(self.database.to_env() if self.database else {})}


def _positive(env: Mapping[str, str], name: str, default: str | None) -> Decimal:
    raw = env.get(name, default)
    try:
        value = Decimal(str(raw))
    except (InvalidOperation, TypeError):
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value.is_finite() or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value
