"""GitHub Actions → AWS through OIDC: least-privilege roles trusting the account's OIDC provider.

The roles do no deployment work themselves: they may only assume the CDK bootstrap roles of this
account and region, and CloudFormation's execution role does the rest (notes/cdk.md §6).
- deploy role: trusted only for jobs of the configured GitHub *environment* (``environment:
  production`` carries required reviewers), may assume the deploy, publishing and lookup roles;
- diff role: trusted only for pull-request jobs, may assume only the lookup role
  (``cdk diff --no-change-set``), so PR code can read but never change the account;
- drift role: trusted only for jobs of ``main`` outside any GitHub environment (the scheduled drift
  workflow), may assume only the lookup role (``cdk drift``) and read the cluster.

Deploy this stack once with administrator credentials; afterwards CI deploys everything else.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.account_stack import GITHUB_OIDC_HOST, github_oidc_provider_arn
from stacks.config import EnvConfig
from stacks.constructs.outputs import parameter_name
from stacks.nag import acknowledge
from stacks.registry_stack import PULL_ACTIONS

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
        # Same trust as the deploy role; it deploys no stack. It releases the services: kubectl through
        # the SSM tunnel (access entry and tunnel policy: stacks/access_stack.py), image pushes and
        # the operator function's migrations (granted where those resources are defined).
        self.release_role = self._role(
            "ReleaseRole", provider_arn, f"repo:{repo}:environment:{cicd.github_environment}", config, (),
            f"GitHub Actions releases of {repo} (environment {cicd.github_environment}): images, migrations, manifests")
        self._allow_release_steps(config)
        # The scheduled drift check (.github/workflows/drift.yml) runs on main without a GitHub
        # environment: a schedule cannot wait for production's reviewers, so it gets no role that
        # writes. The lookup role (ReadOnlyAccess, kms:Decrypt denied) is enough for `cdk drift`; its
        # cluster access is view-only (stacks/access_stack.py).
        self.drift_role = self._role(
            "DriftRole", provider_arn, f"repo:{repo}:ref:refs/heads/main", config, DIFF_BOOTSTRAP_ROLES,
            f"GitHub Actions drift checks of {repo} (main, scheduled): read-only CDK lookup role, cluster view")
        cdk.CfnOutput(self, "DeployRoleArn", value=self.deploy_role.role_arn,
                      description="role-to-assume for the deploy workflow")
        cdk.CfnOutput(self, "DiffRoleArn", value=self.diff_role.role_arn,
                      description="role-to-assume for pull-request diffs")
        cdk.CfnOutput(self, "DriftRoleArn", value=self.drift_role.role_arn,
                      description="role-to-assume for the scheduled drift checks (GitHub variable AWS_DRIFT_ROLE_ARN_<env>)")
        cdk.CfnOutput(self, "ReleaseRoleArn", value=self.release_role.role_arn,
                      description="role-to-assume for the release steps (GitHub variable AWS_RELEASE_ROLE_ARN)")

    def _role(self, construct_id: str, provider_arn: str, subject: str, config: EnvConfig,
              bootstrap_roles: tuple[str, ...], description: str) -> iam.Role:
        """A role only GitHub jobs with exactly ``subject`` can assume, allowed to assume only the
        named bootstrap roles (full ARNs, no wildcard; none when empty)."""
        principal = iam.WebIdentityPrincipal(provider_arn, conditions={
            "StringEquals": {f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com", f"{GITHUB_OIDC_HOST}:sub": subject},
        })
        role = iam.Role(self, construct_id, assumed_by=principal, description=description,
                        max_session_duration=cdk.Duration.hours(1))
        qualifier = config.cicd.cdk_qualifier
        if bootstrap_roles:
            role.add_to_policy(iam.PolicyStatement(
                actions=["sts:AssumeRole", "sts:TagSession"],
                resources=[f"arn:{self.partition}:iam::{self.account}:role/"
                           f"cdk-{qualifier}-{name}-role-{self.account}-{self.region}" for name in bootstrap_roles]))
        return role

    def _allow_release_steps(self, config: EnvConfig) -> None:
        """What the release steps need besides the cluster (docs/release.md), named by the stacks'
        naming conventions so this stack, deployed first, references no other stack."""
        env, partition, region, account = config.name, self.partition, self.region, self.account
        repositories = f"arn:{partition}:ecr:{region}:{account}:repository/saas-{env}/*"
        operator = f"arn:{partition}:lambda:{region}:{account}:function:saas-{env}-tenants-TenantOperations*"
        parameters = f"arn:{partition}:ssm:{region}:{account}:parameter{parameter_name(env, '*')}"
        role = self.release_role
        role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        role.add_to_policy(iam.PolicyStatement(actions=[
            "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
            "ecr:DescribeImages", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
            "ecr:PutImage"], resources=[repositories]))
        self._allow_promotion_source(config)
        role.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[operator]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["cloudformation:DescribeStackResources"],
            resources=[f"arn:{partition}:cloudformation:{region}:{account}:stack/saas-{env}-tenants/*"]))
        role.add_to_policy(iam.PolicyStatement(actions=["ssm:GetParameter", "ssm:GetParameters"],
                                               resources=[parameters]))
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                    "ecr:GetAuthorizationToken has no resource-level permission; pushes are limited to the "
                    "environment's own repositories by the next statement.")
        acknowledge(role, f"AwsSolutions-IAM5[Resource::{repositories}]",
                    f"One repository per service under saas-{env}/ (stacks/registry_stack.py), this environment's "
                    "only: services are added without a policy change.")
        acknowledge(role, f"AwsSolutions-IAM5[Resource::{operator}]",
                    "The operator function's name is generated by CloudFormation from the tenants stack and its "
                    "logical id (TenantOperations...); the prefix names exactly that one function.")
        acknowledge(role, f"AwsSolutions-IAM5[Resource::arn:{partition}:cloudformation:{region}:{account}:"
                          f"stack/saas-{env}-tenants/*]",
                    "A stack ARN ends in a generated id; the release reads this one stack's resources to find the "
                    "operator function.")
        acknowledge(role, f"AwsSolutions-IAM5[Resource::{parameters}]",
                    "The manifests are rendered from every non-secret value the stacks publish under this "
                    "environment's /saas/<env>/platform/ prefix; nothing else lives there.")

    def _allow_promotion_source(self, config: EnvConfig) -> None:
        """The release role may pull, never push, the source environment's images, in this account or
        another (whose repository policy must allow this role too: its ``cicd.image_pull_role_arns``)."""
        cicd = config.cicd
        if cicd.promote_from is None:
            return
        source = (f"arn:{self.partition}:ecr:{self.region}:{cicd.promote_from_account or self.account}:"
                  f"repository/saas-{cicd.promote_from}/*")
        self.release_role.add_to_policy(iam.PolicyStatement(actions=list(PULL_ACTIONS), resources=[source]))
        acknowledge(self.release_role, f"AwsSolutions-IAM5[Resource::{source}]",
                    f"One repository per service under saas-{cicd.promote_from}/, pull actions only: the promotion "
                    "copies its scanned images by digest.")
