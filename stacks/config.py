"""Typed per-environment configuration: one frozen dataclass instance per environment.

Constructs receive these values as keyword-only props; no construct ever branches on the
environment's name. Choose the environment with ``-c env=dev|prod`` (``all`` synthesizes both).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, fields

from tenant_provisioner.billing.settings import BillingSettings


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    cidr: str
    max_azs: int = 3
    nat_gateways: int
    flow_log_retention_days: int
    # AZs that get an ENI of each interface endpoint (about $7.30 per endpoint and AZ a month);
    # private DNS sends every AZ's traffic to them, so fewer AZs trade resilience for cost.
    endpoint_azs: int = 3


# Memory of the RDS instance classes this project uses (GiB; AWS instance-class table).
INSTANCE_MEMORY_GIB = {
    "t4g.micro": 1, "t4g.small": 2, "t4g.medium": 4, "t4g.large": 8, "t4g.xlarge": 16,
    "m7g.large": 8, "m7g.xlarge": 16, "m7g.2xlarge": 32, "r7g.large": 16, "r7g.xlarge": 32, "r7g.2xlarge": 64,
}
# RDS's own default: LEAST({DBInstanceClassMemory/9531392}, 5000) (about 9.1 MB of memory per connection).
BYTES_PER_CONNECTION = 9531392
MAX_CONNECTIONS_CAP = 5000
# One shared lock-table slot (LOCK + PROCLOCK entries) costs about 533 bytes of shared memory
# (measured: 1000 connections x 1024 locks = 546 MB). The table gets this share of memory.
BYTES_PER_LOCK_SLOT = 533
LOCK_TABLE_MEMORY_SHARE = 0.02


@dataclass(frozen=True, kw_only=True)
class BackupReplicationConfig:
    """RDS automated-backup replication to a second region (snapshots and transaction logs), so a
    regional outage or a lost account region still leaves a restorable copy."""

    region: str                 # destination region, different from the environment's
    kms_key_arn: str            # a KMS key in the destination region (the instance is encrypted)
    retention_days: int = 7     # 1-35; the destination keeps this many days of point-in-time restore


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    engine_version: str = "16.13"
    instance_type: str          # e.g. "m7g.large" (Graviton); a key of INSTANCE_MEMORY_GIB
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    multi_az: bool
    backup_retention_days: int
    deletion_protection: bool
    snapshot_on_delete: bool    # RemovalPolicy.SNAPSHOT instead of DESTROY
    performance_insights_retention_days: int = 7
    monitoring_interval_seconds: int = 60
    master_secret_rotation_days: int = 30
    rds_proxy: bool = False
    # None: backups stay in the environment's region. Priced by `make cost` when set.
    backup_replication: BackupReplicationConfig | None = None
    # Server-side guards against a hostile tenant (docs/tenants.md, threat model). A tenant can
    # lower or lift the timeouts for its own session (they are user-settable): the session reaper
    # is the guard it cannot lift; these defaults protect against careless clients.
    temp_file_limit_mb: int = 5120          # per process; only a superuser may change it
    # Tenants rarely use every connection their tier allows: the sum of their tiers' db_connections
    # may exceed max_connections by this factor before the capacity alarm asks for a larger class.
    connection_overcommit: float = 3.0
    idle_in_transaction_timeout_s: int = 60
    statement_timeout_s: int = 60

    def __post_init__(self) -> None:
        if self.instance_type not in INSTANCE_MEMORY_GIB:
            raise ValueError(f"unknown RDS instance class {self.instance_type!r}: add its memory to "
                             "INSTANCE_MEMORY_GIB in stacks/config.py")

    @property
    def memory_bytes(self) -> int:
        return INSTANCE_MEMORY_GIB[self.instance_type] * 1024 ** 3

    @property
    def max_connections(self) -> int:
        """RDS's memory-based default, written explicitly so alarms and capacity use the same number."""
        return min(self.memory_bytes // BYTES_PER_CONNECTION, MAX_CONNECTIONS_CAP)

    @property
    def max_locks_per_transaction(self) -> int:
        """The shared lock table (max_connections x this many slots) gets LOCK_TABLE_MEMORY_SHARE of
        memory; at least PostgreSQL's default 64. Per-tenant transactions need far fewer (a tenant
        drop about 2,000 in total, a fleet migration one tenant at a time); the reaper ends tenant
        sessions holding more than its threshold."""
        slots = int(self.memory_bytes * LOCK_TABLE_MEMORY_SHARE) // BYTES_PER_LOCK_SLOT
        return max(64, slots // self.max_connections)

    def server_parameters(self) -> dict[str, str]:
        """The parameter-group values that are plain PostgreSQL settings (the test server runs with
        them too, see tests/support/services.py)."""
        return {
            "max_connections": str(self.max_connections),
            "max_locks_per_transaction": str(self.max_locks_per_transaction),
            "temp_file_limit": str(self.temp_file_limit_mb * 1024),          # kB
            "idle_in_transaction_session_timeout": str(self.idle_in_transaction_timeout_s * 1000),
            "statement_timeout": str(self.statement_timeout_s * 1000),
            "log_lock_waits": "1",
            "log_min_duration_statement": "1000",
            "log_connections": "1",
            "log_disconnections": "1",
        }


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    engine: str = "valkey"
    engine_version: str = "8.0"
    node_type: str              # e.g. "cache.t4g.small"
    replicas_per_shard: int     # 0 = single node (dev); >= 1 enables Multi-AZ failover
    snapshot_retention_days: int
    # A final snapshot when CloudFormation deletes the replication group; replacements always snapshot.
    snapshot_on_delete: bool
    snapshot_window: str = "01:00-02:00"   # UTC, before the RDS backup window and the maintenance window


# Amazon EKS Kubernetes release calendar: end of STANDARD support per minor (UTC). Source: the EKS
# user guide, "Understand the Kubernetes version lifecycle on EKS", release calendar table
# (docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html), read 2026-11-29. 1.36's exact
# date was not yet in the copy read: its entry is the EKS release month + 14 months, taken at the
# month's first day (earliest possible), and marked approximate. Update this table when AWS
# publishes dates; docs/runbooks/kubernetes-upgrade.md says how.
KUBERNETES_CALENDAR_CHECKED = dt.date(2026, 11, 29)
KUBERNETES_STANDARD_SUPPORT_ENDS: dict[str, dt.date] = {
    "1.33": dt.date(2026, 7, 29),
    "1.34": dt.date(2026, 12, 2),
    "1.35": dt.date(2027, 3, 27),
    "1.36": dt.date(2027, 7, 1),   # approximate (see above)
}
KUBERNETES_APPROXIMATE_DATES = frozenset({"1.36"})
MIN_STANDARD_SUPPORT_DAYS = 60


class UnsupportedKubernetesVersion(ValueError):
    """The configured Kubernetes minor leaves EKS standard support too soon (or is unknown)."""


def require_standard_support(version: str, *, today: dt.date,
                             min_days: int = MIN_STANDARD_SUPPORT_DAYS) -> dt.date:
    """End of standard support of ``version``; refuses a version that leaves it within ``min_days``:
    past that date EKS upgrades the control plane by itself (UpgradePolicy STANDARD) and leaves
    add-ons and workloads' API versions behind, or bills extended support at 6x."""
    ends = KUBERNETES_STANDARD_SUPPORT_ENDS.get(version)
    if ends is None:
        raise UnsupportedKubernetesVersion(
            f"cluster.kubernetes_version {version!r} is not in KUBERNETES_STANDARD_SUPPORT_ENDS "
            f"(stacks/config.py; known: {', '.join(sorted(KUBERNETES_STANDARD_SUPPORT_ENDS))}): add its EKS "
            f"end-of-standard-support date from the EKS release calendar first")
    left = (ends - today).days
    if left < min_days:
        newest = max(KUBERNETES_STANDARD_SUPPORT_ENDS, key=lambda v: tuple(map(int, v.split("."))))
        raise UnsupportedKubernetesVersion(
            f"Kubernetes {version} leaves EKS standard support on {ends.isoformat()} ({left} days from "
            f"{today.isoformat()}, fewer than {min_days}): upgrade cluster.kubernetes_version (newest known: "
            f"{newest}) following docs/runbooks/kubernetes-upgrade.md")
    return ends


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    kubernetes_version: str = "1.36"
    endpoint_public_cidrs: tuple[str, ...] = ()   # empty = private endpoint only
    # True: EKS Auto Mode: its built-in load balancing (the API's ALB), node autoscaling (Karpenter
    # inside EKS) and Pod Identity agent, upgraded with the control plane; nodes bill ~12 % on top.
    # False: an AL2023 arm64 managed node group (no ALB controller, no node autoscaling).
    auto_mode: bool = True
    node_instance_types: tuple[str, ...] = ("m7g.large",)
    node_min: int = 2
    node_max: int = 6
    node_desired: int = 2
    # Auto Mode: the ceiling of the Graviton node pool the workloads run on (k8s/: NodePool limits),
    # so a runaway HPA cannot buy more than this many vCPUs / GiB.
    node_pool_max_vcpus: int = 16
    node_pool_max_memory_gib: int = 64
    app_namespace: str = "app"
    api_service_account: str = "api"
    worker_service_account: str = "worker"
    # EKS access entries (docs/runbooks/cluster-access.md): IAM role ARNs of the people who operate the
    # cluster. Administrators get cluster-admin; viewers read every object except Secrets.
    admin_role_arns: tuple[str, ...] = ()
    viewer_role_arns: tuple[str, ...] = ()
    # The SSM tunnel: the only network path for people to the private API endpoint.
    tunnel_instance_type: str = "t4g.nano"


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """One Deployment: replicas (HPA bounds), resources per pod, HPA and PDB targets."""

    min_replicas: int
    max_replicas: int
    cpu_request_millicores: int
    cpu_limit_millicores: int
    memory_request_mib: int
    memory_limit_mib: int
    target_cpu_percent: int = 70
    max_unavailable: int = 1              # PodDisruptionBudget


@dataclass(frozen=True, kw_only=True)
class WorkloadsConfig:
    """The API and worker on the cluster (manifests in k8s/, images in ECR)."""

    api: ServiceConfig
    worker: ServiceConfig
    api_domain: str                       # the public host name of the API (Ingress rule host)
    certificate_arn: str                  # ACM certificate of api_domain, in the cluster's region
    # ALB listener TLS policy: TLS 1.3 + 1.2 with forward-secret AEAD ciphers only.
    tls_policy: str = "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
    api_port: int = 8000                  # services.api's PORT
    worker_health_port: int = 8001        # services.worker's HEALTH_PORT
    shutdown_grace_seconds: int = 20      # SHUTDOWN_GRACE_SECONDS: the services' drain on SIGTERM
    # Per-pod requests/second target of the API's HPA; needs an external metrics adapter for the
    # ALB's RequestCountPerTarget, so it is rendered only when set (CPU always scales).
    api_target_requests_per_second: int | None = None
    image_repository_prefix: str = "saas"  # ECR repositories <prefix>-<env>/api and /worker
    untagged_image_days: int = 7           # ECR lifecycle: untagged images expire after this
    kept_release_images: int = 30          # ECR lifecycle: newest release images kept per repository


# Lambda refuses reserved concurrency that would leave fewer than this many unreserved executions.
LAMBDA_UNRESERVED_MINIMUM = 100


class ConcurrencyConfigError(ValueError):
    """Reserved concurrency Lambda would refuse: not a positive whole number, or more than the account's
    concurrency quota can hold next to the unreserved minimum."""


@dataclass(frozen=True, kw_only=True)
class ConcurrencyConfig:
    """Reserved concurrency of every Lambda function (one field per function, named after its
    lambdas/<name> directory): each is both a guarantee and a ceiling. ``account_quota`` is the
    account's Lambda "Concurrent executions" quota (Service Quotas L-B99A9384): new accounts may get
    far less than the usual 1000, and a deploy whose reservations leave fewer than 100 unreserved
    fails, so synth refuses such values first. ``make preflight`` compares it with the real quota."""

    account_quota: int = 1000
    provision_tenant: int = 10     # bounds DDL lock use on RDS (concurrent signups)
    tenant_operations: int = 2     # a schedule and an operator at once; never a crowd of DDL
    stripe_webhook: int = 5        # bounds the database connections a burst of Stripe deliveries opens
    enforce_limits: int = 2        # a slow run may overlap the next one (safe); never more
    budget_breaker: int = 1        # one budget level at a time
    cost_report: int = 1           # one run at a time: a retry waits for the run it repeats
    restore_drill: int = 2         # a step of the drill and its retry

    def __post_init__(self) -> None:
        problems = [f"concurrency.{name} = {value!r}: must be a whole number of at least 1 "
                    "(0 would refuse every invocation)"
                    for name, value in self.reserved().items()
                    if isinstance(value, bool) or not isinstance(value, int) or value < 1]
        if isinstance(self.account_quota, bool) or not isinstance(self.account_quota, int) or self.account_quota < 1:
            problems.append(f"concurrency.account_quota = {self.account_quota!r}: must be the account's Lambda "
                            "concurrent-executions quota (a positive whole number)")
        if not problems and self.total() + LAMBDA_UNRESERVED_MINIMUM > self.account_quota:
            largest = ", ".join(f"{name} {value}" for name, value in
                                sorted(self.reserved().items(), key=lambda item: -item[1]))
            problems.append(f"reserved concurrency adds up to {self.total()} ({largest}), above the account quota "
                            f"{self.account_quota} minus the {LAMBDA_UNRESERVED_MINIMUM} executions Lambda keeps "
                            f"unreserved ({self.account_quota - LAMBDA_UNRESERVED_MINIMUM} at most): lower these "
                            "values or request a quota increase (Service Quotas: AWS Lambda, Concurrent executions, "
                            "L-B99A9384) and set concurrency.account_quota to the granted value")
        if problems:
            raise ConcurrencyConfigError("invalid Lambda reserved concurrency (docs/configuration.md):\n  - "
                                         + "\n  - ".join(problems))

    def reserved(self) -> dict[str, int]:
        """Reserved concurrency per function (``lambdas/<name>`` → executions)."""
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name != "account_quota"}

    def total(self) -> int:
        return sum(self.reserved().values())


@dataclass(frozen=True, kw_only=True)
class TenantsConfig:
    secrets_prefix: str          # tenant secrets live under f"{secrets_prefix}/tenants/<tenant_id>"
    database_name: str = "app"
    provisioner_timeout_seconds: int = 60
    provisioner_role: str = "tenant_provisioner"   # DB role owning tenant objects (`tenant-provisioner init`)
    signup_event_source: str = "saas.signup"       # EventBridge source of `tenant.signup` events
    invoker_role_arns: tuple[str, ...] = ()        # roles allowed to invoke provisioning synchronously
    operator_role_arns: tuple[str, ...] = ()       # roles allowed to invoke tenant_operations (init, migrate, ...)
    operations_timeout_seconds: int = 900          # a fleet migration in the Lambda (large fleets: the CLI)
    warm_pool_size: int = 20                       # pre-built tenant schemas kept ready (0 = no pool)
    warm_pool_refill_minutes: int = 5


@dataclass(frozen=True, kw_only=True)
class LimitsConfig:
    enforce_every_minutes: int = 5
    monthly_budget_usd: float    # the platform (AWS) budget watched by the budget breaker
    waf_rate_multiplier: float = 3.0   # WAF backstop = multiplier x tier rate, over waf_window_seconds
    ops_emails: tuple[str, ...] = ()
    waf_window_seconds: int = 60          # WAF rate-rule evaluation window: 60, 120, 300 or 600
    waf_anonymous_ip_limit: int = 300     # requests per window per IP that carry no API key
    # WAF tier rules key on this header; its value must start with api_key_scheme + "<tier>_" (matched
    # lower-cased): the services take keys as `Authorization: Bearer <tier>_<key id>_<secret>`.
    api_key_header: str = "authorization"
    api_key_scheme: str = "bearer "
    notification_sender: str     # SES identity of breaker emails to tenant admins
    nonprod_db_instances: tuple[str, ...] = ()        # RDS instances stopped at 100 % of the budget
    nonprod_nodegroups: tuple[str, ...] = ()          # "cluster/nodegroup" scaled to 0 at 100 %
    # Session reaper (runs with every enforcement): tenant sessions beyond these are terminated.
    reaper_idle_in_transaction_seconds: int = 60
    reaper_statement_seconds: int = 300
    reaper_transaction_seconds: int = 900    # an open transaction holds back vacuum for every tenant
    reaper_max_locks: int = 500              # the lock table is shared by the whole cluster


@dataclass(frozen=True, kw_only=True)
class CostReportConfig:
    recipients: tuple[str, ...]
    sender: str
    schedule_hour: int = 7
    schedule_minute: int = 0
    timezone: str = "Europe/Berlin"
    anomaly_min_increase_share: float = 0.25   # a service up > 25 % day over day ...
    anomaly_min_increase_usd: float = 5.0      # ... and by more than $5 is flagged
    tenant_tag_key: str = "tenant"             # cost-allocation tag carrying the tenant id (activate in Billing)
    scope_tag_key: str | None = None           # e.g. "environment" when dev and prod share one AWS account:
                                               # the report then counts only cost tagged <key>=<env name>


@dataclass(frozen=True, kw_only=True)
class ObservabilityConfig:
    alarm_emails: tuple[str, ...]
    log_retention_days: int = 30   # service logs (RDS exports, cache slow log, EKS control plane)
    slo_availability: float = 0.995
    betterstack_webhook_secret_name: str | None = None   # secret holding the BetterStack SNS webhook URL
    signup_budget_seconds: int = 120                  # a signup must be usable well within this
    # The API ingress ALB's CloudWatch dimension ("app/<name>/<id>"): the ALB is created by the
    # cluster's load-balancer controller, so its name is known only after the app's first deploy.
    # Set, a second SLO (same objective) is measured on the ALB's 5xx ratio, with p99 latency and
    # healthy-target alarms; the signup SLO (provisioning Lambda's success ratio) always stays.
    api_load_balancer: str | None = None
    api_p99_seconds: float = 1.0                      # the API's target p99 (ALB TargetResponseTime) alarm
    # Node CPU/memory/failed-node metrics need Container Insights (the amazon-cloudwatch-observability
    # EKS add-on, billed per observation); EKS's free AWS/EKS metrics cover only the control plane.
    container_insights: bool = False


@dataclass(frozen=True, kw_only=True)
class DrConfig:
    """Disaster-recovery targets and the restore drill's schedule (why these: docs/dr.md)."""

    rto_target_minutes: int = 120    # restore from backup, requested -> verified copy
    rpo_target_minutes: int = 15     # latest restorable time behind now (logs are shipped every ~5 min)
    # First Tuesday of every month, 06:00 UTC: a working day, so someone reads the outcome.
    restore_drill_cron: str = "0 6 ? * TUE#1 *"
    restore_drill_poll_seconds: int = 60
    restore_drill_timeout_hours: int = 6


_ACCOUNT_ID = re.compile(r"^\d{12}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(?P<account>\d{12}):role/[\w+=,.@/-]+$")


class CicdConfigError(ValueError):
    """A promotion setting that names no exact account or IAM role."""


@dataclass(frozen=True, kw_only=True)
class CicdConfig:
    """GitHub Actions deploys through OIDC: no long-lived AWS keys in GitHub."""

    github_repository: str                 # "owner/name"
    github_environment: str                # the GitHub environment whose jobs may deploy here
    cdk_qualifier: str = "hnb659fds"       # the CDK bootstrap qualifier of the target account
    # Promotion (docs/release.md): the environment whose scanned images this environment's release
    # copies by digest instead of building (prod: "dev"; None: it builds its own) ...
    promote_from: str | None = None
    # ... and that environment's AWS account when it is another one (None: this environment's account).
    promote_from_account: str | None = None
    # Release roles of OTHER accounts that may pull this environment's images (ECR repository policy,
    # pull actions only): with prod in its own account, dev lists prod's release role here.
    image_pull_role_arns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = [f"cicd.image_pull_role_arns: {arn!r} is not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>, "
                    "no wildcard): use the ReleaseRoleArn output of the other account's saas-<env>-cicd stack"
                    for arn in self.image_pull_role_arns if not _ROLE_ARN.match(arn)]
        if self.promote_from_account is not None:
            if not _ACCOUNT_ID.match(self.promote_from_account):
                problems.append(f"cicd.promote_from_account = {self.promote_from_account!r}: a 12-digit AWS account id")
            if self.promote_from is None:
                problems.append("cicd.promote_from_account is set but cicd.promote_from (the source environment) is not")
        if problems:
            raise CicdConfigError("invalid promotion settings (docs/configuration.md):\n  - " + "\n  - ".join(problems))

    def image_pull_accounts(self) -> list[str]:
        """The accounts of ``image_pull_role_arns``, in a stable order."""
        return sorted({_ROLE_ARN.match(arn)["account"] for arn in self.image_pull_role_arns})


@dataclass(frozen=True, kw_only=True)
class EnvConfig:
    name: str                    # "dev" | "prod"; used only in names and tags
    account: str
    region: str
    network: NetworkConfig
    database: DatabaseConfig
    cache: CacheConfig
    cluster: ClusterConfig
    tenants: TenantsConfig
    limits: LimitsConfig
    cost_report: CostReportConfig
    billing: BillingSettings = field(default_factory=BillingSettings)   # defaults: tenant_provisioner/billing
    dr: DrConfig = field(default_factory=DrConfig)
    concurrency: ConcurrencyConfig = field(default_factory=ConcurrencyConfig)
    observability: ObservabilityConfig
    cicd: CicdConfig
    workloads: WorkloadsConfig
    tags: tuple[tuple[str, str], ...] = ()

    def stack_id(self, component: str) -> str:
        return f"saas-{self.name}-{component}"

    def image_repository(self, service: str) -> str:
        """ECR repository name of ``service`` (``api`` / ``worker``) in this environment."""
        return f"{self.workloads.image_repository_prefix}-{self.name}/{service}"


# Kubernetes group of the drift role's EKS access entry (stacks/access_stack.py): the cluster chart
# binds it to reading the cluster-scoped objects the view access policy leaves out (k8s/chart.py).
DRIFT_READERS_GROUP = "saas:drift-readers"

# Placeholder account/region make offline synth deterministic; real values come from context
# (-c account=... -c region=...) or CDK_DEFAULT_ACCOUNT / CDK_DEFAULT_REGION at deploy time.
PLACEHOLDER_ACCOUNT = "111111111111"
PLACEHOLDER_REGION = "us-east-1"
# Stacks of account-level singletons shared by every environment are named saas-<this>-<component>.
SHARED_SCOPE = "shared"

# ---- Your organisation's values -------------------------------------------------------------------
# They ship as examples so that the offline synth and the tests run; synthesizing for a real account
# refuses every value still at its example, in one message (stacks/placeholders.py). Every value is
# described in docs/configuration.md.
_OPS = ("ops@example.com",)                  # alarms and limits notices (SNS email subscriptions)
_CEO = ("ceo@example.com",)                  # the daily cost report
_REPORT_SENDER = "reports@example.com"       # SES identity sending the cost report
_LIMITS_SENDER = "limits@example.com"        # SES identity sending breaker notices to tenant admins
_REPOSITORY = "example-org/saas-platform"    # the GitHub repository whose workflows deploy (OIDC trust)
_ADMINS: tuple[str, ...] = ()                # IAM role ARNs with cluster-admin access (at least one)
# Two accounts only (docs/release.md, "Two accounts"); leave both empty with dev and prod in one account.
_DEV_ACCOUNT: str | None = None              # dev's account id: prod's release copies dev's images from it
_PROD_RELEASE_ROLES: tuple[str, ...] = ()     # prod's release role ARN (saas-prod-cicd output ReleaseRoleArn)
_VIEWERS: tuple[str, ...] = ()               # IAM role ARNs with read-only cluster access (no Secrets)
_API_DOMAIN = "api.example.com"              # the API's public host name (dev: api.dev.<domain>)
# ACM certificate of the API's host name, in the cluster's region (the Ingress's HTTPS listener); the
# example names the placeholder account so that a real-account synth refuses it (stacks/placeholders.py).
_CERTIFICATE = "arn:aws:acm:{region}:111111111111:certificate/00000000-0000-4000-8000-000000000000"


def _dev(account: str, region: str) -> EnvConfig:
    return EnvConfig(
        name="dev", account=account, region=region,
        network=NetworkConfig(cidr="10.20.0.0/16", nat_gateways=1, flow_log_retention_days=14, endpoint_azs=1),
        database=DatabaseConfig(instance_type="t4g.medium", allocated_storage_gb=20,
                                max_allocated_storage_gb=100, multi_az=False, backup_retention_days=7,
                                deletion_protection=False, snapshot_on_delete=False),
        cache=CacheConfig(node_type="cache.t4g.micro", replicas_per_shard=0, snapshot_retention_days=1,
                          snapshot_on_delete=False),
        cluster=ClusterConfig(node_min=1, node_max=3, node_desired=1, node_instance_types=("t4g.large",),
                              node_pool_max_vcpus=8, node_pool_max_memory_gib=32,
                              admin_role_arns=_ADMINS, viewer_role_arns=_VIEWERS),
        tenants=TenantsConfig(secrets_prefix="/saas/dev"),
        limits=LimitsConfig(monthly_budget_usd=500, ops_emails=_OPS, notification_sender=_LIMITS_SENDER),
        cost_report=CostReportConfig(recipients=_CEO, sender=_REPORT_SENDER),
        observability=ObservabilityConfig(alarm_emails=_OPS, log_retention_days=14),
        cicd=CicdConfig(github_repository=_REPOSITORY, github_environment="dev",
                        image_pull_role_arns=_PROD_RELEASE_ROLES),
        workloads=WorkloadsConfig(
            api=ServiceConfig(min_replicas=2, max_replicas=4, cpu_request_millicores=250, cpu_limit_millicores=1000,
                              memory_request_mib=256, memory_limit_mib=512),
            worker=ServiceConfig(min_replicas=1, max_replicas=2, cpu_request_millicores=100, cpu_limit_millicores=500,
                                 memory_request_mib=192, memory_limit_mib=384),
            api_domain=f"api.dev.{_API_DOMAIN.removeprefix('api.')}",
            certificate_arn=_CERTIFICATE.format(region=region)),
        tags=(("environment", "dev"),),
    )


def _prod(account: str, region: str) -> EnvConfig:
    return EnvConfig(
        name="prod", account=account, region=region,
        network=NetworkConfig(cidr="10.10.0.0/16", nat_gateways=3, flow_log_retention_days=90),
        database=DatabaseConfig(instance_type="m7g.large", allocated_storage_gb=100,
                                max_allocated_storage_gb=1000, multi_az=True, backup_retention_days=30,
                                deletion_protection=True, snapshot_on_delete=True),
        cache=CacheConfig(node_type="cache.m7g.large", replicas_per_shard=1, snapshot_retention_days=7,
                          snapshot_on_delete=True),
        cluster=ClusterConfig(admin_role_arns=_ADMINS, viewer_role_arns=_VIEWERS),
        tenants=TenantsConfig(secrets_prefix="/saas/prod"),
        limits=LimitsConfig(monthly_budget_usd=1800, ops_emails=_OPS, notification_sender=_LIMITS_SENDER),
        cost_report=CostReportConfig(recipients=_CEO, sender=_REPORT_SENDER),
        observability=ObservabilityConfig(alarm_emails=_OPS, log_retention_days=90, container_insights=True,
                                          betterstack_webhook_secret_name="/saas/prod/betterstack-webhook"),
        cicd=CicdConfig(github_repository=_REPOSITORY, github_environment="production",
                        promote_from="dev", promote_from_account=_DEV_ACCOUNT),
        workloads=WorkloadsConfig(
            api=ServiceConfig(min_replicas=3, max_replicas=12, cpu_request_millicores=500, cpu_limit_millicores=1000,
                              memory_request_mib=512, memory_limit_mib=1024),
            worker=ServiceConfig(min_replicas=2, max_replicas=6, cpu_request_millicores=250, cpu_limit_millicores=1000,
                                 memory_request_mib=256, memory_limit_mib=512),
            api_domain=_API_DOMAIN,
            certificate_arn=_CERTIFICATE.format(region=region)),
        tags=(("environment", "prod"),),
    )


ENVIRONMENTS = {"dev": _dev, "prod": _prod}


def load_config(name: str, *, account: str | None = None, region: str | None = None) -> EnvConfig:
    """The configuration of environment `name` (``dev`` or ``prod``)."""
    try:
        factory = ENVIRONMENTS[name]
    except KeyError:
        raise ValueError(f"unknown environment {name!r}; choose one of: {', '.join(ENVIRONMENTS)}") from None
    return factory(account or PLACEHOLDER_ACCOUNT, region or PLACEHOLDER_REGION)
