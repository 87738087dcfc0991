"""Release steps that run against a deployed environment (.github/workflows/release-environment.yml).

``python -m tools.release migrate --env dev``: the control-schema ``init`` and then the tenant fleet
``migrate`` through the **operator** function (``tenant_operations`` in ``saas-<env>-tenants``,
logical id ``TenantOperations…``; never the signup/provisioning function, which refuses operator actions).
The release fails when the invocation errors, is rejected, or any tenant failed to migrate.

``python -m tools.release smoke --url https://api.example.com``: ``GET <url>/readyz`` through the
ingress until it answers 200 (new pods, ALB registration and DNS take a few minutes), else fail.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

OPERATOR_LOGICAL_ID_PREFIX = "TenantOperations"   # stacks/tenants_stack.py: PythonFunction "TenantOperations"
FUNCTION_TYPE = "AWS::Lambda::Function"


class ReleaseError(RuntimeError):
    """A release step failed; the message says which and why."""


def operator_function(cloudformation, environment: str) -> str:
    """The physical name of the operator function in ``saas-<env>-tenants``."""
    stack = f"saas-{environment}-tenants"
    resources = cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
    names = [r["PhysicalResourceId"] for r in resources
             if r["ResourceType"] == FUNCTION_TYPE and r["LogicalResourceId"].startswith(OPERATOR_LOGICAL_ID_PREFIX)]
    if len(names) != 1:
        raise ReleaseError(f"{stack} has {len(names)} operator functions (logical id {OPERATOR_LOGICAL_ID_PREFIX}…), "
                           "expected one: deploy the tenants stack first")
    return names[0]


def invoke(lambda_client, function: str, event: dict) -> dict:
    """Invoke synchronously; raise on a function error or a structured rejection."""
    response = lambda_client.invoke(FunctionName=function, InvocationType="RequestResponse",
                                    Payload=json.dumps(event).encode())
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        raise ReleaseError(f"{event['action']} failed in {function}: {payload}")
    if not isinstance(payload, dict) or payload.get("status") == "rejected":
        raise ReleaseError(f"{event['action']} was rejected by {function}: {payload}")
    return payload


def migrate(*, cloudformation, lambda_client, environment: str, concurrency: int = 4) -> dict:
    """``init`` (roles, hardening, control schema), then every tenant schema to the latest migration."""
    function = operator_function(cloudformation, environment)
    initialised = invoke(lambda_client, function, {"action": "init"})
    migrated = invoke(lambda_client, function, {"action": "migrate", "concurrency": concurrency})
    if migrated.get("failed"):
        raise ReleaseError(f"{len(migrated['failed'])} tenant migration(s) failed: {migrated['failed']} "
                           "(docs/runbooks/fleet-migrations.md)")
    return {"function": function, "init": initialised, "migrate": migrated}


def smoke(url: str, *, timeout_seconds: float = 600, interval_seconds: float = 10,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> str:
    """Poll ``<url>/readyz`` until it answers 200; return its body, else raise with the last answer."""
    target = url.rstrip("/") + "/readyz"
    deadline = clock() + timeout_seconds
    last = "no answer"
    while True:
        try:
            with urllib.request.urlopen(target, timeout=10) as response:   # noqa: S310 - https URL from config
                body = response.read().decode(errors="replace")
                if response.status == 200:
                    return body
                last = f"HTTP {response.status}: {body[:200]}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}: {error.read().decode(errors='replace')[:200]}"
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        if clock() >= deadline:
            raise ReleaseError(f"{target} did not answer 200 within {timeout_seconds:.0f} s; last: {last}")
        sleep(interval_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.release", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    migrate_parser = commands.add_parser("migrate", help="init + tenant migrations through the operator function")
    migrate_parser.add_argument("--env", required=True)
    migrate_parser.add_argument("--concurrency", type=int, default=4)
    smoke_parser = commands.add_parser("smoke", help="GET <url>/readyz until 200")
    smoke_parser.add_argument("--url", required=True)
    smoke_parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    try:
        if args.command == "migrate":
            import boto3   # only migrate needs AWS; the smoke test runs without the project's packages
            result = migrate(cloudformation=boto3.client("cloudformation"), lambda_client=boto3.client("lambda"),
                             environment=args.env, concurrency=args.concurrency)
            print(json.dumps(result, default=str))
        else:
            print(smoke(args.url, timeout_seconds=args.timeout))
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
