"""kubectl to the private EKS endpoint through the SSM tunnel (docs/runbooks/cluster-access.md),
and the ``tenant-provisioner`` CLI to the database through the same instance
(docs/runbooks/database-access.md).

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

``--database`` (``make db-tunnel ENV=prod ACCOUNT=… REGION=…``) forwards a local port (default
15432) to the RDS instance instead, the host the control-plane functions use (not the optional RDS
Proxy, which would pin every CLI session: the CLI works through ``SET ROLE``, so it buys nothing
here). It prints ``DATABASE_URL`` for the operators' login (``/saas/<env>/platform/db-operator-login``:
no password, no right but ``SET ROLE`` to the provisioner, created by ``tenant-provisioner init``)
and the ``PGPASSWORD`` subshell that signs an RDS IAM authentication token with the caller's own
credentials at the moment of use (``aws rds generate-db-auth-token``, valid 15 minutes, for the real
endpoint and port: that is what RDS checks, the tunnel only carries the bytes). No database password
exists for it, none is printed, logged, kept in shell history or in a URL an error message could
quote. ``sslmode=require`` (encrypted, certificate not checked by name; IAM authentication needs
TLS): the certificate names the RDS endpoint, not ``localhost``, so ``verify-full`` would refuse it.
The caller's role needs the ``database-access-policy-arn`` managed policy (``rds-db:connect`` as
that login only). ``--account`` refuses credentials of another account.
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
DEFAULT_DATABASE_LOCAL_PORT = 15432
READY_TIMEOUT_SECONDS = 120


class ClusterAccessError(RuntimeError):
    """The tunnel or the cluster could not be found; the message says what to deploy or grant."""


def port_forwarding_command(*, region: str, instance_id: str, host: str, port: int, local_port: int) -> list[str]:
    """The Session Manager session forwarding ``local_port`` through the tunnel instance to ``host:port``."""
    return ["aws", "ssm", "start-session", "--region", region, "--target", instance_id,
            "--document-name", PORT_FORWARDING_DOCUMENT, "--parameters",
            f"host={host},portNumber={port},localPortNumber={local_port}"]


def read_parameters(ssm, environment: str, keys: tuple[str, ...], *, stacks: str) -> dict[str, str]:
    """The published ``/saas/<env>/platform/<key>`` values; a missing one names the ``stacks`` to deploy."""
    values = {}
    for key in keys:
        name = parameter_name(environment, key)
        try:
            values[key] = ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            raise ClusterAccessError(f"SSM parameter {name} does not exist: deploy {stacks} first") from None
    return values


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
        return port_forwarding_command(region=self.region, instance_id=self.instance_id, host=self.endpoint_host,
                                       port=443, local_port=self.local_port)


@dataclass(frozen=True)
class DatabaseTunnel:
    region: str
    instance_id: str
    host: str
    port: int
    database_name: str
    username: str
    local_port: int

    def database_url(self) -> str:
        """The CLI's ``DATABASE_URL``: no password (``PGPASSWORD``, see `token_subshell`)."""
        return f"postgresql://{self.username}@localhost:{self.local_port}/{self.database_name}?sslmode=require"

    def token_subshell(self, command: str = "tenant-provisioner list") -> str:
        """Run ``command`` with ``PGPASSWORD`` a fresh IAM token, in a subshell only. The token is
        signed for the instance's own endpoint and port (what RDS verifies), not the tunnel's end."""
        sign = shlex.join(["aws", "rds", "generate-db-auth-token", "--hostname", self.host, "--port", str(self.port),
                           "--username", self.username, "--region", self.region])
        return f'( export PGPASSWORD="$({sign})"; {command} )'

    def session_command(self) -> list[str]:
        """The Session Manager port-forwarding session that carries the CLI's PostgreSQL traffic."""
        return port_forwarding_command(region=self.region, instance_id=self.instance_id, host=self.host,
                                       port=self.port, local_port=self.local_port)


