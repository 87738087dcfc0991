"""GitHub Actions → AWS through OIDC: least-privilege roles trusting the account's OIDC provider.

The roles do no deployment work themselves: they may only assume the CDK bootstrap roles of this
account and region, and CloudFormation's execution role does the rest (notes/cdk.md §6).
- deploy role: trusted only for jobs of the configured GitHub *environment* (``environment:
  production`` carries required reviewers), may assume the deploy, publishing and lookup roles;
- diff role: trusted only for pull-request jobs, may assume only the lookup role
  (``cdk diff --no-change-set``), so PR code can read but never change the account.

Deploy this stack once with administrator credentials; afterwards CI deploys everything else.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.account_stack import GITHUB_OIDC_HOST, github_oidc_provider_arn
from stacks.config import EnvConfig

DEPLOY_BOOTSTRAP_ROLES = ("deploy", "file-publishing", "image-publishing", "lookup")
DIFF_BOOTSTRAP_ROLES = ("lookup",)


class CicdStack(cdk.Stack):
    """The deploy / PR-diff roles of one environment, trusting the account's GitHub OIDC provider."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        cicd = config.cicd
        provider_arn = github_oidc_provider_arn(self)   # the account's one provider (stacks/account_stack.py)
        repo = cicd.github_repository
        self.deploy_role = self._role(
            "DeployRole", provider_arn, f"repo:{repo}:environment:{cicd.github_environment}",
            config, DEPLOY_BOOTSTRAP_ROLES,
            f"GitHub Actions deploys of {repo} (environment {cicd.github_environment}) via the CDK bootstrap roles")
        self.diff_role = self._role(
            "PullRequestDiffRole", provider_arn, f"repo:{repo}:pull_request", config, DIFF_BOOTSTRAP_ROLES,
            f"GitHub Actions pull-request diffs of {repo}: read-only CDK lookup role only")
        cdk.CfnOutput(self, "DeployRoleArn", value=self.deploy_role.role_arn,
                      description="role-to-assume for the deploy workflow")
        cdk.CfnOutput(self, "DiffRoleArn", value=self.diff_role.role_arn,
                      description="role-to-assume for pull-request diffs")

    def _role(self, construct_id: str, provider_arn: str, subject: str, config: EnvConfig,
              bootstrap_roles: tuple[str, ...], description: str) -> iam.Role:
        """A role only GitHub jobs with exactly ``subject`` can assume, allowed to assume only the
        named bootstrap roles (full ARNs, no wildcard)."""
        principal = iam.WebIdentityPrincipal(provider_arn, conditions={
            "StringEquals": {f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com", f"{GITHUB_OIDC_HOST}:sub": subject},
        })
        role = iam.Role(self, construct_id, assumed_by=principal, description=description,
                        max_session_duration=cdk.Duration.hours(1))
        qualifier = config.cicd.cdk_qualifier
        role.add_to_policy(iam.PolicyStatement(
            actions=["sts:AssumeRole", "sts:TagSession"],
            resources=[f"arn:{self.partition}:iam::{self.account}:role/"
                       f"cdk-{qualifier}-{name}-role-{self.account}-{self.region}" for name in bootstrap_roles]))
        return role
