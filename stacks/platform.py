"""Composition root: every stack of one environment, wired together in dependency order.

Foundation stacks (security → network → data → cluster) come first; each control-plane stack is
ONE line in the marked section below and receives ``config=config`` plus the stacks it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from constructs import Construct

from stacks.access_stack import AccessStack
from stacks.account_stack import STACK_ID as SHARED_ACCOUNT_STACK_ID
from stacks.account_stack import SharedAccountStack
from stacks.billing_stack import BillingStack
from stacks.cicd_stack import CicdStack
from stacks.cluster_stack import ClusterStack
from stacks.config import EnvConfig
from stacks.cost_report_stack import CostReportStack
from stacks.data_stack import DataStack
from stacks.dr_stack import DrStack
from stacks.edge_stack import EdgeStack
from stacks.limits_stack import LimitsStack
from stacks.network_stack import NetworkStack
from stacks.observability_stack import ObservabilityStack
from stacks.registry_stack import RegistryStack
from stacks.security_stack import SecurityStack
from stacks.tenants_stack import TenantsStack


@dataclass(frozen=True)
class Platform:
    """The foundation stacks of one environment, as later stacks and tests consume them."""

    network: NetworkStack
    security: SecurityStack
    data: DataStack
    cluster: ClusterStack
    cicd: CicdStack
    access: AccessStack


def build_shared_account(scope: Construct, configs: list[EnvConfig]) -> SharedAccountStack:
    """The account-level singletons (OIDC provider, SES identities) for every environment in ``configs``,
    which must all target one account and region."""
    targets = {(config.account, config.region) for config in configs}
    if len(targets) != 1:
        raise ValueError(f"the shared-account stack serves one account and region, got {sorted(targets)}")
    ((account, region),) = targets
    stack = SharedAccountStack(scope, SHARED_ACCOUNT_STACK_ID, configs=configs,
                               env=cdk.Environment(account=account, region=region))
    cdk.Tags.of(stack).add("platform", "saas")
    return stack


def build_platform(scope: Construct, config: EnvConfig, *, shared: SharedAccountStack) -> Platform:
    """Instantiate every stack of ``config``'s environment under ``scope`` (an App or Stage)."""
    env = cdk.Environment(account=config.account, region=config.region)
    security = SecurityStack(scope, config.stack_id("security"), config=config, env=env)
    network = NetworkStack(scope, config.stack_id("network"), config=config, security=security, env=env)
    data = DataStack(scope, config.stack_id("data"), config=config, network=network, security=security, env=env)
    cluster = ClusterStack(scope, config.stack_id("cluster"), config=config, network=network, security=security,
                           data=data, env=env)
    cicd = CicdStack(scope, config.stack_id("cicd"), config=config, env=env)
    cicd.add_stack_dependency(shared)
    access = AccessStack(scope, config.stack_id("access"), config=config, network=network, data=data,
                         cluster=cluster, cicd=cicd, env=env)

    # control-plane stacks (one line each: Stack(scope, config.stack_id("<component>"), config=config, ..., env=env))
    billing = BillingStack(scope, config.stack_id("billing"), config=config, security=security, data=data, env=env)
    TenantsStack(scope, config.stack_id("tenants"), config=config, security=security, data=data, billing=billing, env=env)
    CostReportStack(scope, config.stack_id("cost-report"), config=config, security=security, data=data, env=env).add_stack_dependency(shared)
    LimitsStack(scope, config.stack_id("limits"), config=config, security=security, data=data, billing=billing, env=env).add_stack_dependency(shared)
    EdgeStack(scope, config.stack_id("edge"), config=config, security=security, env=env)
    DrStack(scope, config.stack_id("dr"), config=config, security=security, data=data, env=env)
    RegistryStack(scope, config.stack_id("registry"), config=config, security=security, env=env)
    ObservabilityStack(scope, config.stack_id("observability"), config=config, security=security, data=data, cluster=cluster, env=env)  # last: watches the stacks above

    _tag_environment(scope, config)
    return Platform(network=network, security=security, data=data, cluster=cluster, cicd=cicd, access=access)


def _tag_environment(scope: Construct, config: EnvConfig) -> None:
    """Tag every stack of this environment (cost allocation and ownership), not the other env's."""
    prefix = config.stack_id("")
    for child in scope.node.children:
        if isinstance(child, cdk.Stack) and child.node.id.startswith(prefix):
            for key, value in (("platform", "saas"), *config.tags):
                cdk.Tags.of(child).add(key, value)