def find_database_tunnel(environment: str, *, ssm, region: str,
                         local_port: int = DEFAULT_DATABASE_LOCAL_PORT) -> DatabaseTunnel:
    """Look up the tunnel instance and the database of ``environment``."""
    values = read_parameters(ssm, environment, ("tunnel-instance-id", "db-endpoint", "db-port", "db-name",
                                                "db-operator-login"),
                             stacks=f"saas-{environment}-data and saas-{environment}-access")
    return DatabaseTunnel(region=region, instance_id=values["tunnel-instance-id"], host=values["db-endpoint"],
                          port=int(values["db-port"]), database_name=values["db-name"],
                          username=values["db-operator-login"], local_port=local_port)


def find_tunnel(environment: str, *, ssm, eks, region: str, local_port: int = DEFAULT_LOCAL_PORT) -> Tunnel:
    """Look up the tunnel instance and the cluster of ``environment`` with the given clients."""
    values = read_parameters(ssm, environment, ("tunnel-instance-id", "cluster-name"),
                             stacks=f"saas-{environment}-cluster and saas-{environment}-access")
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


def check_account(sts, account: str | None) -> None:
    """Refuse to open a tunnel with credentials of another account than ``account`` (when given)."""
    if account is None:
        return
    actual = sts.get_caller_identity()["Account"]
    if actual != account:
        raise ClusterAccessError(f"credentials are for account {actual}, not {account}: switch profile or "
                                 f"pass ACCOUNT={actual}")


def _database(args: argparse.Namespace, tunnel: DatabaseTunnel) -> int:
    """Print the URL and the password subshell, then carry the session until Ctrl-C."""
    command = tunnel.session_command()
    print(f"database:   {tunnel.host}:{tunnel.port}/{tunnel.database_name} as {tunnel.username}, "
          f"on localhost:{tunnel.local_port}")
    print(f"export DATABASE_URL='{tunnel.database_url()}'")
    print("# sslmode=require: encrypted; verify-full would refuse it, the certificate names the RDS endpoint, "
          "not localhost")
    print("# the password: an IAM token signed as you for the real endpoint, valid 15 minutes (connections "
          "opened with it stay open); in a subshell only, never printed:")
    print(tunnel.token_subshell())
    print(f"tunnel:     {shlex.join(command)}")
    if args.no_tunnel:
        return 0
    print("Keep this running; run tenant-provisioner in another terminal. Ctrl-C closes the tunnel.")
    return subprocess.call(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cluster_access", description=__doc__.split("\n")[0])
    parser.add_argument("--env", required=True, help="environment name (dev, prod)")
    parser.add_argument("--region", default=None, help="AWS region (default: the AWS CLI's)")
    parser.add_argument("--account", default=None, help="refuse credentials of any other AWS account")
    parser.add_argument("--port", type=int, default=None,
                        help=f"local port of the tunnel (default {DEFAULT_LOCAL_PORT}, "
                             f"{DEFAULT_DATABASE_LOCAL_PORT} with --database)")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="default ~/.kube/saas-<env>")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-tunnel", action="store_true", help="write the kubeconfig / print the URL and command only")
    mode.add_argument("--background", action="store_true",
                      help="start the tunnel detached and return once kubectl answers through it")
    parser.add_argument("--database", action="store_true",
                        help="forward to the PostgreSQL instance for tenant-provisioner instead of the EKS API")
    args = parser.parse_args(argv)
    if args.database and args.background:
        parser.error("--background waits for kubectl; the database tunnel runs in the foreground")
    session = boto3.session.Session(region_name=args.region)
    try:
        check_account(session.client("sts"), args.account)
        if args.database:
            return _database(args, find_database_tunnel(
                args.env, ssm=session.client("ssm"), region=session.region_name,
                local_port=args.port or DEFAULT_DATABASE_LOCAL_PORT))
        tunnel = find_tunnel(args.env, ssm=session.client("ssm"), eks=session.client("eks"),
                             region=session.region_name, local_port=args.port or DEFAULT_LOCAL_PORT)
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
