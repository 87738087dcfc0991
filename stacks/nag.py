"""Static gates on every synth, and the one way to acknowledge a finding (cdk-nag) or skip a check (checkov).

cdk-nag 3 runs as a CDK policy-validation plugin: any unacknowledged AwsSolutions finding makes
``app.synth()`` fail. An acknowledgment is always scoped to ONE construct and ONE finding (rule id
plus, where the rule reports it, the finding detail such as ``[Resource::*]``) and must carry a
concrete reason, so a blanket or lazy suppression cannot be written through this module.
"""

from __future__ import annotations

import re

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

NAG_PLUGIN = "AwsSolutions"
_FINDING = re.compile(r"^(?:(?P<plugin>[A-Za-z-]+)::)?(?P<rule>[A-Za-z]+-[A-Za-z0-9]+|[EFW]\d{4})(?P<detail>\[.+\])?$")
_KNOWN_PLUGINS = {NAG_PLUGIN, "CloudFormation-Validate"}
MIN_REASON_LENGTH = 40
# Rules that report one finding per policy or resource ARN: acknowledging the bare rule id would
# cover every present and future wildcard/managed policy of the construct.
_NEEDS_DETAIL = {"AwsSolutions-IAM4", "AwsSolutions-IAM5"}
_VAGUE = re.compile(r"^\s*(n/?a|none|todo|tbd|ok|fine|not needed|false positive|suppress(ed)?|ignore(d)?)\W*$", re.I)


def register_gates(app: cdk.App) -> None:
    """Make AwsSolutions findings block synth (CDK's own validation is on through cdk.json)."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def finding_id(finding: str) -> str:
    """The fully qualified acknowledgment id (``Plugin::Rule[detail]``) of ``finding``."""
    match = _FINDING.match(finding)
    if match is None:
        raise ValueError(f"not a finding id: {finding!r} (expected e.g. 'AwsSolutions-IAM5[Resource::*]')")
    plugin = match["plugin"] or (NAG_PLUGIN if match["rule"].startswith(f"{NAG_PLUGIN}-") else None)
    if plugin not in _KNOWN_PLUGINS:
        raise ValueError(f"finding {finding!r} names no known plugin ({', '.join(sorted(_KNOWN_PLUGINS))})")
    if match["rule"] in _NEEDS_DETAIL and not match["detail"]:
        raise ValueError(f"{finding!r}: name the one policy or resource, e.g. '{match['rule']}[Resource::<arn>]'")
    return f"{plugin}::{match['rule']}{match['detail'] or ''}"


def partition_in_findings(scope: IConstruct) -> str:
    """How a finding id spells the partition of ``scope``'s stack: cdk-nag prints an unresolved
    ``AWS::Partition`` as ``<AWS::Partition>``, a known one (region given) literally."""
    partition = cdk.Stack.of(scope).partition
    return "<AWS::Partition>" if cdk.Token.is_unresolved(partition) else partition


def acknowledge(resource: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge exactly one finding on exactly one construct, with a reason a reviewer can check."""
    if isinstance(resource, (cdk.Stack, cdk.Stage)):
        raise ValueError(f"acknowledge {finding!r} on the construct that raises it, not on a whole stack or stage")
    _require_reason(finding, reason)
    cdk.Validations.of(resource).acknowledge(cdk.Acknowledgment(id=finding_id(finding), reason=reason.strip()))


def skip_checkov(resource: cdk.CfnResource, check_id: str, reason: str) -> None:
    """Skip one checkov check on one CloudFormation resource (``Metadata.checkov.skip``), with the
    same bar for the reason as :func:`acknowledge`."""
    if not re.fullmatch(r"CKV2?_AWS_\d+", check_id):
        raise ValueError(f"not a checkov AWS check id: {check_id!r}")
    _require_reason(check_id, reason)
    metadata = resource.cfn_options.metadata or {}
    skips = [*metadata.get("checkov", {}).get("skip", []), {"id": check_id, "comment": reason.strip()}]
    resource.cfn_options.metadata = {**metadata, "checkov": {"skip": skips}}


def _require_reason(finding: str, reason: str) -> None:
    if len(reason.strip()) < MIN_REASON_LENGTH or _VAGUE.match(reason):
        raise ValueError(f"acknowledgment of {finding!r} needs a concrete reason "
                         f"(at least {MIN_REASON_LENGTH} characters saying why it is safe), got {reason!r}")
