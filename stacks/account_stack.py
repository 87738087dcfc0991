"""Account-level singletons that every environment in one AWS account shares.

An AWS account holds ONE IAM OIDC provider per URL and ONE SES identity per address (per region).
When dev and prod each created theirs, putting both environments in one account failed with
"already exists". This stack owns them instead: ``saas-shared-account`` holds the GitHub OIDC
provider and an SES email identity for every distinct sender address of every configured
environment. It is the same template whichever environment is deployed, so it works unchanged
for both layouts:

- one account: deployed once, used by dev and prod;
- two accounts: deployed in each (an identity of the other environment's sender sits unverified
  and unused there; it costs nothing).

Environment stacks import what they need by its well-known name, never by a cross-stack export.
"""

from __future__ import annotations

from collections.abc import Iterable

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ses as ses
from constructs import Construct

from stacks.config import SHARED_SCOPE, EnvConfig

STACK_ID = f"saas-{SHARED_SCOPE}-account"
GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"


def sender_addresses(configs: Iterable[EnvConfig]) -> list[str]:
    """Every distinct SES sender address of ``configs``, in a stable order."""
    return sorted({address for config in configs
                   for address in (config.cost_report.sender, config.limits.notification_sender)})


def github_oidc_provider_arn(scope: Construct) -> str:
    """The account's GitHub OIDC provider (created by this stack), by its well-known ARN."""
    stack = cdk.Stack.of(scope)
    return f"arn:{stack.partition}:iam::{stack.account}:oidc-provider/{GITHUB_OIDC_HOST}"


def sender_identity(scope: Construct, construct_id: str, address: str) -> ses.IEmailIdentity:
    """The SES identity of ``address`` created by this stack, imported into an environment stack."""
    return ses.EmailIdentity.from_email_identity_name(scope, construct_id, address)


class SharedAccountStack(cdk.Stack):
    """GitHub OIDC provider and the SES sender identities of every environment."""

    def __init__(self, scope: Construct, construct_id: str, *, configs: list[EnvConfig], **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.oidc_provider = iam.OidcProviderNative(
            self, "GitHubOidc", url=GITHUB_OIDC_URL, client_ids=["sts.amazonaws.com"])
        self.senders = {address: ses.EmailIdentity(self, _identity_id(address), identity=ses.Identity.email(address))
                        for address in sender_addresses(configs)}


def _identity_id(address: str) -> str:
    """A stable construct id per address (``reports@example.com`` → ``SenderReportsAtExampleCom``)."""
    words = address.replace("@", " at ").replace(".", " ").replace("-", " ").replace("_", " ").replace("+", " ")
    return "Sender" + "".join(word.capitalize() for word in words.split())
