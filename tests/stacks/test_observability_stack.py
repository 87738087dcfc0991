"""The observability stack: alarm topic, alarms per area (discovered Lambdas and DLQs), SLO burn alarms, dashboard."""

from __future__ import annotations

import dataclasses
import json
import re

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_

from app import PROJECT_DIR
from stacks.config import load_config
from stacks.constructs.observability import (
    BURN_WINDOWS, RUNBOOK, Alarms, ControlPlane, api_alarms, burn_rate_alarms, discover, function_sli,
    load_balancer_sli)
from stacks.observability_stack import (
    CACHE_MEMORY_PERCENT, DB_CONNECTIONS_SHARE, NEAR_TIMEOUT_SHARE, PROVISIONING_BUDGET_SHARE, check_config)
from tenant_provisioner.runtime.metrics import LimitsMetrics

ENVS = ("dev", "prod")
M = assertions.Match


def _of(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def _alarms(template_json, env) -> dict[str, dict]:
    """Alarm name → properties (simple and composite)."""
    template = template_json[(env, "observability")]
    found = {r["Properties"]["AlarmName"]: r["Properties"] for r in _of(template, "AWS::CloudWatch::Alarm").values()}
    found.update({r["Properties"]["AlarmName"]: r["Properties"]
                  for r in _of(template, "AWS::CloudWatch::CompositeAlarm").values()})
    return found


def _metric(alarm: dict) -> tuple[str, str, dict]:
    """(namespace, metric name, dimensions) of a single-metric alarm, in either CloudFormation form."""
    if "MetricName" in alarm:
        return alarm["Namespace"], alarm["MetricName"], {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    (query,) = alarm["Metrics"]
    metric = query["MetricStat"]["Metric"]
    return metric["Namespace"], metric["MetricName"], {d["Name"]: d["Value"] for d in metric["Dimensions"]}


def _topic_ref(template_json, env) -> dict:
    (topic,) = _of(template_json[(env, "observability")], "AWS::SNS::Topic")
    return {"Ref": topic}


@pytest.mark.parametrize("env", ENVS)
def test_alarm_topic_is_encrypted_with_a_rotating_key_tls_only_and_open_to_alarm_publishers(template_json, env):
    template = template_json[(env, "observability")]
    (topic,) = _of(template, "AWS::SNS::Topic").values()
    (key_id, key), = _of(template, "AWS::KMS::Key").items()
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True
    key_services = {svc for s in key["Properties"]["KeyPolicy"]["Statement"]
                    for svc in ([s["Principal"].get("Service")] if isinstance(s["Principal"], dict) else [])
                    for svc in (svc if isinstance(svc, list) else [svc]) if svc}
    assert {"cloudwatch.amazonaws.com", "events.rds.amazonaws.com"} <= key_services
    (policy,) = _of(template, "AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)
    publish = next(s for s in statements if s["Effect"] == "Allow")
    assert publish["Condition"] == {"StringEquals": {"aws:SourceAccount": load_config(env).account}}


@pytest.mark.parametrize("env", ENVS)
def test_alarms_reach_every_configured_email_and_betterstack_only_through_a_secret_reference(template_json, env):
    obs = load_config(env).observability
    template = template_json[(env, "observability")]
    subscriptions = [r["Properties"] for r in _of(template, "AWS::SNS::Subscription").values()]
    assert sorted(s["Endpoint"] for s in subscriptions if s["Protocol"] == "email") == sorted(obs.alarm_emails)
    webhooks = [s["Endpoint"] for s in subscriptions if s["Protocol"] == "https"]
    if obs.betterstack_webhook_secret_name:
        assert webhooks == [f"{{{{resolve:secretsmanager:{obs.betterstack_webhook_secret_name}:SecretString:::}}}}"]
    else:
        assert webhooks == []
    assert "https://" not in json.dumps(template)   # no webhook URL (it carries a token) in the template


@pytest.mark.parametrize("env", ENVS)
def test_every_control_plane_lambda_and_dead_letter_queue_is_watched(template_json, env):
    """Discovered from the sibling stacks' templates: adding a Lambda elsewhere adds its alarms here."""
    services, queues = set(), set()
    for (e, component), template in template_json.items():
        if e != env or component == "observability":
            continue
        for function in _of(template, "AWS::Lambda::Function").values():
            if not function["Properties"]["Handler"].startswith("lambdas."):
                continue   # CDK's own custom-resource helpers
            services.add(function["Properties"]["Handler"].split(".")[1].replace("_", "-"))
            if "DeadLetterConfig" in function["Properties"]:
                queues.add(component)
    assert {"provision-tenant", "cost-report", "enforce-limits"} <= services
    names = set(_alarms(template_json, env))
    for service in services:
        assert {f"saas-{env}-lambda-errors-{service}", f"saas-{env}-lambda-throttles-{service}",
                f"saas-{env}-lambda-near-timeout-{service}"} <= names
    assert {f"saas-{env}-dlq-{component}" for component in queues} <= names
    dlq = _alarms(template_json, env)[f"saas-{env}-dlq-tenants"]
    assert (dlq["MetricName"], dlq["Statistic"], dlq["Threshold"]) == ("ApproximateNumberOfMessagesVisible",
                                                                       "Maximum", 0)


@pytest.mark.parametrize("env", ENVS)
def test_every_notifying_alarm_sends_alarm_and_ok_and_links_a_runbook_section_that_exists(template_json, env):
    runbook = (PROJECT_DIR / RUNBOOK).read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', runbook))
    topic = _topic_ref(template_json, env)
    for name, alarm in _alarms(template_json, env).items():
        anchor = alarm["AlarmDescription"].rsplit(f"{RUNBOOK}#", 1)[1]
        assert anchor in anchors, f"{name}: no section #{anchor} in {RUNBOOK}"
        if alarm.get("AlarmActions"):
            assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic], name


@pytest.mark.parametrize("env", ENVS)
def test_every_simple_alarm_chooses_how_missing_data_counts(template_json, env):
    for name, alarm in _alarms(template_json, env).items():
        if "AlarmRule" not in alarm:
            assert alarm["TreatMissingData"] in {"breaching", "notBreaching"}, name


@pytest.mark.parametrize("env", ENVS)
def test_cost_report_silence_alarms_after_26_hours_with_missing_data_breaching(template_json, env):
    alarm = _alarms(template_json, env)[f"saas-{env}-cost-report-missing"]
    assert _metric(alarm) == ("SaaS/CostReport", "ReportsDelivered", {"service": "cost_report", "environment": env})
    assert alarm["Statistic"] == "Sum"
    assert alarm["Period"] * alarm["EvaluationPeriods"] == 26 * 3600
    assert alarm["DatapointsToAlarm"] == alarm["EvaluationPeriods"]
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["TreatMissingData"]) == (
        "LessThanThreshold", 1, "breaching")


@pytest.mark.parametrize("env", ENVS)
def test_provisioning_p95_alarm_against_the_signup_budget(template_json, env):
    alarm = _alarms(template_json, env)[f"saas-{env}-provisioning-latency-p95"]
    budget_ms = load_config(env).observability.signup_budget_seconds * 1000
    assert (alarm["Namespace"], alarm["MetricName"], alarm["ExtendedStatistic"]) == (
        "SaaS/Tenants", "ProvisioningDuration", "p95")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "provision_tenant"}]
    assert alarm["Threshold"] == budget_ms * PROVISIONING_BUDGET_SHARE < budget_ms


