"""Pre-deploy monthly cost estimate of the synthesized templates, against the budget (`make cost`).

Reads ``cdk.out/*.template.json`` (stacks ``saas-<env>-<component>``), prices each resource from
``config/prices.yaml`` (the one price file, with sources and date) and adds the usage the
templates cannot know (NAT data, logs, runtime load balancers, Auto Mode nodes) from the same
file's ``usage`` assumptions. Prints the estimate per environment and resource kind; exits 1 when
the total is over the approved budget or an environment over its own monthly budget
(``limits.monthly_budget_usd`` in stacks/config.py), 2 on bad input.

It never imports CDK, so it runs in a second on existing templates; a resource type it has no
price for and does not know to be free is listed as unpriced rather than guessed.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from stacks.config import SHARED_SCOPE
from tenant_provisioner.errors import ConfigError, InvalidInput, PlatformError

REPO_ROOT = Path(__file__).resolve().parent.parent
PRICES_FILE = REPO_ROOT / "config" / "prices.yaml"
APPROVED_BUDGET_USD = (Decimal(2000), Decimal(2500))   # prod + dev together, per month
_STACK = re.compile(r"^saas-(?P<env>[a-z0-9]+)-(?P<component>.+)\.template\.json$")

# Kinds, in the order the estimate prints them.
EKS, NODES, TUNNEL, RDS, CACHE, NAT, LB, KMS, SECRETS, WAF, CLOUDWATCH, ENDPOINTS, OTHER = (
    "EKS control plane", "EKS nodes", "EC2 instances (SSM tunnel)", "RDS (instance x Multi-AZ + storage)",
    "Cache nodes", "NAT gateways + public IPs", "Load balancers", "KMS keys", "Secrets", "WAF", "CloudWatch",
    "VPC endpoints", "Other usage")
KINDS = (EKS, NODES, TUNNEL, RDS, CACHE, NAT, LB, KMS, SECRETS, WAF, CLOUDWATCH, ENDPOINTS, OTHER)

# No charge of their own (or charged through usage lines below): never "unpriced".
FREE_TYPES = frozenset({
    "AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::RouteTable", "AWS::EC2::Route",
    "AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::InternetGateway", "AWS::EC2::VPCGatewayAttachment",
    "AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress",
    "AWS::EC2::FlowLog", "AWS::EC2::LaunchTemplate", "AWS::Logs::LogGroup", "AWS::Logs::ResourcePolicy",
    "AWS::KMS::Alias", "AWS::SecretsManager::SecretTargetAttachment", "AWS::SecretsManager::RotationSchedule",
    "AWS::SecretsManager::ResourcePolicy", "AWS::RDS::DBSubnetGroup", "AWS::RDS::DBParameterGroup",
    "AWS::RDS::DBClusterParameterGroup", "AWS::RDS::DBProxyTargetGroup", "AWS::ElastiCache::SubnetGroup",
    "AWS::ElastiCache::ParameterGroup", "AWS::ElastiCache::User", "AWS::ElastiCache::UserGroup",
    "AWS::EKS::Addon", "AWS::EKS::AccessEntry", "AWS::EKS::PodIdentityAssociation", "AWS::SSM::Parameter",
    "AWS::Lambda::Function", "AWS::Lambda::Permission", "AWS::Lambda::EventInvokeConfig",
    "AWS::Lambda::EventSourceMapping", "AWS::Lambda::Url", "AWS::SQS::Queue", "AWS::SQS::QueuePolicy",
    "AWS::SNS::Topic", "AWS::SNS::Subscription", "AWS::SNS::TopicPolicy", "AWS::DynamoDB::Table",
    "AWS::DynamoDB::GlobalTable", "AWS::Scheduler::Schedule", "AWS::Scheduler::ScheduleGroup",
    "AWS::Events::Rule", "AWS::SES::EmailIdentity", "AWS::SES::ConfigurationSet", "AWS::Budgets::Budget",
    "AWS::CE::AnomalyMonitor", "AWS::CE::AnomalySubscription", "AWS::WAFv2::WebACLAssociation",
    "AWS::WAFv2::IPSet", "AWS::WAFv2::LoggingConfiguration", "AWS::ElasticLoadBalancingV2::Listener",
    "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AWS::ElasticLoadBalancingV2::ListenerRule", "AWS::CloudWatch::CompositeAlarm",
    "AWS::ApiGateway::Account", "AWS::CDK::Metadata", "AWS::Logs::MetricFilter", "AWS::Logs::SubscriptionFilter",
    "AWS::Events::EventBus", "AWS::Events::Connection", "AWS::Events::ApiDestination", "AWS::Events::Archive",
    "AWS::SNS::TopicInlinePolicy", "AWS::Lambda::Alias", "AWS::Lambda::Version", "AWS::Lambda::LayerVersion",
    "AWS::WAFv2::RuleGroup", "AWS::CertificateManager::Certificate", "AWS::Route53::RecordSet",
    "AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::ECR::Repository", "AWS::CE::CostCategory",
    "AWS::SES::Template", "AWS::SES::ReceiptRuleSet", "AWS::SSM::Document", "AWS::RDS::EventSubscription",
    "AWS::StepFunctions::StateMachine",   # a monthly drill: a few hundred state transitions
})
# Usage-billed types above (S3, ECR, API destinations, archives) are covered by the usage assumptions.
FREE_PREFIXES = ("AWS::IAM::", "Custom::", "AWS::CloudFormation::")


@dataclass(frozen=True)
class Line:
    env: str
    kind: str
    detail: str
    monthly_usd: Decimal
    assumed: bool = False       # from a usage assumption, not from the template


@dataclass
class Estimate:
    lines: list[Line] = field(default_factory=list)
    unpriced: list[tuple[str, str, str]] = field(default_factory=list)   # env, stack, resource type

    @property
    def environments(self) -> list[str]:
        return sorted({line.env for line in self.lines})

    def total(self, env: str | None = None, kind: str | None = None) -> Decimal:
        return sum((line.monthly_usd for line in self.lines
                    if (env is None or line.env == env) and (kind is None or line.kind == kind)), Decimal(0))


def _dec(value: Any, what: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, TypeError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None


class PriceBook:
    """Typed access to config/prices.yaml; a missing price is a `ConfigError` naming the key."""

    def __init__(self, data: Mapping[str, Any], source: Path) -> None:
        if not isinstance(data, Mapping) or "hours_per_month" not in data or "usage" not in data:
            raise ConfigError(f"{source}: needs at least 'hours_per_month', the price sections and 'usage'")
        self.data, self.source = data, source
        self.hours = _dec(data["hours_per_month"], "hours_per_month")
        self.as_of = str(data.get("as_of", "unknown"))

    @classmethod
    def load(cls, path: Path = PRICES_FILE) -> "PriceBook":
        try:
            return cls(yaml.safe_load(Path(path).read_text()), Path(path))
        except FileNotFoundError:
            raise ConfigError(f"price file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None

    def price(self, *keys: str) -> Decimal:
        node: Any = self.data
        for key in keys:
            if not isinstance(node, Mapping) or key not in node:
                raise ConfigError(f"{self.source}: no price at {'.'.join(keys)}; add it (with its source) "
                                  "before this resource can be estimated")
            node = node[key]
        return _dec(node, ".".join(keys))

    def monthly(self, *keys: str) -> Decimal:
        """An hourly price as a monthly one."""
        return self.price(*keys) * self.hours

    def usage(self, env: str) -> Mapping[str, Any]:
        usage = self.data["usage"]
        if env not in usage:
            raise ConfigError(f"{self.source}: no usage assumptions for environment {env!r} under 'usage'")
        return usage[env]


Pricer = Callable[[Mapping[str, Any], PriceBook], Iterable[tuple[str, str, Decimal]]]


def _resolved(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _eks_cluster(props, prices):
    support = str(props.get("UpgradePolicy", {}).get("SupportType", "EXTENDED")).lower()
    yield EKS, f"cluster ({support} support)", prices.monthly("eks", "cluster_per_hour", support)


def _nodegroup(props, prices):
    scaling = props.get("ScalingConfig", {})
    count = int(scaling.get("DesiredSize", scaling.get("MinSize", 1)))
    instance = (props.get("InstanceTypes") or ["t3.medium"])[0]
    disk = _dec(props.get("DiskSize", prices.price("eks", "node_disk_gb_default")), "DiskSize")
    yield NODES, f"{count} x {instance} (managed node group)", \
        count * prices.monthly("ec2_instance_per_hour", instance)
    yield NODES, f"{count} x {disk} GB node volumes", count * disk * prices.price("eks", "node_disk_gb_month")


def _instance(props, prices):
    """A standalone instance (the SSM tunnel) and its EBS volumes."""
    instance = props["InstanceType"]
    yield TUNNEL, f"1 x {instance}", prices.monthly("ec2_instance_per_hour", instance)
    for mapping in props.get("BlockDeviceMappings", []):
        size = _dec(mapping.get("Ebs", {}).get("VolumeSize", 8), "VolumeSize")
        yield TUNNEL, f"{size} GB gp3 root volume", size * prices.price("eks", "node_disk_gb_month")


def _vcpus(instance_class: str) -> int:
    """vCPUs of a Graviton/x86 general-purpose size (RDS Proxy bills on them, minimum 2)."""
    size = instance_class.rsplit(".", 1)[-1]
    multiple = {"micro": 2, "small": 2, "medium": 2, "large": 2, "xlarge": 4}.get(size)
    if multiple is None:
        match = re.match(r"^(\d+)xlarge$", size)
        multiple = 4 * int(match.group(1)) if match else 2
    return multiple


def _rds_instance(props, prices):
    instance = props["DBInstanceClass"]
    multi_az = props.get("MultiAZ", False)
    multi_az = multi_az is True or str(multi_az).lower() == "true" or not _resolved(multi_az)
    factor = prices.price("rds", "multi_az_factor") if multi_az else Decimal(1)
    az = "Multi-AZ" if multi_az else "Single-AZ"
    yield RDS, f"{instance} {az}", prices.monthly("rds", "instance_per_hour", instance) * factor
    storage = _dec(props.get("AllocatedStorage", 20), "AllocatedStorage")
    kind = str(props.get("StorageType", "gp2"))
    yield RDS, f"{storage} GB {kind} {az}", storage * prices.price("rds", "storage_gb_month", kind) * factor
    region = props.get("AutomaticBackupReplicationRegion")
    if region:  # the replicated backups hold about one full copy; a volume's worth of changes crosses a month
        yield RDS, f"backups replicated to {region}: {storage} GB stored", storage * prices.price(
            "rds", "backup_replication", "storage_gb_month")
        yield RDS, f"backups replicated to {region}: {storage} GB transferred", storage * prices.price(
            "rds", "backup_replication", "transfer_per_gb")


def _rds_proxy(props, prices):  # noqa: ARG001 - the proxy's size comes from its instance
    yield RDS, "RDS Proxy (2 vCPU minimum)", 2 * prices.monthly("rds", "proxy_per_vcpu_hour")


def _cache_nodes(node_type: str, engine: str, nodes: int, prices: PriceBook) -> tuple[str, str, Decimal]:
    hourly = prices.price("elasticache", "node_per_hour", node_type)
    if engine.lower() == "valkey":
        hourly *= 1 - prices.price("elasticache", "valkey_discount")
    return CACHE, f"{nodes} x {node_type} ({engine})", nodes * hourly * prices.hours


def _replication_group(props, prices):
    if "NumCacheClusters" in props:
        nodes = int(props["NumCacheClusters"])
    else:
        nodes = int(props.get("NumNodeGroups", 1)) * (int(props.get("ReplicasPerNodeGroup", 0)) + 1)
    yield _cache_nodes(props["CacheNodeType"], str(props.get("Engine", "redis")), nodes, prices)


def _cache_cluster(props, prices):
    yield _cache_nodes(props["CacheNodeType"], str(props.get("Engine", "redis")),
                       int(props.get("NumCacheNodes", 1)), prices)


def _nat(props, prices):  # noqa: ARG001
    yield NAT, "NAT gateway", prices.monthly("network", "nat_gateway_per_hour")


def _eip(props, prices):  # noqa: ARG001
    yield NAT, "public IPv4 address", prices.monthly("network", "public_ipv4_per_hour")


def _load_balancer(props, prices):
    kind = "nlb" if props.get("Type") == "network" else "alb"
    yield LB, f"{kind.upper()} (hours)", prices.monthly("load_balancer", f"{kind}_per_hour")


def _kms_key(props, prices):  # noqa: ARG001
    yield KMS, "customer-managed key", prices.price("kms", "key_month")


def _secret(props, prices):  # noqa: ARG001
    yield SECRETS, "secret", prices.price("secrets_manager", "secret_month")


def _web_acl(props, prices):
    rules = len(props.get("Rules", []))
    monthly = prices.price("waf", "web_acl_month") + rules * prices.price("waf", "rule_month")
    yield WAF, f"web ACL + {rules} rules", monthly


def _hosted_zone(props, prices):  # noqa: ARG001
    yield OTHER, "Route 53 hosted zone", prices.price("other", "hosted_zone_month")


def _dashboard(props, prices):  # noqa: ARG001
    yield CLOUDWATCH, "dashboard", prices.price("cloudwatch", "dashboard_month")


def _alarm(props, prices):
    metrics = max(1, len([m for m in props.get("Metrics", []) if "MetricStat" in m]))
    yield CLOUDWATCH, f"alarm ({metrics} metric{'s' if metrics > 1 else ''})", \
        metrics * prices.price("cloudwatch", "alarm_metric_month")


def _endpoint(props, prices):
    if props.get("VpcEndpointType", "Gateway") != "Interface":
        return
    azs = len(props.get("SubnetIds", [])) or 1
    service = props.get("ServiceName")
    name = ".".join(service.split(".")[3:]) if isinstance(service, str) else "interface"  # com.amazonaws.<region>.
    yield ENDPOINTS, f"{name} endpoint x {azs} AZ", azs * prices.monthly("network", "interface_endpoint_per_az_hour")


def _budget_action(props, prices):  # noqa: ARG001
    yield OTHER, "action-enabled budget (30 budget-days, before the free 62 per account)", \
        30 * prices.price("other", "budget_action_day")


PRICERS: dict[str, Pricer] = {
    "AWS::EKS::Cluster": _eks_cluster,
    "AWS::EKS::Nodegroup": _nodegroup,
    "AWS::EC2::Instance": _instance,
    "AWS::RDS::DBInstance": _rds_instance,
    "AWS::RDS::DBProxy": _rds_proxy,
    "AWS::ElastiCache::ReplicationGroup": _replication_group,
    "AWS::ElastiCache::CacheCluster": _cache_cluster,
    "AWS::EC2::NatGateway": _nat,
    "AWS::EC2::EIP": _eip,
    "AWS::ElasticLoadBalancingV2::LoadBalancer": _load_balancer,
    "AWS::KMS::Key": _kms_key,
    "AWS::SecretsManager::Secret": _secret,
    "AWS::WAFv2::WebACL": _web_acl,
    "AWS::CloudWatch::Dashboard": _dashboard,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::EC2::VPCEndpoint": _endpoint,
    "AWS::Budgets::BudgetsAction": _budget_action,
    "AWS::Route53::HostedZone": _hosted_zone,
}


def _usage_lines(env: str, templates: Mapping[str, dict], prices: PriceBook) -> Iterable[tuple[str, str, Decimal]]:
    """What the templates cannot show, from the price file's usage assumptions for `env`."""
    usage = prices.usage(env)
    resources = [r for t in templates.values() for r in t.get("Resources", {}).values()]
    types = [r.get("Type") for r in resources]
    if "AWS::EC2::NatGateway" in types:
        yield NAT, f"{usage['nat_gb']} GB through NAT", _dec(usage["nat_gb"], "nat_gb") * prices.price(
            "network", "nat_per_gb")
    if any(r.get("Properties", {}).get("VpcEndpointType") == "Interface" for r in resources):
        yield ENDPOINTS, f"{usage['endpoint_gb']} GB through interface endpoints", _dec(
            usage["endpoint_gb"], "endpoint_gb") * prices.price("network", "interface_endpoint_per_gb")
    runtime_lbs = _dec(usage.get("runtime_load_balancers", 0), "runtime_load_balancers")
    if runtime_lbs:
        yield LB, f"{runtime_lbs} ALB created by the cluster ingress (hours)", runtime_lbs * prices.monthly(
            "load_balancer", "alb_per_hour")
    lb_count = runtime_lbs + types.count("AWS::ElasticLoadBalancingV2::LoadBalancer")
    if lb_count:
        lcu = _dec(usage.get("load_balancer_lcu", 0), "load_balancer_lcu")
        yield LB, f"{lcu} LCU average x {lb_count} load balancer(s)", lb_count * lcu * prices.monthly(
            "load_balancer", "lcu_per_hour")
    if "AWS::WAFv2::WebACL" in types:
        yield WAF, f"{usage['waf_million_requests']}M requests", _dec(
            usage["waf_million_requests"], "waf_million_requests") * prices.price("waf", "per_million_requests")
    yield CLOUDWATCH, f"{usage['log_ingest_gb']} GB logs ingested", _dec(
        usage["log_ingest_gb"], "log_ingest_gb") * prices.price("cloudwatch", "log_ingest_gb")
    yield CLOUDWATCH, f"{usage['log_stored_gb']} GB logs stored", _dec(
        usage["log_stored_gb"], "log_stored_gb") * prices.price("cloudwatch", "log_storage_gb_month")
    for resource in resources:
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::EKS::Cluster" and props.get("ComputeConfig", {}).get("Enabled") is True:
            nodes = usage["auto_mode_nodes"]
            hourly = prices.price("ec2_instance_per_hour", nodes["instance_type"])
            fee = 1 + prices.price("eks", "auto_mode_fee_share")
            yield NODES, f"Auto Mode nodes (autoscaled; baseline) {nodes['count']} x {nodes['instance_type']} " \
                f"incl. management fee", int(nodes["count"]) * hourly * fee * prices.hours
            disk = _dec(nodes.get("disk_gb", 0), "auto_mode_nodes.disk_gb") * int(nodes["count"])
            if disk:
                yield NODES, f"{disk} GB Auto Mode node volumes", disk * prices.price("eks", "node_disk_gb_month")
    traces = _dec(usage.get("xray_million_traces", 0), "xray_million_traces")
    if traces and "AWS::EKS::Cluster" in types:
        yield CLOUDWATCH, f"{traces}M X-Ray traces recorded (API, worker, Lambdas; sampled)", traces * prices.price(
            "xray", "per_million_traces")
    repositories = types.count("AWS::ECR::Repository")
    if repositories:
        stored = _dec(usage.get("ecr_gb_per_repository", 0), "ecr_gb_per_repository") * repositories
        yield OTHER, f"{stored} GB of images in {repositories} ECR repositories", stored * prices.price(
            "ecr", "storage_gb_month")
    drill_hours = _dec(usage.get("restore_drill_hours", 0), "restore_drill_hours")
    if drill_hours and "AWS::StepFunctions::StateMachine" in types:
        for resource in resources:
            if resource.get("Type") == "AWS::RDS::DBInstance":
                props = resource["Properties"]
                instance, storage = props["DBInstanceClass"], _dec(props.get("AllocatedStorage", 20), "AllocatedStorage")
                hourly = prices.price("rds", "instance_per_hour", instance) + storage * prices.price(
                    "rds", "storage_gb_month", str(props.get("StorageType", "gp2"))) / prices.hours
                yield RDS, f"restore drill: {drill_hours} h of a temporary {instance} Single-AZ", drill_hours * hourly
    yield OTHER, f"{usage['cost_explorer_requests']} Cost Explorer requests (daily report)", _dec(
        usage["cost_explorer_requests"], "cost_explorer_requests") * prices.price("other", "cost_explorer_request")


