"""kubectl to the private EKS endpoint through the SSM tunnel (docs/runbooks/cluster-access.md).

``python -m tools.cluster_access --env prod`` (``make cluster-tunnel ENV=prod``):

1. reads the tunnel instance and the cluster name from SSM Parameter Store
   (``/saas/<env>/platform/{tunnel-instance-id,cluster-name}``, published by the access and
   cluster stacks) and the endpoint and CA from ``eks:DescribeCluster``;
2. writes a kubeconfig (default ``~/.kube/saas-<env>``) whose server is ``https://127.0.0.1:<port>``,
   checked against the real endpoint's certificate name (``tls-server-name``), authenticating as
   the caller's own IAM role (``aws eks get-token``): the audit log names the person;
3. runs the Session Manager port-forwarding session (``aws ssm start-session``, needs the
   session-manager-plugin) until Ctrl-C. ``--no-tunnel`` only writes the kubeconfig and prints the
   command; ``--background`` (the release and drift workflows) starts it detached, logging to
   ``<kubeconfig>.tunnel.log``, and returns once kubectl answers through it.

The caller's role needs the ``cluster-access-policy-arn`` managed policy and an access entry.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import boto3
import yaml

from stacks.constructs.outputs import parameter_name

PORT_FORWARDING_DOCUMENT = "AWS-StartPortForwardingSessionToRemoteHost"
DEFAULT_LOCAL_PORT = 8443
READY_TIMEOUT_SECONDS = 120


class ClusterAccessError(RuntimeError):
    """The tunnel or the cluster could not be found; the message says what to deploy or grant."""


@dataclass(frozen=True)
class Tunnel:
    environment: str
    region: str
    cluster_name: str
    endpoint_host: str
    certificate_authority: str
    instance_id: str
    local_port: int

    def kubeconfig(self) -> dict:
        """A kubeconfig reaching the cluster through the local end of the tunnel, as the caller's IAM role."""
        name = f"saas-{self.environment}"
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
            "clusters": [{"name": name, "cluster": {
                "server": f"https://127.0.0.1:{self.local_port}",
                "tls-server-name": self.endpoint_host,
                "certificate-authority-data": self.certificate_authority}}],
            "users": [{"name": name, "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
                "args": ["eks", "get-token", "--cluster-name", self.cluster_name, "--region", self.region],
                "interactiveMode": "Never"}}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "app"}}],
        }

    def session_command(self) -> list[str]:
        """The Session Manager port-forwarding session that carries kubectl's traffic."""
        return ["aws", "ssm", "start-session", "--region", self.region, "--target", self.instance_id,
                "--document-name", PORT_FORWARDING_DOCUMENT, "--parameters",
                f"host={self.endpoint_host},portNumber=443,localPortNumber={self.local_port}"]


def find_tunnel(environment: str, *, ssm, eks, region: str, local_port: int = DEFAULT_LOCAL_PORT) -> Tunnel:
    """Look up the tunnel instance and the cluster of ``environment`` with the given clients."""
    values = {}
    for key in ("tunnel-instance-id", "cluster-name"):
        name = parameter_name(environment, key)
        try:
            values[key] = ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            raise ClusterAccessError(f"SSM parameter {name} does not exist: deploy saas-{environment}-cluster and "
                                     f"saas-{environment}-access first") from None
    cluster = eks.describe_cluster(name=values["cluster-name"])["cluster"]
    return Tunnel(environment=environment, region=region, cluster_name=values["cluster-name"],
                  endpoint_host=urlparse(cluster["endpoint"]).netloc,
                  certificate_authority=cluster["certificateAuthority"]["data"],
                  instance_id=values["tunnel-instance-id"], local_port=local_port)


def write_kubeconfig(tunnel: Tunnel, path: Path) -> None:
    """Write the kubeconfig readable by its owner only (it names the cluster and the caller's role)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        yaml.safe_dump(tunnel.kubeconfig(), handle, sort_keys=False)


def kubectl_answers(kubeconfig: Path) -> bool:
    """Does the API server answer kubectl through the tunnel (as the caller's role)?"""
    result = subprocess.run(["kubectl", "version", "--request-timeout=5s"], capture_output=True, timeout=30,
                            env={**os.environ, "KUBECONFIG": str(kubeconfig)})
    return result.returncode == 0


def open_in_background(tunnel: Tunnel, *, kubeconfig: Path, ready: Callable[[], bool],
                       timeout_seconds: float = READY_TIMEOUT_SECONDS, interval_seconds: float = 2,
                       clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                       popen: Callable[..., subprocess.Popen] = subprocess.Popen) -> subprocess.Popen:
    """Start the session detached (it outlives this process, e.g. across a workflow's steps) and wait
    until ``ready()``; on a timeout or an early exit, stop it and raise with its log."""
    log = kubeconfig.with_name(kubeconfig.name + ".tunnel.log")
    with log.open("w") as handle:
        process = popen(tunnel.session_command(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = clock() + timeout_seconds
    while not ready():
        if process.poll() is not None or clock() >= deadline:
            if process.poll() is None:
                process.terminate()
            raise ClusterAccessError(f"the tunnel did not come up within {timeout_seconds:.0f} s "
                                     f"(exit {process.poll()}): {log.read_text().strip()[-2000:]}")
        sleep(interval_seconds)
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cluster_access", description=__doc__.split("\n")[0])
    parser.add_argument("--env", required=True, help="environment name (dev, prod)")
    parser.add_argument("--region", default=None, help="AWS region (default: the AWS CLI's)")
    parser.add_argument("--port", type=int, default=DEFAULT_LOCAL_PORT, help="local port of the tunnel")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="default ~/.kube/saas-<env>")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-tunnel", action="store_true", help="write the kubeconfig and print the command only")
    mode.add_argument("--background", action="store_true",
                      help="start the tunnel detached and return once kubectl answers through it")
    args = parser.parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    try:
        tunnel = find_tunnel(args.env, ssm=session.client("ssm"), eks=session.client("eks"),
                             region=session.region_name, local_port=args.port)
    except ClusterAccessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = args.kubeconfig or Path.home() / ".kube" / f"saas-{args.env}"
    write_kubeconfig(tunnel, path)
    command = tunnel.session_command()
    print(f"kubeconfig: {path}  (export KUBECONFIG={path})")
    print(f"tunnel:     {shlex.join(command)}")
    if args.no_tunnel:
        return 0
    if args.background:
        try:
            process = open_in_background(tunnel, kubeconfig=path, ready=lambda: kubectl_answers(path))
        except ClusterAccessError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"tunnel open in the background (pid {process.pid})")
        return 0
    print("Keep this running; kubectl works in another terminal. Ctrl-C closes the tunnel.")
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