@pytest.mark.parametrize("env", ENVS)
def test_limiter_degraded_alarm_queries_the_limiters_own_metric_whatever_its_other_dimensions(template_json, env):
    alarm = _alarms(template_json, env)[f"saas-{env}-rate-limiter-degraded"]
    (query,) = alarm["Metrics"]
    assert query["Expression"] == (f'SELECT SUM({LimitsMetrics.RATE_LIMITER_DEGRADED}) FROM "{LimitsMetrics.NAMESPACE}" '
                                   "WHERE component = 'rate-limiter'")
    assert query["Period"] == 300 and alarm["Threshold"] == 0


@pytest.mark.parametrize("env", ENVS)
def test_slo_burn_rate_alarms_page_only_when_both_windows_burn(template_json, env):
    objective = load_config(env).observability.slo_availability
    alarms = _alarms(template_json, env)
    template = template_json[(env, "observability")]
    for window in BURN_WINDOWS:
        composite = alarms[f"saas-{env}-{window.slug}"]
        rule = json.dumps(composite["AlarmRule"])
        children = [f"{window.slug}-long", f"{window.slug}-short"]
        for child in children:
            logical_id = next(n for n, r in _of(template, "AWS::CloudWatch::Alarm").items()
                              if r["Properties"]["AlarmName"] == f"saas-{env}-{child}")
            assert logical_id in rule
            alarm = alarms[f"saas-{env}-{child}"]
            assert alarm["Threshold"] == pytest.approx(window.burn_rate * (1 - objective))
            assert "AlarmActions" not in alarm   # only the composite notifies
        assert " AND " in rule and composite["AlarmActions"] == [_topic_ref(template_json, env)]
        long_alarm = alarms[f"saas-{env}-{window.slug}-long"]
        assert {m["MetricStat"]["Period"] for m in long_alarm["Metrics"] if "MetricStat" in m} == {
            int(window.long.to_seconds())}