def estimate(templates: Mapping[tuple[str, str], dict], prices: PriceBook) -> Estimate:
    """Monthly estimate of every (env, component) template, plus each environment's usage lines."""
    result = Estimate()
    by_env: dict[str, dict[str, dict]] = defaultdict(dict)
    for (env, component), template in sorted(templates.items()):
        by_env[env][component] = template
        for resource in template.get("Resources", {}).values():
            kind = resource.get("Type", "")
            pricer = PRICERS.get(kind)
            if pricer:
                for line_kind, detail, monthly in pricer(resource.get("Properties", {}), prices):
                    result.lines.append(Line(env, line_kind, f"{component}: {detail}", monthly))
            elif kind not in FREE_TYPES and not kind.startswith(FREE_PREFIXES):
                result.unpriced.append((env, component, kind))
    for env, env_templates in sorted(by_env.items()):
        if env == SHARED_SCOPE:   # account singletons (OIDC provider, SES identities): no usage of their own
            continue
        result.lines += [Line(env, kind, detail, monthly, assumed=True)
                         for kind, detail, monthly in _usage_lines(env, env_templates, prices)]
    return result


def load_templates(cdk_out: Path) -> dict[tuple[str, str], dict]:
    """Every ``saas-<env>-<component>.template.json`` in `cdk_out`."""
    if not Path(cdk_out).is_dir():
        raise InvalidInput("cdk_out", f"{cdk_out} does not exist: run `make synth` first")
    templates = {}
    for path in sorted(Path(cdk_out).glob("*.template.json")):
        match = _STACK.match(path.name)
        if match:
            templates[(match["env"], match["component"])] = json.loads(path.read_text())
    if not templates:
        raise InvalidInput("cdk_out", f"no saas-<env>-<component>.template.json in {cdk_out}: run `make synth` first")
    return templates


