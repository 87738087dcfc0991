"""A Python Lambda function bundled on the host with pip: no Docker, deterministic asset hash.

Every function's bundle has the same shape, so handlers import exactly as they do locally:
``lambdas/<name>/`` (plus ``lambdas/common`` when present) and the ``tenant_provisioner`` package
with ``config/tiers.yaml`` copied into it. ``lambdas/requirements.txt``, installed for the Lambda
platform (manylinux arm64 wheels only), is one layer per stack shared by all its functions. CDK unit tests skip bundling with the context
``aws:cdk:bundling-stacks: []``; the asset hash is computed from the sources either way.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.nag import acknowledge, skip_checkov

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = REPO_ROOT / "lambdas"
LIBRARY_DIR = REPO_ROOT / "tenant_provisioner"
TIERS_FILE = REPO_ROOT / "config" / "tiers.yaml"
REQUIREMENTS = LAMBDAS_DIR / "requirements.txt"
DEPENDENCY_CACHE = REPO_ROOT / "build" / "lambda-dependencies"   # git-ignored (/build/)
RUNTIME = lambda_.Runtime.PYTHON_3_14   # latest (cdk-nag L1); every pinned wheel exists for cp314 arm64
# Actions that accept no resource-level permission: X-Ray trace upload, and the network-interface
# calls Lambda makes for a function in a VPC (the same set as AWSLambdaVPCAccessExecutionRole).
TRACING_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
VPC_ACTIONS = ("ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
               "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", ".pytest_cache")
# Bytecode pip compiled with the host's interpreter (e.g. cpython-311) is never loaded by the Lambda
# runtime's Python; it only makes the layer bigger (19 MB of 61 MB).
_BYTECODE = shutil.ignore_patterns("__pycache__", "*.pyc")


def _source_paths(function_dir: Path) -> list[Path]:
    common = LAMBDAS_DIR / "common"
    paths = [LAMBDAS_DIR / "__init__.py", function_dir, LIBRARY_DIR, TIERS_FILE]
    return paths + ([common] if common.exists() else [])


def source_hash(function_dir: Path) -> str:
    """Hash of every file that goes into the bundle (not of pip's output, which varies)."""
    digest = hashlib.sha256()
    for root in _source_paths(function_dir):
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64")
# Wheels only (a missing arm64 wheel fails the build); no bytecode compiled by the host's Python.
PIP_FLAGS = ("--only-binary=:all:", "--no-compile")
PYTHON_VERSION = RUNTIME.name.removeprefix("python")
LAYER_ID = "PythonDependencies"


def dependencies_hash() -> str:
    """What the dependency layer's content depends on: the requirements, Python version, platforms, pip flags."""
    return hashlib.sha256("\n".join([REQUIREMENTS.read_text(), PYTHON_VERSION, *PLATFORMS, *PIP_FLAGS]).encode()
                          ).hexdigest()


def installed_dependencies() -> Path:
    """``lambdas/requirements.txt`` installed with the host's pip for the Lambda platform (manylinux
    arm64 wheels only), once per :func:`dependencies_hash`; later synths reuse it. Built in a
    temporary directory and renamed into place, so an interrupted install is never reused."""
    target = DEPENDENCY_CACHE / dependencies_hash()[:20]
    if target.is_dir():
        return target
    DEPENDENCY_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DEPENDENCY_CACHE) as staging:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--target", staging, "-r", str(REQUIREMENTS), "--implementation", "cp",
               "--python-version", PYTHON_VERSION, *PIP_FLAGS]
        for platform in PLATFORMS:
            cmd += ["--platform", platform]
        subprocess.run(cmd, check=True)
        try:
            Path(staging).rename(target)
        except OSError:
            if not target.is_dir():  # lost a race to an identical install: use the winner's
                raise
    return target


@jsii.implements(cdk.ILocalBundling)
class _LayerBundler:
    """The dependency layer: installed packages under ``python/`` (on the runtime's sys.path)."""

    def try_bundle(self, output_dir: str, options: cdk.BundlingOptions) -> bool:  # noqa: ARG002
        shutil.copytree(installed_dependencies(), Path(output_dir) / "python", ignore=_BYTECODE, dirs_exist_ok=True)
        return True


@jsii.implements(cdk.ILocalBundling)
class _CodeBundler:
    """A function's own code: its directory (and ``lambdas/common``) plus the domain library."""

    def __init__(self, function_dir: Path) -> None:
        self._function_dir = function_dir

    def try_bundle(self, output_dir: str, options: cdk.BundlingOptions) -> bool:  # noqa: ARG002
        out = Path(output_dir)
        shutil.copytree(LIBRARY_DIR, out / "tenant_provisioner", ignore=_IGNORED, dirs_exist_ok=True)
        shutil.copy2(TIERS_FILE, out / "tenant_provisioner" / "tiers.yaml")
        (out / "lambdas").mkdir(exist_ok=True)
        shutil.copy2(LAMBDAS_DIR / "__init__.py", out / "lambdas" / "__init__.py")
        for src in _source_paths(self._function_dir):
            if src.is_dir() and src.parent == LAMBDAS_DIR:
                shutil.copytree(src, out / "lambdas" / src.name, ignore=_IGNORED, dirs_exist_ok=True)
        return True


