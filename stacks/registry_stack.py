"""ECR repositories of the service images (API and worker), one set per environment.

Tags are immutable, so a tag names one image forever and a release can be traced back to its
commit; manifests still reference images by digest (k8s/). Every push is scanned; untagged
layers expire and only the newest releases are kept, so storage stays a few dollars a month.

Two accounts (docs/release.md): the release roles named in ``cicd.image_pull_role_arns`` (prod's, on
dev) may pull by digest through the repository policy, nothing else: the principal is each role's
account, narrowed by ``aws:PrincipalArn`` to exactly those roles.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.config import EnvConfig
from stacks.constructs.outputs import publish
from stacks.security_stack import SecurityStack

SERVICES = ("api", "worker")
# What `docker buildx imagetools create` needs to read an image by digest from another registry.
PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


class RegistryStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, security: SecurityStack,
                 **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        workloads = config.workloads
        self.repositories: dict[str, ecr.Repository] = {}
        for service in SERVICES:
            repository = ecr.Repository(
                self, f"{service.capitalize()}Repository",
                repository_name=config.image_repository(service),
                image_tag_mutability=ecr.TagMutability.IMMUTABLE,
                image_scan_on_push=True,
                encryption=ecr.RepositoryEncryption.KMS, encryption_key=security.images_key,
                lifecycle_rules=[
                    ecr.LifecycleRule(rule_priority=1, tag_status=ecr.TagStatus.UNTAGGED,
                                      max_image_age=cdk.Duration.days(workloads.untagged_image_days),
                                      description="layers of superseded multi-arch builds"),
                    ecr.LifecycleRule(rule_priority=2, tag_status=ecr.TagStatus.ANY,
                                      max_image_count=workloads.kept_release_images,
                                      description="the newest releases, enough to roll back"),
                ],
                # The images are the release history (and a non-empty repository cannot be deleted
                # without a custom-resource Lambda): the repository outlives the stack.
                removal_policy=cdk.RemovalPolicy.RETAIN,
            )
            self._allow_pull(repository, config)
            self.repositories[service] = repository
            publish(self, config.name, f"{service}-repository-uri", repository.repository_uri,
                    f"ECR repository of the {service} image (push by digest; tags are immutable)")

    @staticmethod
    def _allow_pull(repository: ecr.Repository, config: EnvConfig) -> None:
        """The other account's release roles may pull (the promotion's copy by digest), never push.
        Account principals plus an ``aws:PrincipalArn`` condition, not the role ARNs as principals:
        ECR refuses a policy naming a role that does not exist yet (the other account may be set up
        later), and a recreated role would silently drop out of a policy holding its old unique id."""
        roles = config.cicd.image_pull_role_arns
        if not roles:
            return
        repository.add_to_resource_policy(iam.PolicyStatement(
            sid="PullByOtherAccountRelease",
            principals=[iam.AccountPrincipal(account) for account in config.cicd.image_pull_accounts()],
            actions=list(PULL_ACTIONS),
            conditions={"ArnEquals": {"aws:PrincipalArn": list(roles)}}))