def environment_budgets(envs: Iterable[str]) -> dict[str, Decimal]:
    """Each environment's monthly platform budget from its typed config."""
    from stacks.config import load_config
    return {env: Decimal(str(load_config(env).limits.monthly_budget_usd)) for env in envs}


def over_budget(result: Estimate, budgets: Mapping[str, Decimal],
                approved: tuple[Decimal, Decimal] = APPROVED_BUDGET_USD) -> list[str]:
    """Why the estimate does not fit: the total over the approved maximum, an env over its budget."""
    problems = [f"{env}: ${result.total(env):,.2f} is over its monthly budget of ${budget:,.2f}"
                for env, budget in budgets.items() if result.total(env) > budget]
    if result.total() > approved[1]:
        problems.append(f"total ${result.total():,.2f} is over the approved ${approved[1]:,.0f} per month")
    return problems


# Price List API check: which file prices can be compared, and how to ask for each.
_PRICE_LIST = {
    ("ec2_instance_per_hour",): ("AmazonEC2", {"operatingSystem": "Linux", "tenancy": "Shared",
                                               "preInstalledSw": "NA", "capacitystatus": "Used"}),
    ("rds", "instance_per_hour"): ("AmazonRDS", {"databaseEngine": "PostgreSQL", "deploymentOption": "Single-AZ"}),
    ("elasticache", "node_per_hour"): ("AmazonElastiCache", {"cacheEngine": "Redis"}),
}


