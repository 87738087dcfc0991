"""ECR repositories of the service images (API and worker), one set per environment.

Tags are immutable, so a tag names one image forever and a release can be traced back to its
commit; manifests still reference images by digest (k8s/). Every push is scanned; untagged
layers expire and only the newest releases are kept, so storage stays a few dollars a month.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ecr as ecr
from constructs import Construct

from stacks.config import EnvConfig
from stacks.constructs.outputs import publish
from stacks.security_stack import SecurityStack

SERVICES = ("api", "worker")


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
            self.repositories[service] = repository
            publish(self, config.name, f"{service}-repository-uri", repository.repository_uri,
                    f"ECR repository of the {service} image (push by digest; tags are immutable)")