@pytest.mark.parametrize(("env", "nodes"), [("dev", 1), ("prod", 2)])
def test_cache_alarms_per_node_memory_evictions_and_lag_only_with_replicas(template_json, env, nodes):
    alarms = _alarms(template_json, env)
    members = [f"{i:03d}" for i in range(1, nodes + 1)]
    for member in members:
        memory = alarms[f"saas-{env}-cache-memory-{member}"]
        assert _metric(memory) == ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage",
                                   {"CacheClusterId": f"saas-{env}-cache-{member}"})
        assert memory["Threshold"] == CACHE_MEMORY_PERCENT
        evictions = alarms[f"saas-{env}-cache-evictions-{member}"]
        assert (_metric(evictions)[1], evictions["Threshold"]) == ("Evictions", 0)
        assert {f"saas-{env}-cache-engine-cpu-{member}", f"saas-{env}-cache-host-cpu-{member}"} <= set(alarms)
    lag = {name for name in alarms if "cache-replication-lag" in name}
    assert lag == ({f"saas-{env}-cache-replication-lag-{m}" for m in members} if nodes > 1 else set())


@pytest.mark.parametrize("env", ENVS)
def test_database_alarms_and_failover_events(template_json, env):
    config = load_config(env).database
    alarms = _alarms(template_json, env)
    assert alarms[f"saas-{env}-rds-connections"]["Threshold"] == config.max_connections * DB_CONNECTIONS_SHARE
    assert alarms[f"saas-{env}-rds-free-storage"]["ComparisonOperator"] == "LessThanThreshold"
    assert {f"saas-{env}-rds-cpu", f"saas-{env}-rds-freeable-memory"} <= set(alarms)
    templates = assertions.Template.from_json(template_json[(env, "observability")])
    templates.has_resource_properties("AWS::RDS::EventSubscription", {
        "SourceType": "db-instance", "SnsTopicArn": _topic_ref(template_json, env),
        "EventCategories": M.array_with(["failover", "failure"]), "SourceIds": [M.any_value()]})


@pytest.mark.parametrize("env", ENVS)
def test_eks_alarms_use_the_free_control_plane_metrics(template_json, env):
    alarms = _alarms(template_json, env)
    unschedulable = alarms[f"saas-{env}-eks-unschedulable-pods"]
    namespace, name, dimensions = _metric(unschedulable)
    assert (namespace, name, list(dimensions)) == ("AWS/EKS", "scheduler_pending_pods_UNSCHEDULABLE", ["ClusterName"])
    errors = alarms[f"saas-{env}-eks-apiserver-5xx"]
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in errors["Metrics"] if "MetricStat" in m} == {
        "apiserver_request_total", "apiserver_request_total_5XX"}


def _dashboard_body(template_json, env) -> str:
    (dashboard,) = _of(template_json[(env, "observability")], "AWS::CloudWatch::Dashboard").values()
    return "".join(part if isinstance(part, str) else json.dumps(part)
                   for part in dashboard["Properties"]["DashboardBody"]["Fn::Join"][1])


@pytest.mark.parametrize("env", ENVS)
def test_dashboard_has_a_row_per_area_with_spend_against_the_budget_levels(template_json, env):
    body = _dashboard_body(template_json, env)
    for title in ("Availability", "Provisioning duration", "Tenants by state", "Spend vs budget", "Breakers",
                  "Rate limiter degraded", "Stripe webhook", "RDS CPU", "Cache memory used", "EKS API requests",
                  "Lambda errors",
                  "Dead-letter queues", "Alarms"):
        assert f'"title":"{title}' in body, title
    budget = load_config(env).limits.monthly_budget_usd
    for level in (0.9, 1.0, 2.0):
        assert re.search(rf'"value":{budget * level:g}(\.0)?,"label":"{level:.0%} of budget"', body), level
    assert 'GROUP BY state' in body and '"MonthToDateUSD"' in body
    # the warm pool is refilled (and its size published) by tenant_operations, not provisioning
    assert re.search(r'"SaaS/Tenants","WarmPoolSize","service","tenant_operations"', body)