def _on_demand_usd(price_item: str) -> Decimal | None:
    terms = json.loads(price_item).get("terms", {}).get("OnDemand", {})
    for term in terms.values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if usd is not None and Decimal(usd) > 0:
                return Decimal(usd)
    return None


def check_prices(prices: PriceBook, pricing_client: Any) -> list[tuple[str, Decimal, Decimal | None]]:
    """(key, price in the file, Price List price) for every instance price in the file that differs
    by more than 1 % or that the Price List does not know (None)."""
    region = str(prices.data.get("region", "us-east-1"))
    differences = []
    for path, (service, fixed) in _PRICE_LIST.items():
        section: Any = prices.data
        for key in path:
            section = section[key]
        for instance, listed in section.items():
            if instance == "source":
                continue
            filters = [{"Type": "TERM_MATCH", "Field": field_, "Value": value}
                       for field_, value in {**fixed, "instanceType": instance, "regionCode": region}.items()]
            response = pricing_client.get_products(ServiceCode=service, Filters=filters, MaxResults=10)
            actual = next((p for p in map(_on_demand_usd, response.get("PriceList", [])) if p is not None), None)
            mine = _dec(listed, ".".join((*path, instance)))
            if actual is None or abs(actual - mine) > mine / 100:
                differences.append((".".join((*path, instance)), mine, actual))
    return differences


