"""Observability of one environment: alarms → one SNS topic (email + BetterStack), the SLO's
error-budget burn alarms, RDS event notifications and a dashboard with one row per area.

Built after every other stack of the environment: the control plane's Lambdas and dead-letter
queues are discovered from the sibling stacks (see ``stacks/constructs/observability.py``); the
data and cluster stacks are passed in. What each alarm means and what to do first:
``docs/runbooks/alarms.md``; design choices: ``docs/observability.md``.
"""

from __future__ import annotations

import re

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_rds as rds
from constructs import Construct

from stacks.cluster_stack import ClusterStack
from stacks.config import EnvConfig, ObservabilityConfig
from stacks.constructs.observability import (
    AlarmTopic, Alarms, ContainerInsights, Sli, WatchedFunction, api_alarms, burn_rate_alarms, discover, function_sli,
    load_balancer_sli)
from stacks.data_stack import DataStack
from stacks.limits_stack import BUDGET_THRESHOLDS
from stacks.security_stack import SecurityStack
from tenant_provisioner.drills.restore import METRIC_NAMESPACE as DR_NAMESPACE
from tenant_provisioner.drills.restore import RPO_METRIC as DR_RPO_METRIC
from tenant_provisioner.drills.restore import RTO_METRIC as DR_RTO_METRIC
from tenant_provisioner.drills.restore import VERIFIED_METRIC as DR_VERIFIED_METRIC
from tenant_provisioner.limits.budget import BudgetLevel
from tenant_provisioner.runtime.metrics import BillingMetrics, CostReportMetrics, LimitsMetrics, TenantMetrics

FIVE_MINUTES = cdk.Duration.minutes(5)
NOT_BREACHING = cloudwatch.TreatMissingData.NOT_BREACHING
GIB = 1024 ** 3
MIB = 1024 ** 2

# Thresholds (why: docs/observability.md, "Alarms and why these thresholds").
CPU_PERCENT = 80                   # sustained 15 min: capacity, not a spike
DB_CONNECTIONS_SHARE = 0.8         # of max_connections (tenant roles + control plane)
DB_FREE_STORAGE_SHARE = 0.1        # of the allocated storage; autoscaling should act first
DB_FREEABLE_MEMORY_BYTES = 256 * MIB
CACHE_ENGINE_CPU_PERCENT = 80      # the single engine thread: every limiter call waits on it
CACHE_HOST_CPU_PERCENT = 90        # TLS, replication and snapshots run beside the engine thread
CACHE_MEMORY_PERCENT = 80          # noeviction: at 100 % every limiter write is refused
CACHE_REPLICATION_LAG_SECONDS = 2
EKS_5XX_SHARE = 0.01
NODE_CPU_PERCENT = 80
NODE_MEMORY_PERCENT = 85          # pods are evicted near node memory pressure
NEAR_TIMEOUT_SHARE = 0.8          # of a Lambda's timeout: the work outgrows the function before it fails
PROVISIONING_BUDGET_SHARE = 0.25   # p95 of one attempt above 1/4 of the signup budget: a retry no longer fits
COST_REPORT_SILENCE_HOURS = 26     # daily report + 2 h of retries
# The platform budget breaker's levels as the limits stack sends them to AWS Budgets (90 / 100 / 200 %).
BUDGET_LEVELS = tuple(sorted({percent / 100 for kind, percent in BUDGET_THRESHOLDS if kind == "ACTUAL"}))
DAILY_WIDGET_RANGE = "-P35D"       # daily metrics: always show the whole month, whatever the dashboard range
RDS_EVENT_CATEGORIES = ("availability", "failover", "failure", "low storage")

# Lambdas (lambdas/<name>) whose own Powertools metrics are watched beyond errors and throttles;
# namespaces and names are the functions' metric contract (tenant_provisioner/runtime/metrics.py).
PROVISIONER, TENANT_OPERATIONS, COST_REPORT, ENFORCER, BUDGET_BREAKER, WEBHOOK = (
    "provision_tenant", "tenant_operations", "cost_report", "enforce_limits", "budget_breaker", "stripe_webhook")
ALB_DIMENSION = re.compile(r"^app/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}$")   # CloudWatch's LoadBalancer dimension