@pytest.mark.parametrize("env", ENVS)
def test_tenant_connection_limits_are_alarmed_against_the_memory_sized_max_connections(template_json, env):
    database = load_config(env).database
    alarm = next(a["Properties"] for a in _of(template_json[(env, "observability")], "AWS::CloudWatch::Alarm").values()
                 if a["Properties"].get("MetricName") == "TenantConnectionLimits")
    assert alarm["Threshold"] == database.max_connections * database.connection_overcommit
    assert {"Name": "service", "Value": "tenant_operations"} in alarm["Dimensions"]


# --- units (no synthesis of the app) -------------------------------------------------------------

def _stack() -> cdk.Stack:
    return cdk.Stack(cdk.App(), "Unit", env=cdk.Environment(account="111111111111", region="us-east-1"))


def _function(stack: cdk.Stack, handler: str) -> lambda_.Function:
    return lambda_.Function(stack, handler.replace(".", "-"), runtime=lambda_.Runtime.PYTHON_3_13, handler=handler,
                            code=lambda_.Code.from_inline("def handler(event, context): pass"))


def test_discovery_names_functions_by_their_lambdas_directory_and_refuses_unknown_ones():
    stack = _stack()
    _function(stack, "lambdas.provision_tenant.handler.handler")
    _function(stack, "index.handler")
    plane = discover([stack])
    assert [f.service for f in plane.functions] == ["provision_tenant"]   # not CDK's helper functions
    assert plane.function("provision_tenant").timeout_seconds == 3   # none set: Lambda's default
    five = cdk.Duration.minutes(5)
    with pytest.raises(ValueError, match="namespace"):
        plane.function("provision_tenant").metric("TenantsCreated", statistic="Sum", period=five)
    metric = plane.function("provision_tenant", namespace="SaaS/Tenants").metric("TenantsCreated", statistic="Sum",
                                                                                  period=five)
    assert (metric.namespace, metric.dimensions) == ("SaaS/Tenants", {"service": "provision_tenant"})
    with pytest.raises(ValueError, match="no control-plane Lambda lambdas/nope"):
        plane.function("nope")
    assert ControlPlane(functions=(), dead_letter_queues=()).dead_letter_queues == ()


@pytest.mark.parametrize("objective", [0, 1, 1.5, -0.1])
def test_burn_rate_alarms_refuse_an_impossible_objective(objective):
    stack = _stack()
    alarms = Alarms(stack, prefix="unit", topic=cdk.aws_sns.Topic(stack, "T"))
    with pytest.raises(ValueError, match="between 0 and 1"):
        burn_rate_alarms(alarms, load_balancer_sli("app/k8s-api/1"), objective=objective)


def test_load_balancer_sli_counts_target_and_alb_5xx_over_requests():
    stack = _stack()
    alarms = Alarms(stack, prefix="unit", topic=cdk.aws_sns.Topic(stack, "T"))
    burn_rate_alarms(alarms, load_balancer_sli("app/k8s-api/1"), objective=0.995)
    template = assertions.Template.from_stack(stack)
    template.resource_count_is("AWS::CloudWatch::CompositeAlarm", len(BURN_WINDOWS))
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": "unit-slo-fast-burn-short",
        "Metrics": M.array_with([M.object_like({
            "Expression": "IF((requests) > 0, (target5xx + elb5xx) / (requests), 0)"})]),
    })
    names = {m["MetricStat"]["Metric"]["MetricName"]
             for alarm in template.find_resources("AWS::CloudWatch::Alarm").values()
             for m in alarm["Properties"]["Metrics"] if "MetricStat" in m}
    assert names == {"HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count", "RequestCount"}


