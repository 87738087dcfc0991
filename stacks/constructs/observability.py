"""Building blocks of the observability stack: the alarm topic, one way to make an alarm, the
error-budget burn alarms of an SLO, Container Insights for EKS nodes, and discovery of the
control plane's Lambdas and queues.

Discovery reads the constructs other stacks built (functions, their dead-letter queues, the
Powertools service name from each handler's path), so a new Lambda is watched without anyone
editing this stack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_eks as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.constructs.retention import retention_days
from stacks.constructs.workload_identity import POD_IDENTITY_PRINCIPAL
from stacks.nag import acknowledge

RUNBOOK = "docs/runbooks/alarms.md"
# AWS services that publish to the alarm topic: CloudWatch (alarms) and RDS (event subscriptions).
PUBLISHERS = ("cloudwatch.amazonaws.com", "events.rds.amazonaws.com")
CONTAINER_INSIGHTS_ADDON = "amazon-cloudwatch-observability"
CONTAINER_INSIGHTS_NAMESPACE = "ContainerInsights"
CLOUDWATCH_AGENT_POLICY = "CloudWatchAgentServerPolicy"
LAMBDA_DEFAULT_TIMEOUT_SECONDS = 3


class AlarmTopic(Construct):
    """The one topic every alarm notifies: encrypted with its own rotating key (whose policy must
    name the publishing services, so keys of the security stack stay untouched), TLS only,
    email subscriptions and, when configured, the BetterStack incoming webhook.

    The webhook URL carries BetterStack's token, so it lives in Secrets Manager and reaches the
    subscription as a CloudFormation dynamic reference: resolved at deploy time, never in the
    template. The secret must exist (holding only the URL) before the stack is deployed.
    """

    def __init__(self, scope: Construct, construct_id: str, *, display_name: str, emails: Iterable[str],
                 webhook_secret_name: str | None) -> None:
        super().__init__(scope, construct_id)
        account = cdk.Stack.of(self).account
        self.key = kms.Key(self, "Key", enable_key_rotation=True, removal_policy=cdk.RemovalPolicy.DESTROY,
                           description=f"{display_name}: alarm notifications (SNS)")
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="AlarmPublishers", principals=[iam.ServicePrincipal(p) for p in PUBLISHERS],
            actions=["kms:GenerateDataKey*", "kms:Decrypt"], resources=["*"]))
        self.topic = sns.Topic(self, "Topic", display_name=display_name, master_key=self.key, enforce_ssl=True)
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AlarmPublishersOfThisAccount", principals=[iam.ServicePrincipal(p) for p in PUBLISHERS],
            actions=["sns:Publish"], resources=[self.topic.topic_arn],
            conditions={"StringEquals": {"aws:SourceAccount": account}}))
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.webhook: sns.Subscription | None = None
        if webhook_secret_name:
            self.webhook = sns.Subscription(
                self, "BetterStack", topic=self.topic, protocol=sns.SubscriptionProtocol.HTTPS,
                endpoint=cdk.SecretValue.secrets_manager(webhook_secret_name).unsafe_unwrap())


class ContainerInsights(Construct):
    """Node and pod metrics for an EKS cluster: the CloudWatch Observability add-on, its agent
    authorised through EKS Pod Identity (add-on >= 3.1), container-log shipping off (the services
    log through their own pipeline; shipping every pod's stdout would double the log bill), and
    the performance log group created first, so it is KMS-encrypted and expires (the agent would
    create it unencrypted and kept forever)."""

    def __init__(self, scope: Construct, construct_id: str, *, cluster_name: str, logs_key: kms.IKey,
                 log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.cluster_name = cluster_name
        self.log_group = logs.LogGroup(
            self, "PerformanceLogs", log_group_name=f"/aws/containerinsights/{cluster_name}/performance",
            encryption_key=logs_key, retention=retention_days(log_retention_days),
            removal_policy=cdk.RemovalPolicy.DESTROY)
        # The add-on creates the Pod Identity association of amazon-cloudwatch/cloudwatch-agent itself.
        agent = iam.Role(self, "AgentRole", description="CloudWatch agent of the Container Insights add-on",
                         assumed_by=iam.SessionTagsPrincipal(iam.ServicePrincipal(POD_IDENTITY_PRINCIPAL)),
                         managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(CLOUDWATCH_AGENT_POLICY)])
        acknowledge(agent, f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{CLOUDWATCH_AGENT_POLICY}]",
                    "The add-on's documented policy: the agent writes EMF performance logs and metrics for every "
                    "node and pod of the cluster; AWS keeps it in step with new agent features.")
        self.addon = eks.CfnAddon(
            self, "Addon", cluster_name=cluster_name, addon_name=CONTAINER_INSIGHTS_ADDON,
            configuration_values='{"containerLogs": {"enabled": false}}',
            pod_identity_associations=[eks.CfnAddon.PodIdentityAssociationProperty(
                role_arn=agent.role_arn, service_account="cloudwatch-agent")])
        self.addon.node.add_dependency(self.log_group)

    def metric(self, name: str, statistic: str, period: cdk.Duration) -> cloudwatch.Metric:
        """A cluster-level Container Insights metric (``node_cpu_utilization``, ...)."""
        return cloudwatch.Metric(namespace=CONTAINER_INSIGHTS_NAMESPACE, metric_name=name, statistic=statistic,
                                 period=period, dimensions_map={"ClusterName": self.cluster_name}, label=name)


class Alarms:
    """Makes every alarm the same way: named ``saas-<env>-<slug>``, ALARM and OK both sent to the
    topic (BetterStack resolves its incident on OK), the runbook section in the description."""

    def __init__(self, scope: Construct, *, prefix: str, topic: sns.ITopic) -> None:
        self._scope = scope
        self._prefix = prefix
        self._action = cloudwatch_actions.SnsAction(topic)
        self.all: list[cloudwatch.AlarmBase] = []

    def add(self, slug: str, *, metric: cloudwatch.IMetric, threshold: float, above: bool = True,
            periods: int = 1, datapoints: int | None = None, missing: cloudwatch.TreatMissingData,
            summary: str, runbook: str | None = None, notify: bool = True) -> cloudwatch.Alarm:
        """An alarm on ``metric`` crossing ``threshold`` in ``datapoints`` of ``periods`` periods;
        ``runbook`` is its section in the runbook when several alarms share one (default: ``slug``)."""
        comparison = (cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD if above
                      else cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD)
        alarm = cloudwatch.Alarm(
            self._scope, _construct_id(slug), alarm_name=f"{self._prefix}-{slug}", metric=metric,
            threshold=threshold, comparison_operator=comparison, evaluation_periods=periods,
            datapoints_to_alarm=datapoints or periods, treat_missing_data=missing,
            alarm_description=f"{summary} Runbook: {RUNBOOK}#{runbook or slug}")
        if notify:
            self._notify(alarm)
        return alarm

    def composite(self, slug: str, *, rule: cloudwatch.IAlarmRule, summary: str,
                  runbook: str | None = None) -> cloudwatch.CompositeAlarm:
        alarm = cloudwatch.CompositeAlarm(
            self._scope, _construct_id(slug), composite_alarm_name=f"{self._prefix}-{slug}", alarm_rule=rule,
            alarm_description=f"{summary} Runbook: {RUNBOOK}#{runbook or slug}")
        self._notify(alarm)
        return alarm

    def _notify(self, alarm: cloudwatch.AlarmBase) -> None:
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.all.append(alarm)


def _construct_id(slug: str) -> str:
    return "".join(part.capitalize() for part in slug.split("-"))


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window burn-rate condition (Google SRE workbook, ch. 5): the error rate over
    both the long and the short window exceeds ``burn_rate`` × the error budget."""

    slug: str
    burn_rate: float
    long: cdk.Duration
    short: cdk.Duration
    meaning: str


# For a 30-day SLO: 2 % of the month's budget gone in 1 h (page), 5 % in 6 h (ticket).
BURN_WINDOWS = (
    BurnWindow("slo-fast-burn", 14.4, cdk.Duration.hours(1), cdk.Duration.minutes(5),
               "2 % of the 30-day error budget spent within one hour: page now"),
    BurnWindow("slo-slow-burn", 6.0, cdk.Duration.hours(6), cdk.Duration.minutes(30),
               "5 % of the 30-day error budget spent within six hours: fix today"),
)


@dataclass(frozen=True)
class Sli:
    """An availability indicator: failed requests and all requests, as metrics of one period."""

    name: str
    bad: Mapping[str, cloudwatch.IMetric]     # summed; an id in both maps is one metric counted in both
    total: Mapping[str, cloudwatch.IMetric]   # summed

    def error_rate(self, period: cdk.Duration, label: str = "error rate") -> cloudwatch.MathExpression:
        """bad / total over ``period``; 0 without traffic (no requests spend no budget)."""
        metrics = {**self.bad, **self.total}
        bad, total = " + ".join(self.bad), " + ".join(self.total)
        return cloudwatch.MathExpression(
            expression=f"IF(({total}) > 0, ({bad}) / ({total}), 0)", using_metrics=metrics,
            period=period, label=label)


def load_balancer_sli(load_balancer: str) -> Sli:
    """Availability of an ALB (dimension ``app/<name>/<id>``): 5xx from targets or the ALB itself."""
    def metric(name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace="AWS/ApplicationELB", metric_name=name, statistic="Sum",
                                 dimensions_map={"LoadBalancer": load_balancer})
    return Sli(name="the API (ALB 5xx)",
               bad={"target5xx": metric("HTTPCode_Target_5XX_Count"), "elb5xx": metric("HTTPCode_ELB_5XX_Count")},
               total={"requests": metric("RequestCount")})


def function_sli(function: lambda_.IFunction, name: str) -> Sli:
    """Availability of a Lambda: raised, timed-out or throttled calls among all calls (throttled
    calls are not counted in Invocations, so they are added to both sides)."""
    return Sli(name=name, bad={"errors": function.metric_errors(), "throttles": function.metric_throttles()},
               total={"invocations": function.metric_invocations(), "throttles": function.metric_throttles()})


def burn_rate_alarms(alarms: Alarms, sli: Sli, *, objective: float, prefix: str = "") -> list[cloudwatch.CompositeAlarm]:
    """One composite alarm per burn window; its two window alarms only feed it (no actions).
    ``prefix`` tells apart the alarms of a second SLO (e.g. ``api-``); the runbook section is shared."""
    if not 0 < objective < 1:
        raise ValueError(f"SLO availability must be between 0 and 1 (exclusive), got {objective}")
    budget = 1 - objective
    composites = []
    for window in BURN_WINDOWS:
        threshold = window.burn_rate * budget
        children = [alarms.add(f"{prefix}{window.slug}-{which}", metric=sli.error_rate(duration), threshold=threshold,
                               missing=cloudwatch.TreatMissingData.NOT_BREACHING, notify=False, runbook=window.slug,
                               summary=f"{sli.name}: error rate over {duration.to_human_string()} above "
                                       f"{window.burn_rate} x the error budget ({threshold:.2%}).")
                    for which, duration in (("long", window.long), ("short", window.short))]
        composites.append(alarms.composite(
            f"{prefix}{window.slug}", runbook=window.slug, rule=cloudwatch.AlarmRule.all_of(*children),
            summary=f"SLO {objective:.1%} on {sli.name}: {window.meaning}."))
    return composites


def api_alarms(alarms: Alarms, *, load_balancer: str, objective: float, p99_seconds: float,
               min_targets: int) -> Sli:
    """What users of the API see at its ALB: the SLO's burn alarms on its 5xx ratio, the targets'
    p99 latency, and healthy targets (all target groups of the ALB, a Metrics Insights query:
    Auto Mode names the target group, so only the load balancer is known)."""
    sli = load_balancer_sli(load_balancer)
    burn_rate_alarms(alarms, sli, objective=objective, prefix="api-")
    five_minutes = cdk.Duration.minutes(5)
    alarms.add(
        "api-latency-p99", periods=3, missing=cloudwatch.TreatMissingData.NOT_BREACHING, threshold=p99_seconds,
        metric=cloudwatch.Metric(namespace="AWS/ApplicationELB", metric_name="TargetResponseTime",
                                 statistic="p99", period=five_minutes, dimensions_map={"LoadBalancer": load_balancer}),
        summary=f"p99 of the API's target response time above {p99_seconds} s for 15 min.")
    alarms.add(
        "api-healthy-targets", periods=2, threshold=min_targets, above=False,
        missing=cloudwatch.TreatMissingData.BREACHING,
        metric=cloudwatch.MathExpression(
            expression=f'SELECT MIN(HealthyHostCount) FROM SCHEMA("AWS/ApplicationELB", LoadBalancer, TargetGroup) '
                       f"WHERE LoadBalancer = '{load_balancer}'",
            using_metrics={}, label="healthy API targets", period=five_minutes),
        summary=f"Fewer healthy API targets than the {min_targets} minimum replicas for 10 min "
                "(pods failing /readyz, or not scheduled).")
    return sli


@dataclass(frozen=True)
class WatchedFunction:
    """A control-plane Lambda, the ``service`` dimension of its Powertools metrics and, once
    named by the caller, their namespace."""

    function: lambda_.Function
    service: str   # lambdas/<service>; PythonFunction sets POWERTOOLS_SERVICE_NAME to it
    namespace: str | None = None

    @property
    def timeout_seconds(self) -> int:
        """The function's timeout (Lambda's default of 3 s when none is set)."""
        cfn = self.function.node.default_child
        timeout = cfn.timeout if isinstance(cfn, lambda_.CfnFunction) else None
        return int(timeout) if isinstance(timeout, (int, float)) else LAMBDA_DEFAULT_TIMEOUT_SECONDS

    def metric(self, name: str, *, statistic: str, period: cdk.Duration,
               dimensions: Mapping[str, str] | None = None) -> cloudwatch.Metric:
        """A Powertools metric of this function: dimension ``service`` plus ``dimensions``."""
        if self.namespace is None:
            raise ValueError(f"lambdas/{self.service}: look it up with the namespace its metrics go to")
        return cloudwatch.Metric(namespace=self.namespace, metric_name=name, statistic=statistic, period=period,
                                 dimensions_map={"service": self.service, **(dimensions or {})})


@dataclass(frozen=True)
class ControlPlane:
    """Everything the other stacks of one environment run that this stack watches."""

    functions: tuple[WatchedFunction, ...]
    dead_letter_queues: tuple[sqs.IQueue, ...]

    def function(self, service: str, *, namespace: str | None = None) -> WatchedFunction:
        """The function built from ``lambdas/<service>``, its metrics in ``namespace``."""
        for watched in self.functions:
            if watched.service == service:
                return dataclasses.replace(watched, namespace=namespace)
        raise ValueError(f"no control-plane Lambda lambdas/{service}; "
                         f"found: {', '.join(sorted(f.service for f in self.functions)) or 'none'}")


def discover(stacks: Iterable[cdk.Stack]) -> ControlPlane:
    """Every function built from ``lambdas/<name>`` in ``stacks`` and every queue one of them uses
    as its dead-letter queue. CDK's own helper functions (custom-resource providers) are not ours
    to page on: their failure fails the deployment that runs them."""
    functions: list[WatchedFunction] = []
    queues: dict[str, sqs.IQueue] = {}
    for stack in stacks:
        for construct in stack.node.find_all():
            service = _service(construct) if isinstance(construct, lambda_.Function) else None
            if service is None:
                continue
            functions.append(WatchedFunction(function=construct, service=service))
            if construct.dead_letter_queue is not None:
                queues.setdefault(construct.dead_letter_queue.node.path, construct.dead_letter_queue)
    return ControlPlane(functions=tuple(functions), dead_letter_queues=tuple(queues.values()))


def _service(function: lambda_.Function) -> str | None:
    """``lambdas.<name>.handler.handler`` (PythonFunction's handler) → ``<name>``, else None."""
    cfn = function.node.default_child
    handler = cfn.handler if isinstance(cfn, lambda_.CfnFunction) else None
    parts = handler.split(".") if isinstance(handler, str) else []
    return parts[1] if len(parts) == 4 and parts[0] == "lambdas" else None