def check_config(obs: ObservabilityConfig) -> None:
    """Fail the synth, not the first incident, on settings no alarm could honour."""
    if not 0 < obs.slo_availability < 1:
        raise ValueError(f"observability.slo_availability must be between 0 and 1 (exclusive), "
                         f"got {obs.slo_availability}")
    if obs.signup_budget_seconds <= 0:
        raise ValueError(f"observability.signup_budget_seconds must be positive, got {obs.signup_budget_seconds}")
    if obs.api_load_balancer is not None and not ALB_DIMENSION.match(obs.api_load_balancer):
        raise ValueError(f"observability.api_load_balancer must be the ALB's CloudWatch dimension "
                         f"'app/<name>/<16 hex id>', got {obs.api_load_balancer!r}")


class ObservabilityStack(cdk.Stack):
    """Alarm topic, alarms, SLO burn alarms, RDS events and the dashboard of one environment."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, security: SecurityStack,
                 data: DataStack, cluster: ClusterStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        obs = config.observability
        check_config(obs)
        prefix = self._prefix = config.stack_id("").rstrip("-")
        siblings = [child for child in scope.node.children
                    if isinstance(child, cdk.Stack) and child is not self and child.node.id.startswith(f"{prefix}-")]
        self.control_plane = discover(siblings)

        self.alarm_topic = AlarmTopic(self, "Alarms", display_name=f"saas {config.name} alarms",
                                      emails=obs.alarm_emails, webhook_secret_name=obs.betterstack_webhook_secret_name)
        self.alarms = Alarms(self, prefix=prefix, topic=self.alarm_topic.topic)
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=prefix,
                                              default_interval=cdk.Duration.days(1))

        sli = function_sli(self.control_plane.function(PROVISIONER).function, "signups (provisioning Lambda)")
        burn_rate_alarms(self.alarms, sli, objective=obs.slo_availability)
        rows = [
            self._slo_row(sli, obs.slo_availability),
            *self._api_rows(config),
            self._tenants_row(config),
            self._spend_row(config),
            self._limits_row(),
            self._billing_row(),
            self._database_row(config, data),
            self._cache_row(config, data),
            self._dr_row(config, data),
            self._cluster_row(config, security, cluster),
            *self._lambda_rows(),
        ]
        header = cloudwatch.TextWidget(width=24, height=2, markdown=(
            f"# saas {config.name}\nSLO {obs.slo_availability:.1%} on {sli.name}"
            f"{' and the API (ALB)' if obs.api_load_balancer else ''} · alarms → SNS "
            f"(email{' + BetterStack' if obs.betterstack_webhook_secret_name else ''}) · "
            "what to do: `docs/runbooks/alarms.md`"))
        status = cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms.all, width=24,
                                              height=max(3, 1 + len(self.alarms.all) // 4))
        self.dashboard.add_widgets(header)
        self.dashboard.add_widgets(status)
        for row in rows:
            self.dashboard.add_widgets(*row)

        rds.CfnEventSubscription(
            self, "DatabaseEvents", enabled=True, sns_topic_arn=self.alarm_topic.topic.topic_arn,
            source_type="db-instance", source_ids=[data.database.instance_identifier],
            event_categories=list(RDS_EVENT_CATEGORIES))

        cdk.CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic.topic_arn,
                      description="Every alarm of this environment (email + BetterStack)")
        cdk.CfnOutput(self, "DashboardName", value=prefix, description="CloudWatch dashboard of this environment")

    # --- SLO ---------------------------------------------------------------------------------

    def _api_rows(self, config: EnvConfig) -> list[list[cloudwatch.IWidget]]:
        """What users of the API see, at its ALB (created by Auto Mode for the Ingress, named
        ``saas-<env>-api`` by k8s/chart.py). The graphs find it by name (SEARCH) from the first
        deploy on; alarms need its exact dimension, so the SLO burn, p99 and healthy-target alarms
        start once ``observability.api_load_balancer`` is set (docs/kubernetes.md, "After the first release")."""
        obs = config.observability
        name = f"app/saas-{config.name}-api/"

        def search(metric: str, statistic: str, label: str) -> cloudwatch.MathExpression:
            return cloudwatch.MathExpression(
                expression=f"SEARCH('{{AWS/ApplicationELB,LoadBalancer}} MetricName=\"{metric}\" "
                           f"LoadBalancer=\"{name}\"', '{statistic}', 300)",
                using_metrics={}, label=label, period=FIVE_MINUTES)

        def healthy(statistic: str) -> cloudwatch.MathExpression:
            return cloudwatch.MathExpression(
                expression=f"SEARCH('{{AWS/ApplicationELB,LoadBalancer,TargetGroup}} MetricName=\"{statistic}\" "
                           f"LoadBalancer=\"{name}\"', 'Minimum', 300)",
                using_metrics={}, label=statistic, period=FIVE_MINUTES)

        graphs: list[cloudwatch.IWidget] = [
            cloudwatch.GraphWidget(title="API requests and 5xx (ALB)", width=8, left=[
                search("RequestCount", "Sum", "requests")], right=[
                search("HTTPCode_Target_5XX_Count", "Sum", "target 5xx"),
                search("HTTPCode_ELB_5XX_Count", "Sum", "ALB 5xx")]),
            cloudwatch.GraphWidget(title="API target response time (s)", width=8, left=[
                search("TargetResponseTime", stat, stat) for stat in ("p50", "p90", "p99")],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=obs.api_p99_seconds, label="p99 alarm")]),
            cloudwatch.GraphWidget(title="API targets", width=8, left=[
                healthy("HealthyHostCount"), healthy("UnHealthyHostCount")]),
        ]
        if not obs.api_load_balancer:
            return [graphs]
        api = api_alarms(self.alarms, load_balancer=obs.api_load_balancer, objective=obs.slo_availability,
                         p99_seconds=obs.api_p99_seconds, min_targets=config.workloads.api.min_replicas)
        return [self._slo_row(api, obs.slo_availability), graphs]

    def _slo_row(self, sli: Sli, objective: float) -> list[cloudwatch.IWidget]:
        availability = cloudwatch.MathExpression(
            expression="100 * (1 - rate)", using_metrics={"rate": sli.error_rate(FIVE_MINUTES)},
            label="availability %", period=FIVE_MINUTES)
        over_range = cloudwatch.MathExpression(
            expression="100 * (1 - rate)", using_metrics={"rate": sli.error_rate(cdk.Duration.days(1))},
            label="availability % (time range)", period=cdk.Duration.days(1))
        return [
            cloudwatch.GraphWidget(title=f"Availability: {sli.name}", left=[availability], width=16,
                                   left_y_axis=cloudwatch.YAxisProps(min=90, max=100),
                                   left_annotations=[cloudwatch.HorizontalAnnotation(
                                       value=100 * objective, label=f"SLO {objective:.1%}")]),
            cloudwatch.SingleValueWidget(title="Availability over the time range", metrics=[over_range],
                                         set_period_to_time_range=True, width=8),
        ]

    # --- tenants and spend ---------------------------------------------------------------------

    def _tenants_row(self, config: EnvConfig) -> list[cloudwatch.IWidget]:
        provisioner = self.control_plane.function(PROVISIONER, namespace=TenantMetrics.NAMESPACE)
        operations = self.control_plane.function(TENANT_OPERATIONS,  # refills the pool
                                                 namespace=TenantMetrics.NAMESPACE)
        budget_ms = config.observability.signup_budget_seconds * 1000
        threshold_ms = budget_ms * PROVISIONING_BUDGET_SHARE
        self.alarms.add(
            "provisioning-latency-p95",
            metric=provisioner.metric(TenantMetrics.PROVISIONING_DURATION, statistic="p95", period=cdk.Duration.minutes(15)),
            threshold=threshold_ms, missing=NOT_BREACHING,
            summary=f"p95 of a provisioning attempt above {threshold_ms / 1000:.0f} s over 15 min: a retried signup "
                    f"would miss the {budget_ms / 1000:.0f} s budget.")

        database = config.database
        capacity = database.max_connections * database.connection_overcommit
        committed = operations.metric(TenantMetrics.TENANT_CONNECTION_LIMITS, statistic="Maximum", period=cdk.Duration.minutes(15))
        self.alarms.add(
            "tenant-connection-capacity", metric=committed, threshold=capacity, missing=NOT_BREACHING,
            summary=f"The tenants' connection limits add up to more than {database.connection_overcommit:g} x "
                    f"max_connections ({database.max_connections}, sized from the {database.instance_type} memory): "
                    "a busy hour can exhaust the instance. Move to a larger instance class or a second database.")

        def count(name: str) -> cloudwatch.Metric:
            return provisioner.metric(name, statistic="Sum", period=FIVE_MINUTES)

        latency = [provisioner.metric(TenantMetrics.PROVISIONING_DURATION, statistic=stat, period=FIVE_MINUTES)
                   .with_(label=stat) for stat in ("p50", "p95", "Maximum")]
        by_state = cloudwatch.MathExpression(
            expression=f'SELECT MAX({TenantMetrics.TENANTS}) FROM "{TenantMetrics.NAMESPACE}" GROUP BY state',
            using_metrics={}, label="tenants", period=FIVE_MINUTES)
        return [
            cloudwatch.GraphWidget(title="Provisioning duration (ms)", left=latency, width=8, left_annotations=[
                cloudwatch.HorizontalAnnotation(value=threshold_ms, label="alarm"),
                cloudwatch.HorizontalAnnotation(value=budget_ms, label="signup budget")]),
            cloudwatch.GraphWidget(title="Signups / warm pool", width=8, left=[
                count(name).with_(label=name) for name in (TenantMetrics.TENANTS_CREATED,
                                                           TenantMetrics.PROVISIONING_REJECTED,
                                                           TenantMetrics.PROVISIONING_FAILED)],
                right=[operations.metric(TenantMetrics.WARM_POOL_SIZE, statistic="Minimum",
                                         period=FIVE_MINUTES).with_(label="warm pool size")]),
            cloudwatch.GraphWidget(title="Tenants by state", left=[by_state], width=8, stacked=True,
                                   right=[committed.with_(label="sum of tenant connection limits")],
                                   right_annotations=[cloudwatch.HorizontalAnnotation(
                                       value=capacity, label="capacity alarm")]),
        ]

    def _spend_row(self, config: EnvConfig) -> list[cloudwatch.IWidget]:
        """Month-to-date spend from the cost report (the platform's region, the report's own scope)
        against the platform budget and its breaker levels."""
        report = self.control_plane.function(COST_REPORT, namespace=CostReportMetrics.NAMESPACE)
        dimensions = {"environment": config.name}   # the report's ENVIRONMENT_NAME
        delivered = report.metric(CostReportMetrics.REPORTS_DELIVERED, statistic="Sum", period=cdk.Duration.hours(1),
                                  dimensions=dimensions)
        self.alarms.add(
            "cost-report-missing", metric=delivered, threshold=1, above=False, periods=COST_REPORT_SILENCE_HOURS,
            missing=cloudwatch.TreatMissingData.BREACHING,
            summary=f"No daily cost report delivered for {COST_REPORT_SILENCE_HOURS} h: the CEO is flying blind.")
        budget = config.limits.monthly_budget_usd
        month_to_date = report.metric(CostReportMetrics.MONTH_TO_DATE_USD, statistic="Maximum", period=cdk.Duration.days(1),
                                      dimensions=dimensions).with_(label="month to date (USD)")
        levels = [cloudwatch.HorizontalAnnotation(value=budget * level, label=f"{level:.0%} of budget")
                  for level in BUDGET_LEVELS]
        breaker = self.control_plane.function(BUDGET_BREAKER, namespace=LimitsMetrics.NAMESPACE).metric(
            LimitsMetrics.PLATFORM_BUDGET_LEVEL, statistic="Maximum", period=cdk.Duration.days(1)).with_(label="budget breaker level")
        return [
            cloudwatch.GraphWidget(title="Spend vs budget (USD, month to date)", width=16, left=[month_to_date],
                                   right=[breaker], start=DAILY_WIDGET_RANGE, left_annotations=levels,
                                   right_y_axis=cloudwatch.YAxisProps(min=0, max=int(max(BudgetLevel)),
                                                                      show_units=False)),
            cloudwatch.GraphWidget(title="Cost report runs", width=8, start=DAILY_WIDGET_RANGE, left=[
                report.metric(name, statistic="Sum", period=cdk.Duration.days(1), dimensions=dimensions)
                .with_(label=name) for name in (CostReportMetrics.RUNS, CostReportMetrics.REPORTS_DELIVERED)]),
        ]

    def _limits_row(self) -> list[cloudwatch.IWidget]:
        enforcer = self.control_plane.function(ENFORCER, namespace=LimitsMetrics.NAMESPACE)
        degraded = cloudwatch.MathExpression(
            expression=f"SELECT SUM({LimitsMetrics.RATE_LIMITER_DEGRADED}) FROM \"{LimitsMetrics.NAMESPACE}\" WHERE component = 'rate-limiter'",
            using_metrics={}, label="degraded decisions", period=FIVE_MINUTES)
        self.alarms.add(
            "rate-limiter-degraded", metric=degraded, threshold=0, missing=NOT_BREACHING,
            summary="API pods decide rate limits without Redis (stricter in-process limits, usage not metered).")
        return [
            cloudwatch.GraphWidget(title="Breakers", width=12, left=[
                enforcer.metric(name, statistic="Sum", period=FIVE_MINUTES).with_(label=name)
                for name in (LimitsMetrics.BREAKER_TRANSITIONS, LimitsMetrics.SUSPENSIONS, LimitsMetrics.ENFORCEMENT_ERRORS)]),
            cloudwatch.GraphWidget(title="Rate limiter degraded (no Redis)", left=[degraded], width=12),
        ]

    def _billing_row(self) -> list[cloudwatch.IWidget]:
        """The Stripe webhook answers failures with a 500 (Stripe retries for days) instead of
        raising, so Lambda's Errors never see them: its own outcome metrics are watched."""
        webhook = self.control_plane.function(WEBHOOK, namespace=BillingMetrics.NAMESPACE)

        def outcome(name: str) -> cloudwatch.Metric:
            return webhook.metric(name, statistic="Sum", period=FIVE_MINUTES).with_(label=name)

        self.alarms.add("billing-webhook-misconfigured", metric=outcome(BillingMetrics.WEBHOOK_MISCONFIGURED), threshold=0,
                        missing=NOT_BREACHING,
                        summary="Stripe webhook calls refused: the endpoint's signing secret is missing or invalid.")
        self.alarms.add("billing-webhook-failing", metric=outcome(BillingMetrics.WEBHOOK_FAILED), threshold=0, periods=3,
                        missing=NOT_BREACHING,
                        summary="Stripe events not applied for 15 min (database or secret unavailable); Stripe "
                                "keeps retrying, payment failures and tier changes wait.")
        return [cloudwatch.GraphWidget(title="Stripe webhook", width=24, stacked=True, left=[
            outcome(name) for name in (BillingMetrics.WEBHOOK_APPLIED, BillingMetrics.WEBHOOK_REJECTED, BillingMetrics.WEBHOOK_FAILED,
                                    BillingMetrics.WEBHOOK_MISCONFIGURED)])]

    # --- data and cluster ----------------------------------------------------------------------

    def _dr_row(self, config: EnvConfig, data: DataStack) -> list[cloudwatch.IWidget]:
        """The monthly restore drill (stacks/dr_stack.py): its outcome, RTO and RPO against the targets."""
        dimensions = {"DBInstanceIdentifier": data.database_identifier}

        def drill(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=DR_NAMESPACE, metric_name=name, dimensions_map=dimensions,
                                     statistic=statistic, period=cdk.Duration.days(1))

        executions = {name: cloudwatch.Metric(
            namespace="AWS/States", metric_name=name, statistic="Sum", period=cdk.Duration.days(1),
            dimensions_map={"StateMachineArn": self.format_arn(
                service="states", resource="stateMachine", resource_name=config.stack_id("restore-drill"),
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)}) for name in ("ExecutionsFailed", "ExecutionsTimedOut")}
        rto, rpo = config.dr.rto_target_minutes * 60, config.dr.rpo_target_minutes * 60
        self.alarms.add("restore-drill-failed", metric=drill(DR_VERIFIED_METRIC, "Minimum"), threshold=1, above=False,
                        missing=NOT_BREACHING, runbook="restore-drill",
                        summary="The restore drill did not verify a restored copy: backups may not be restorable.")
        self.alarms.add("restore-drill-execution-failed", metric=cloudwatch.MathExpression(
            expression="failed + timedout", using_metrics={"failed": executions["ExecutionsFailed"],
                                                           "timedout": executions["ExecutionsTimedOut"]},
            label="failed or timed-out drill executions", period=cdk.Duration.days(1)),
            threshold=0, missing=NOT_BREACHING, runbook="restore-drill",
            summary="A restore-drill execution failed or timed out (its temporary instance may need deleting).")
        self.alarms.add("restore-drill-rto", metric=drill(DR_RTO_METRIC, "Maximum"), threshold=rto,
                        missing=NOT_BREACHING, runbook="restore-drill",
                        summary=f"The last restore took longer than the {config.dr.rto_target_minutes} min RTO target.")
        self.alarms.add("restore-drill-rpo", metric=drill(DR_RPO_METRIC, "Maximum"), threshold=rpo,
                        missing=NOT_BREACHING, runbook="restore-drill",
                        summary=f"The latest restorable time lagged more than the {config.dr.rpo_target_minutes} min "
                                "RPO target: transaction logs are not reaching the backup.")
        return [
            cloudwatch.GraphWidget(title="Restore drill: RTO and RPO (s)", width=12, left=[
                drill(DR_RTO_METRIC, "Maximum").with_(label="RTO"), drill(DR_RPO_METRIC, "Maximum").with_(label="RPO")],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=rto, label="RTO target"),
                                  cloudwatch.HorizontalAnnotation(value=rpo, label="RPO target")]),
            cloudwatch.GraphWidget(title="Restore drill: verified (1) / failed (0)", width=12,
                                   left=[drill(DR_VERIFIED_METRIC, "Minimum").with_(label="verified")]),
        ]

    def _database_row(self, config: EnvConfig, data: DataStack) -> list[cloudwatch.IWidget]:
        db, cfg = data.database, config.database
        cpu = db.metric_cpu_utilization(period=FIVE_MINUTES)
        memory = db.metric_freeable_memory(period=FIVE_MINUTES)
        storage = db.metric_free_storage_space(period=FIVE_MINUTES)
        connections = db.metric_database_connections(period=FIVE_MINUTES, statistic="Maximum")
        max_connections = cfg.max_connections * DB_CONNECTIONS_SHARE
        free_storage = cfg.allocated_storage_gb * GIB * DB_FREE_STORAGE_SHARE
        self.alarms.add("rds-cpu", metric=cpu, threshold=CPU_PERCENT, periods=3, missing=NOT_BREACHING,
                        summary=f"PostgreSQL CPU above {CPU_PERCENT} % for 15 min.")
        self.alarms.add("rds-freeable-memory", metric=memory.with_(statistic="Minimum"),
                        threshold=DB_FREEABLE_MEMORY_BYTES, above=False, periods=3, missing=NOT_BREACHING,
                        summary=f"PostgreSQL freeable memory below {DB_FREEABLE_MEMORY_BYTES // MIB} MiB for 15 min.")
        self.alarms.add("rds-free-storage", metric=storage.with_(statistic="Minimum"), threshold=free_storage,
                        above=False, missing=NOT_BREACHING,
                        summary=f"PostgreSQL free storage below {DB_FREE_STORAGE_SHARE:.0%} of the allocated "
                                f"{cfg.allocated_storage_gb} GiB.")
        self.alarms.add("rds-connections", metric=connections, threshold=max_connections, periods=2,
                        missing=NOT_BREACHING,
                        summary=f"PostgreSQL connections above {DB_CONNECTIONS_SHARE:.0%} of max_connections "
                                f"({cfg.max_connections}): new tenant and control-plane logins will soon fail.")
        return [
            cloudwatch.GraphWidget(title="RDS CPU %", left=[cpu], width=6,
                                   left_annotations=[cloudwatch.HorizontalAnnotation(value=CPU_PERCENT)]),
            cloudwatch.GraphWidget(title="RDS freeable memory / free storage (bytes)", left=[memory], right=[storage],
                                   width=6),
            cloudwatch.GraphWidget(title="RDS connections", left=[connections], width=6, left_annotations=[
                cloudwatch.HorizontalAnnotation(value=cfg.max_connections, label="max_connections")]),
            cloudwatch.GraphWidget(title="RDS latency (s)", width=6, left=[
                db.metric(name, period=FIVE_MINUTES) for name in ("ReadLatency", "WriteLatency")]),
        ]

    def _cache_row(self, config: EnvConfig, data: DataStack) -> list[cloudwatch.IWidget]:
        """Per node: CloudWatch reports ElastiCache by member cluster (``<group>-001``, ``-002`` …),
        and which node is primary changes with every failover, so every node is watched."""
        group = data.node.find_child("Cache").replication_group
        members = [f"{index:03d}" for index in range(1, group.replicas_per_node_group + 2)]
        nodes = [f"{group.replication_group_id}-{member}" for member in members]

        def per_node(name: str, statistic: str) -> list[cloudwatch.Metric]:
            return [cloudwatch.Metric(namespace="AWS/ElastiCache", metric_name=name, statistic=statistic,
                                      period=FIVE_MINUTES, dimensions_map={"CacheClusterId": node}, label=node)
                    for node in nodes]

        for member, engine_cpu, host_cpu, memory, evictions, lag in zip(
                members, per_node("EngineCPUUtilization", "Average"), per_node("CPUUtilization", "Average"),
                per_node("DatabaseMemoryUsagePercentage", "Maximum"), per_node("Evictions", "Sum"),
                per_node("ReplicationLag", "Maximum"), strict=True):
            self.alarms.add(f"cache-engine-cpu-{member}", metric=engine_cpu, threshold=CACHE_ENGINE_CPU_PERCENT,
                            periods=3, missing=NOT_BREACHING, runbook="cache-engine-cpu",
                            summary=f"Cache engine thread above {CACHE_ENGINE_CPU_PERCENT} % for 15 min: "
                                    "limiter calls queue behind it.")
            self.alarms.add(f"cache-host-cpu-{member}", metric=host_cpu, threshold=CACHE_HOST_CPU_PERCENT,
                            periods=3, missing=NOT_BREACHING, runbook="cache-host-cpu",
                            summary=f"Cache host CPU above {CACHE_HOST_CPU_PERCENT} % for 15 min (TLS, replication, "
                                    "snapshots compete with the engine).")
            self.alarms.add(f"cache-memory-{member}", metric=memory, threshold=CACHE_MEMORY_PERCENT, periods=2,
                            missing=NOT_BREACHING, runbook="cache-memory",
                            summary=f"Cache memory above {CACHE_MEMORY_PERCENT} % (noeviction: at 100 % every "
                                    "limiter write is refused).")
            self.alarms.add(f"cache-evictions-{member}", metric=evictions, threshold=0, missing=NOT_BREACHING,
                            runbook="cache-evictions",
                            summary="The cache evicted keys although its policy is noeviction: limiter or breaker "
                                    "state was lost.")
            if len(nodes) > 1:
                self.alarms.add(f"cache-replication-lag-{member}", metric=lag,
                                threshold=CACHE_REPLICATION_LAG_SECONDS, periods=3, missing=NOT_BREACHING,
                                runbook="cache-replication-lag",
                                summary=f"Cache replica more than {CACHE_REPLICATION_LAG_SECONDS} s behind for 15 min:"
                                        " a failover now would lose recent limiter state.")
        return [
            cloudwatch.GraphWidget(title="Cache CPU % (engine / host)", width=6,
                                   left=per_node("EngineCPUUtilization", "Average"),
                                   right=per_node("CPUUtilization", "Average")),
            cloudwatch.GraphWidget(title="Cache memory used %", width=6,
                                   left=per_node("DatabaseMemoryUsagePercentage", "Maximum"),
                                   left_annotations=[cloudwatch.HorizontalAnnotation(value=100,
                                                                                     label="writes refused")]),
            cloudwatch.GraphWidget(title="Cache evictions / connections", width=6, left=per_node("Evictions", "Sum"),
                                   right=per_node("CurrConnections", "Maximum")),
            cloudwatch.GraphWidget(title="Cache replication lag (s)", width=6,
                                   left=per_node("ReplicationLag", "Maximum")),
        ]

    def _cluster_row(self, config: EnvConfig, security: SecurityStack,
                     cluster: ClusterStack) -> list[cloudwatch.IWidget]:
        """The control-plane metrics EKS publishes free for 1.28+ (``AWS/EKS``, per ClusterName),
        plus node metrics from Container Insights where the config turns it on."""
        name = cluster.cluster.cluster_name
        nodes = self._nodes(config, security, name) if config.observability.container_insights else []

        def eks(metric: str, statistic: str = "Sum", period: cdk.Duration = FIVE_MINUTES) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace="AWS/EKS", metric_name=metric, statistic=statistic, period=period,
                                     dimensions_map={"ClusterName": name}, label=metric)

        server_errors = cloudwatch.MathExpression(
            expression="IF(total > 0, errors / total, 0)", label="API server 5xx share", period=FIVE_MINUTES,
            using_metrics={"errors": eks("apiserver_request_total_5XX"), "total": eks("apiserver_request_total")})
        unschedulable = eks("scheduler_pending_pods_UNSCHEDULABLE", period=cdk.Duration.minutes(1))
        self.alarms.add("eks-apiserver-5xx", metric=server_errors, threshold=EKS_5XX_SHARE, periods=3,
                        missing=NOT_BREACHING,
                        summary=f"More than {EKS_5XX_SHARE:.0%} of Kubernetes API requests failed with 5xx for 15 min.")
        self.alarms.add("eks-unschedulable-pods", metric=unschedulable, threshold=0, periods=10,
                        missing=NOT_BREACHING,
                        summary="Pods could not be scheduled for 10 min: the node group is full or at its maximum.")
        return [
            cloudwatch.GraphWidget(title="EKS API requests", width=8, left=[eks("apiserver_request_total")],
                                   right=[eks("apiserver_request_total_5XX"), eks("apiserver_request_total_429")]),
            cloudwatch.GraphWidget(title="EKS pending pods", width=8, left=[
                eks("scheduler_pending_pods", period=cdk.Duration.minutes(1)), unschedulable]),
            cloudwatch.GraphWidget(title="EKS API latency p99 (s)", width=8, left=[
                eks(f"apiserver_request_duration_seconds_{verb}_P99", statistic="Average")
                for verb in ("GET", "POST")]),
            *nodes,
        ]

    def _nodes(self, config: EnvConfig, security: SecurityStack, cluster_name: str) -> list[cloudwatch.IWidget]:
        insights = ContainerInsights(self, "ContainerInsights", cluster_name=cluster_name, logs_key=security.logs_key,
                                     log_retention_days=config.observability.log_retention_days)
        cpu = insights.metric("node_cpu_utilization", "Average", FIVE_MINUTES)
        memory = insights.metric("node_memory_utilization", "Average", FIVE_MINUTES)
        failed = insights.metric("cluster_failed_node_count", "Maximum", FIVE_MINUTES)
        self.alarms.add("eks-node-cpu", metric=cpu, threshold=NODE_CPU_PERCENT, periods=3, missing=NOT_BREACHING,
                        summary=f"EKS nodes above {NODE_CPU_PERCENT} % CPU on average for 15 min.")
        self.alarms.add("eks-node-memory", metric=memory, threshold=NODE_MEMORY_PERCENT, periods=3,
                        missing=NOT_BREACHING,
                        summary=f"EKS nodes above {NODE_MEMORY_PERCENT} % memory on average for 15 min: "
                                "evictions are near.")
        self.alarms.add("eks-failed-nodes", metric=failed, threshold=0, periods=2, missing=NOT_BREACHING,
                        summary="EKS nodes failing (not Ready) for 10 min.")
        return [cloudwatch.GraphWidget(title="EKS nodes (Container Insights)", width=24, left=[cpu, memory],
                                       right=[failed])]

    # --- Lambdas and their dead-letter queues ------------------------------------------------

    def _lambda_rows(self) -> list[list[cloudwatch.IWidget]]:
        functions = self.control_plane.functions
        for watched in functions:
            self._watch_function(watched)
        for queue in self.control_plane.dead_letter_queues:
            owner = cdk.Stack.of(queue).node.id   # e.g. saas-prod-tenants
            self.alarms.add(f"dlq-{owner.removeprefix(self._prefix + '-')}", runbook="dlq",
                            metric=queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES,
                                                                                       statistic="Maximum"),
                            threshold=0, missing=NOT_BREACHING,
                            summary=f"Messages in the dead-letter queue of {owner}: events that exhausted "
                                    "their retries.")

        def each(metric: str, statistic: str = "Sum") -> list[cloudwatch.IMetric]:
            return [watched.function.metric(metric, statistic=statistic, period=FIVE_MINUTES, label=watched.service)
                    for watched in functions]

        return [
            [cloudwatch.GraphWidget(title="Lambda invocations", left=each("Invocations"), width=8),
             cloudwatch.GraphWidget(title="Lambda errors", left=each("Errors"), width=8),
             cloudwatch.GraphWidget(title="Lambda throttles", left=each("Throttles"), width=8)],
            [cloudwatch.GraphWidget(title="Lambda duration p95 (ms)", left=each("Duration", "p95"), width=12),
             cloudwatch.GraphWidget(title="Dead-letter queues (messages)", width=12, left=[
                 queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum",
                                                                     label=cdk.Stack.of(queue).node.id)
                 for queue in self.control_plane.dead_letter_queues])],
        ]

    def _watch_function(self, watched: WatchedFunction) -> None:
        slug = watched.service.replace("_", "-")
        self.alarms.add(f"lambda-errors-{slug}", metric=watched.function.metric_errors(period=FIVE_MINUTES),
                        threshold=0, missing=NOT_BREACHING, runbook="lambda-errors",
                        summary=f"The {watched.service} Lambda raised or timed out.")
        self.alarms.add(f"lambda-throttles-{slug}", metric=watched.function.metric_throttles(period=FIVE_MINUTES),
                        threshold=0, missing=NOT_BREACHING, runbook="lambda-throttles",
                        summary=f"The {watched.service} Lambda hit its reserved concurrency; calls were refused.")
        timeout_ms = watched.timeout_seconds * 1000
        self.alarms.add(f"lambda-near-timeout-{slug}", runbook="lambda-near-timeout",
                        metric=watched.function.metric_duration(period=FIVE_MINUTES, statistic="Maximum"),
                        threshold=timeout_ms * NEAR_TIMEOUT_SHARE, missing=NOT_BREACHING,
                        summary=f"A {watched.service} run took over {NEAR_TIMEOUT_SHARE:.0%} of its "
                                f"{watched.timeout_seconds} s timeout: timeouts (errors) are next.")