def write_prices(path: Path, differences: list[tuple[str, Decimal, Decimal | None]], as_of: str) -> int:
    """Put the Price List's figures into the price file in place (comments kept); returns how many."""
    text = Path(path).read_text()
    changed = 0
    for key, _, actual in differences:
        if actual is None:
            continue
        instance = key.split(".", 1)[1] if key.startswith("ec2_instance_per_hour.") else key.split(".", 2)[2]
        text, count = re.subn(rf"^(\s+{re.escape(instance)}:\s*)[0-9.]+", rf"\g<1>{actual.normalize():f}", text,
                              count=1, flags=re.M)
        changed += count
    if changed:
        text = re.sub(r'^as_of: ".*"', f'as_of: "{as_of}"', text, count=1, flags=re.M)
        Path(path).write_text(text)
    return changed


LAUNCH_TABLE_START = "<!-- launch cost: python -m tools.cost_estimate cdk.out --markdown -->"
LAUNCH_TABLE_END = "<!-- end of launch cost -->"


def launch_total(result: Estimate) -> str:
    """The launch cost as the README quotes it, e.g. "$1,387 / month for prod + dev"."""
    return f"${result.total():,.0f} / month for prod + dev"


def markdown(result: Estimate) -> str:
    """The launch-cost table of docs/cost.md (and the README's figure), between its markers: the
    docs quote the estimator, so they cannot disagree with `make cost`."""
    envs = result.environments
    rows = ["| | " + " | ".join(envs) + " | total |", "| --- |" + " ---: |" * (len(envs) + 1)]
    rows += [f"| {kind} | " + " | ".join(f"{result.total(env, kind):,.2f}" for env in envs)
             + f" | {result.total(kind=kind):,.2f} |" for kind in KINDS if result.total(kind=kind)]
    rows.append("| **total** | " + " | ".join(f"**{result.total(env):,.2f}**" for env in envs)
                + f" | **{result.total():,.2f}** |")
    assumed = sum((x.monthly_usd for x in result.lines if x.assumed), Decimal(0))
    return "\n".join([LAUNCH_TABLE_START, *rows, "",
                      f"Launch cost: **{launch_total(result)}**, of which ${assumed:,.0f} are usage assumptions.",
                      LAUNCH_TABLE_END])