def test_api_alarms_burn_the_slo_on_alb_5xx_and_watch_p99_and_healthy_targets():
    stack = _stack()
    alarms = Alarms(stack, prefix="unit", topic=cdk.aws_sns.Topic(stack, "T"))
    alb = "app/saas-prod-api/0123456789abcdef"
    api_alarms(alarms, load_balancer=alb, objective=0.995, p99_seconds=0.8, min_targets=3)
    template = assertions.Template.from_stack(stack)
    composites = template.find_resources("AWS::CloudWatch::CompositeAlarm")
    assert {c["Properties"]["AlarmName"] for c in composites.values()} == {"unit-api-slo-fast-burn",
                                                                           "unit-api-slo-slow-burn"}
    assert all(c["Properties"]["AlarmDescription"].endswith(f"#{c['Properties']['AlarmName'][9:]}")
               for c in composites.values())   # the shared runbook sections slo-fast-burn / slo-slow-burn
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": "unit-api-latency-p99", "MetricName": "TargetResponseTime", "ExtendedStatistic": "p99",
        "Threshold": 0.8, "EvaluationPeriods": 3, "Dimensions": [{"Name": "LoadBalancer", "Value": alb}]})
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": "unit-api-healthy-targets", "Threshold": 3, "ComparisonOperator": "LessThanThreshold",
        "TreatMissingData": "breaching",
        "Metrics": [M.object_like({"Expression": M.string_like_regexp(
            f"SELECT MIN\\(HealthyHostCount\\) .* WHERE LoadBalancer = '{alb}'")})]})


def test_function_sli_counts_throttled_calls_as_failed_calls():
    stack = _stack()
    rate = function_sli(_function(stack, "lambdas.x.handler.handler"), "x").error_rate(cdk.Duration.hours(1))
    assert rate.expression == "IF((invocations + throttles) > 0, (errors + throttles) / (invocations + throttles), 0)"
    assert isinstance(rate, cloudwatch.MathExpression)


@pytest.mark.parametrize("env", ENVS)
def test_container_insights_node_alarms_follow_the_config(template_json, env):
    template = template_json[(env, "observability")]
    addons = list(_of(template, "AWS::EKS::Addon").values())
    node_alarms = {name for name in _alarms(template_json, env) if name.startswith(f"saas-{env}-eks-node")
                   or name == f"saas-{env}-eks-failed-nodes"}
    if not load_config(env).observability.container_insights:
        assert addons == [] and node_alarms == set()
        return
    (addon,) = addons
    assert addon["Properties"]["AddonName"] == "amazon-cloudwatch-observability"
    assert json.loads(addon["Properties"]["ConfigurationValues"]) == {"containerLogs": {"enabled": False}}
    (association,) = addon["Properties"]["PodIdentityAssociations"]
    assert association["ServiceAccount"] == "cloudwatch-agent"
    (log_group,) = _of(template, "AWS::Logs::LogGroup").values()
    assert "KmsKeyId" in log_group["Properties"]
    assert log_group["Properties"]["RetentionInDays"] == load_config(env).observability.log_retention_days
    assert node_alarms == {f"saas-{env}-eks-node-cpu", f"saas-{env}-eks-node-memory", f"saas-{env}-eks-failed-nodes"}


@pytest.mark.parametrize(("field", "value"), [
    ("slo_availability", 1.0), ("slo_availability", 0), ("signup_budget_seconds", 0),
    ("api_load_balancer", "my-alb"),
    ("api_load_balancer", "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/x/y"),
])
def test_config_no_alarm_could_honour_fails_the_synth(field, value):
    obs = dataclasses.replace(load_config("prod").observability, **{field: value})
    with pytest.raises(ValueError, match=field):
        check_config(obs)


def test_config_accepts_an_alb_dimension():
    check_config(dataclasses.replace(load_config("prod").observability,
                                     api_load_balancer="app/k8s-app-api-3f2a1b/0123456789abcdef"))


@pytest.mark.parametrize("env", ENVS)
def test_stripe_webhook_failures_answered_with_500_are_alarmed_on_its_own_metrics(template_json, env):
    alarms = _alarms(template_json, env)
    for name, metric in (("misconfigured", "WebhookMisconfigured"), ("failing", "WebhookFailed")):
        assert _metric(alarms[f"saas-{env}-billing-webhook-{name}"]) == (
            "SaaS/Billing", metric, {"service": "stripe_webhook"})
    assert alarms[f"saas-{env}-billing-webhook-failing"]["EvaluationPeriods"] == 3


@pytest.mark.parametrize("env", ENVS)
def test_near_timeout_alarm_follows_each_functions_own_timeout(template_json, env):
    (function,) = [f for f in _of(template_json[(env, "limits")], "AWS::Lambda::Function").values()
                   if f["Properties"]["Handler"] == "lambdas.enforce_limits.handler.handler"]
    alarm = _alarms(template_json, env)[f"saas-{env}-lambda-near-timeout-enforce-limits"]
    assert _metric(alarm)[1] == "Duration" and alarm["Statistic"] == "Maximum"
    assert alarm["Threshold"] == function["Properties"]["Timeout"] * 1000 * NEAR_TIMEOUT_SHARE
