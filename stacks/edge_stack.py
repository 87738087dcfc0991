"""The edge backstop: a regional WAF web ACL in front of the API ingress (ALB).

The Redis limiter is the real limit; WAF only stops floods before they reach the pods:

- one rate-based rule per tier from the tiers file, keyed on the API-key header
  (``Authorization``) and scoped to that tier's keys (``Bearer <tier>_…``: keys carry their tier
  at issue as a public prefix, tenant_provisioner/gateway/keys.py), at ``waf_rate_multiplier`` ×
  the tier rate over ``waf_window_seconds``;
- one IP-keyed rule for requests without the header (WAF does not count requests that lack an
  aggregation key, so without it they would be unlimited at the edge);
- AWS managed rule groups: common rule set, known bad inputs, Amazon IP reputation.

The ACL's ARN is published (SSM ``/saas/<env>/platform/web-acl-arn`` + output) for the ingress
annotation ``alb.ingress.kubernetes.io/wafv2-acl-arn``. Requests are logged to CloudWatch Logs.
"""

from __future__ import annotations

import math

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks.config import EnvConfig
from stacks.constructs.outputs import publish
from stacks.security_stack import SecurityStack
from tenant_provisioner.tiers import Tier, TierCatalog, load_tiers

MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                       "AWSManagedRulesAmazonIpReputationList")
WAF_MIN_RATE_LIMIT = 10


def tier_rate_limit(tier: Tier, *, multiplier: float, window_seconds: int) -> int:
    """Requests per window per API key the WAF allows a tier: multiplier × rate × window."""
    return max(WAF_MIN_RATE_LIMIT, math.ceil(tier.rate_per_second * multiplier * window_seconds))


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(cloud_watch_metrics_enabled=True, metric_name=name,
                                                    sampled_requests_enabled=True)


def _header(name: str) -> wafv2.CfnWebACL.FieldToMatchProperty:
    return wafv2.CfnWebACL.FieldToMatchProperty(single_header={"Name": name})


_NO_TRANSFORM = [wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")]
# The scheme ("Bearer") is case-insensitive in HTTP; keys themselves are lower-case.
_LOWERCASE = [wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="LOWERCASE")]


class EdgeStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, security: SecurityStack,
                 catalog: TierCatalog | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        catalog = catalog or load_tiers()
        limits = config.limits
        header = limits.api_key_header.lower()
        rules: list[wafv2.CfnWebACL.RuleProperty] = []
        for priority, group in enumerate(MANAGED_RULE_GROUPS):
            rules.append(wafv2.CfnWebACL.RuleProperty(
                name=group, priority=priority, override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(managed_rule_group_statement=(
                    wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(vendor_name="AWS", name=group))),
                visibility_config=_visibility(group)))
        for offset, tier in enumerate(catalog.tiers.values()):
            name = f"rate-{tier.name}"
            rules.append(wafv2.CfnWebACL.RuleProperty(
                name=name, priority=100 + offset, action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                    limit=tier_rate_limit(tier, multiplier=limits.waf_rate_multiplier,
                                          window_seconds=limits.waf_window_seconds),
                    evaluation_window_sec=limits.waf_window_seconds,
                    aggregate_key_type="CUSTOM_KEYS",
                    custom_keys=[wafv2.CfnWebACL.RateBasedStatementCustomKeyProperty(
                        header=wafv2.CfnWebACL.RateLimitHeaderProperty(name=header,
                                                                       text_transformations=_NO_TRANSFORM))],
                    scope_down_statement=wafv2.CfnWebACL.StatementProperty(
                        byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
                            field_to_match=_header(header), positional_constraint="STARTS_WITH",
                            search_string=f"{limits.api_key_scheme}{tier.name}_".lower(),
                            text_transformations=_LOWERCASE)))),
                visibility_config=_visibility(name)))
        rules.append(wafv2.CfnWebACL.RuleProperty(
            name="rate-ip-without-api-key", priority=200, action=wafv2.CfnWebACL.RuleActionProperty(block={}),
            statement=wafv2.CfnWebACL.StatementProperty(rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                limit=max(WAF_MIN_RATE_LIMIT, limits.waf_anonymous_ip_limit),
                evaluation_window_sec=limits.waf_window_seconds, aggregate_key_type="IP",
                scope_down_statement=wafv2.CfnWebACL.StatementProperty(not_statement=wafv2.CfnWebACL.NotStatementProperty(
                    statement=wafv2.CfnWebACL.StatementProperty(
                        size_constraint_statement=wafv2.CfnWebACL.SizeConstraintStatementProperty(
                            field_to_match=_header(header), comparison_operator="GT", size=0,
                            text_transformations=_NO_TRANSFORM)))))),
            visibility_config=_visibility("rate-ip-without-api-key")))

        self.web_acl = wafv2.CfnWebACL(
            self, "ApiWebAcl", scope="REGIONAL", default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            description=f"saas {config.name} API: per-tier rate backstop, anonymous IP limit, managed rules",
            visibility_config=_visibility(f"saas-{config.name}-api"), rules=rules)
        # WAF requires the log group name to start with "aws-waf-logs-".
        self.log_group = logs.LogGroup(self, "WafLogs", log_group_name=f"aws-waf-logs-saas-{config.name}-api",
                                       retention=logs.RetentionDays.THREE_MONTHS, encryption_key=security.logs_key,
                                       removal_policy=cdk.RemovalPolicy.DESTROY)
        wafv2.CfnLoggingConfiguration(
            self, "WafLogging", resource_arn=self.web_acl.attr_arn,
            log_destination_configs=[cdk.Stack.of(self).format_arn(
                service="logs", resource="log-group", resource_name=self.log_group.log_group_name,
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)],
            redacted_fields=[wafv2.CfnLoggingConfiguration.FieldToMatchProperty(
                single_header={"Name": header})])  # API keys never reach the logs
        publish(self, config.name, "web-acl-arn", self.web_acl.attr_arn,
                "Regional WAF web ACL for the API ingress (alb.ingress.kubernetes.io/wafv2-acl-arn)")
