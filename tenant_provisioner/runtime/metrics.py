"""The CloudWatch metric contract: namespaces and names the functions publish (Powertools EMF) and
the observability stack graphs and alarms on. Both sides import these; neither spells a name."""

from __future__ import annotations


class TenantMetrics:
    """``provision_tenant`` and ``tenant_operations``."""

    NAMESPACE = "SaaS/Tenants"
    PROVISIONING_DURATION = "ProvisioningDuration"   # milliseconds per signup
    TENANTS_CREATED = "TenantsCreated"
    PROVISIONING_REJECTED = "ProvisioningRejected"
    PROVISIONING_FAILED = "ProvisioningFailed"
    WARM_POOL_BUILT = "WarmPoolBuilt"
    WARM_POOL_SIZE = "WarmPoolSize"
    TENANTS = "Tenants"                              # gauge, dimension ``state``
    TENANT_CONNECTION_LIMITS = "TenantConnectionLimits"   # the live tenants' tier connection counts summed
    TENANTS_MIGRATED = "TenantsMigrated"
    TENANT_MIGRATIONS_FAILED = "TenantMigrationsFailed"
    TENANTS_OFFBOARDED = "TenantsOffboarded"
    OFFBOARDING_FAILURES = "OffboardingFailures"


class LimitsMetrics:
    """``enforce_limits``, ``budget_breaker`` and the services' rate limiter."""

    NAMESPACE = "SaaS/Limits"
    TENANTS_ENFORCED = "TenantsEnforced"
    BREAKER_TRANSITIONS = "BreakerTransitions"
    SUSPENSIONS = "Suspensions"
    ENFORCEMENT_ERRORS = "EnforcementErrors"
    TENANT_SESSIONS_TERMINATED = "TenantSessionsTerminated"   # by the session reaper
    PLATFORM_BUDGET_LEVEL = "PlatformBudgetLevel"    # a BudgetLevel: 0 ok ... 3 emergency
    RATE_LIMITER_DEGRADED = "RateLimiterDegraded"    # decisions made without Redis; dimension ``component``


class BillingMetrics:
    """``stripe_webhook`` (it answers 500 without raising, so errors alone do not show failures)."""

    NAMESPACE = "SaaS/Billing"
    WEBHOOK_APPLIED = "WebhookApplied"
    WEBHOOK_REJECTED = "WebhookRejected"
    WEBHOOK_FAILED = "WebhookFailed"
    WEBHOOK_MISCONFIGURED = "WebhookMisconfigured"


class CostReportMetrics:
    """``cost_report`` (dimension ``environment``)."""

    NAMESPACE = "SaaS/CostReport"
    RUNS = "Runs"                                    # Runs - ReportsDelivered = failed runs
    REPORTS_DELIVERED = "ReportsDelivered"
    COST_EXPLORER_REQUESTS = "CostExplorerRequests"
    MONTH_TO_DATE_USD = "MonthToDateUSD"