def _bundled(path: Path, asset_hash: str, bundler: object) -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(path), asset_hash_type=cdk.AssetHashType.CUSTOM, asset_hash=asset_hash,
        bundling=cdk.BundlingOptions(image=RUNTIME.bundling_image,  # never pulled: local bundling succeeds
                                     local=bundler))


def dependencies_layer(scope: Construct) -> lambda_.LayerVersion:
    """The stack's one layer with the pinned dependencies, shared by all its functions: the
    70 MB of wheels are staged and uploaded once instead of once per function."""
    stack = cdk.Stack.of(scope)
    existing = stack.node.try_find_child(LAYER_ID)
    if isinstance(existing, lambda_.LayerVersion):
        return existing
    return lambda_.LayerVersion(
        stack, LAYER_ID, code=_bundled(REQUIREMENTS.parent, dependencies_hash(), _LayerBundler()),
        compatible_runtimes=[RUNTIME], compatible_architectures=[lambda_.Architecture.ARM_64],
        description="Pinned Python dependencies of the platform's functions (lambdas/requirements.txt)")


@dataclass(frozen=True, kw_only=True)
class LambdaNetwork:
    """Where a function runs when it must reach private resources (RDS, Redis)."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_groups: Sequence[ec2.ISecurityGroup] = field(default_factory=tuple)


class PythonFunction(Construct):
    """One Lambda function from ``lambdas/<name>``: arm64, pip-bundled, own log group and role.

    The role starts with only the right to write its own log group (and, inside a VPC, to manage
    its network interfaces); callers add exactly the grants the function needs.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        description: str,
        environment: Mapping[str, str] | None = None,
        timeout: cdk.Duration = cdk.Duration.seconds(30),
        memory_size: int = 512,
        network: LambdaNetwork | None = None,
        log_key: kms.IKey | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        reserved_concurrency: int | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        function_dir = LAMBDAS_DIR / name
        if not (function_dir / "handler.py").is_file():
            raise ValueError(f"lambdas/{name}/handler.py does not exist")
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, encryption_key=log_key,
                                       removal_policy=cdk.RemovalPolicy.DESTROY)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description=f"Execution role of the {name} function")
        self.log_group.grant_write(self.role)
        code = _bundled(function_dir, source_hash(function_dir), _CodeBundler(function_dir))
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=f"lambdas.{name}.handler.handler",
            code=code,
            layers=[dependencies_layer(self)],
            description=description,
            environment={"POWERTOOLS_SERVICE_NAME": name, **(environment or {})},
            timeout=timeout,
            memory_size=memory_size,
            role=self.role,
            log_group=self.log_group,
            vpc=network.vpc if network else None,
            vpc_subnets=network.subnets if network else None,
            security_groups=list(network.security_groups) if network else None,
            reserved_concurrent_executions=reserved_concurrency,
            dead_letter_queue=dead_letter_queue,
        )
        self._grant_runtime_actions(in_vpc=network is not None)

    def _grant_runtime_actions(self, *, in_vpc: bool) -> None:
        """Active tracing (and VPC networking) through a policy of their own, so the one wildcard
        acknowledgment covers exactly these actions and the role's default policy stays checked."""
        actions = [*TRACING_ACTIONS, *(VPC_ACTIONS if in_vpc else ())]
        policy = iam.Policy(self, "RuntimePolicy", roles=[self.role], statements=[
            iam.PolicyStatement(actions=actions, resources=["*"])])
        cfn_function: lambda_.CfnFunction = self.function.node.default_child  # type: ignore[assignment]
        cfn_function.tracing_config = lambda_.CfnFunction.TracingConfigProperty(mode="Active")
        self.function.node.add_dependency(policy)  # ENIs are created while the function is created
        why = ("X-Ray PutTraceSegments/PutTelemetryRecords and Lambda's VPC network-interface actions "
               "accept no resource-level permissions; this policy holds only those actions.")
        acknowledge(policy, "AwsSolutions-IAM5[Resource::*]", why)
        skip_checkov(policy.node.default_child, "CKV_AWS_111", why)
        skip_checkov(cfn_function, "CKV_AWS_173",
                     "The environment holds only non-secret settings (names, ARNs, URLs), encrypted at rest by "
                     "Lambda; secrets are read from Secrets Manager at runtime, never put in variables.")