def render(result: Estimate, budgets: Mapping[str, Decimal], prices: PriceBook, *, details: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:   # piped (make, CI logs): wide enough that rows do not wrap
        console = Console(width=120)
    envs = result.environments
    table = Table(title=f"Estimated monthly cost (USD, prices as of {prices.as_of}, {prices.hours} h/month)")
    table.add_column("Resource kind")
    for env in envs:
        table.add_column(env, justify="right")
    table.add_column("total", justify="right", style="bold")
    for kind in KINDS:
        if result.total(kind=kind):
            table.add_row(kind, *(f"{result.total(env, kind):,.2f}" for env in envs), f"{result.total(kind=kind):,.2f}")
    table.add_section()
    table.add_row("Total", *(f"{result.total(env):,.2f}" for env in envs), f"{result.total():,.2f}", style="bold")
    table.add_row("Monthly budget (stacks/config.py)", *(f"{budgets[env]:,.2f}" for env in envs),
                  f"{sum(budgets.values(), Decimal(0)):,.2f}")
    console.print(table)
    if details:
        lines = Table(title="Line items (* = usage assumption from config/prices.yaml)")
        for column in ("env", "kind", "item", "USD/month"):
            lines.add_column(column, justify="right" if column == "USD/month" else "left")
        grouped: dict[Line, int] = defaultdict(int)
        for line in result.lines:
            grouped[line] += 1
        for line, count in sorted(grouped.items(), key=lambda x: (x[0].env, KINDS.index(x[0].kind), -x[0].monthly_usd)):
            item = ("* " if line.assumed else "") + (f"{count} x " if count > 1 else "") + line.detail
            lines.add_row(line.env, line.kind, item, f"{count * line.monthly_usd:,.2f}")
        console.print(lines)
    low, high = APPROVED_BUDGET_USD
    console.print(f"Total ${result.total():,.2f}/month vs the approved ${low:,.0f}-${high:,.0f} (prod + dev); "
                  f"usage assumptions: ${sum((x.monthly_usd for x in result.lines if x.assumed), Decimal(0)):,.2f}")
    for env, component, kind in result.unpriced:
        console.print(f"[yellow]unpriced[/yellow]: {env}/{component} {kind} (no price in {prices.source.name})")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tools.cost_estimate", description=__doc__.split("\n\n")[0])
    parser.add_argument("cdk_out", nargs="?", default="cdk.out", type=Path)
    parser.add_argument("--prices", default=PRICES_FILE, type=Path)
    parser.add_argument("--details", action="store_true", help="print every line item")
    parser.add_argument("--markdown", action="store_true", help="print docs/cost.md's launch-cost block")
    parser.add_argument("--check-prices", action="store_true",
                        help="compare the file's instance prices with the AWS Price List API (needs credentials)")
    parser.add_argument("--write", action="store_true", help="with --check-prices: update the file's prices")
    args = parser.parse_args(argv)
    try:
        prices = PriceBook.load(args.prices)
        if args.check_prices:
            return _report_price_check(prices, write=args.write)
        result = estimate(load_templates(args.cdk_out), prices)
        if args.markdown:
            print(markdown(result))
            return 0
        budgets = environment_budgets(result.environments)
        render(result, budgets, prices, details=args.details)
    except PlatformError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return exc.exit_code
    problems = over_budget(result, budgets)
    for problem in problems:
        print(f"OVER BUDGET: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _report_price_check(prices: PriceBook, *, write: bool) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        differences = check_prices(prices, boto3.client("pricing", region_name="us-east-1"))
    except (BotoCoreError, ClientError) as exc:
        print(f"Price List API unavailable ({exc}); prices not checked", file=sys.stderr)
        return 2
    for key, mine, actual in differences:
        print(f"{key}: file {mine} vs Price List {actual if actual is not None else 'not found'}")
    print(f"{len(differences)} price(s) differ from the Price List" if differences else "prices match the Price List")
    if write and differences:
        from datetime import date
        print(f"updated {write_prices(prices.source, differences, date.today().isoformat())} price(s) in "
              f"{prices.source}; review the diff and the sources before committing")
        return 0
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
