"""The SSM tunnel tool against moto: finds the tunnel and cluster, writes a kubeconfig that goes
through the local end of the tunnel as the caller's IAM role, and the port-forwarding command."""

from __future__ import annotations

import stat

import boto3
import pytest
import yaml
from moto import mock_aws

from tools.cluster_access import ClusterAccessError, find_database_tunnel, find_tunnel, main, write_kubeconfig

REGION = "us-east-1"


@pytest.fixture
def aws():
    with mock_aws():
        ssm, eks, ec2, iam = (boto3.client(name, region_name=REGION) for name in ("ssm", "eks", "ec2", "iam"))
        role = iam.create_role(RoleName="cluster", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        subnet = ec2.create_subnet(VpcId=ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"],
                                   CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        eks.create_cluster(name="saas-prod", roleArn=role, resourcesVpcConfig={"subnetIds": [subnet]})
        ssm.put_parameter(Name="/saas/prod/platform/cluster-name", Value="saas-prod", Type="String")
        ssm.put_parameter(Name="/saas/prod/platform/tunnel-instance-id", Value="i-0123456789abcdef0", Type="String")
        for key, value in DATABASE.items():
            ssm.put_parameter(Name=f"/saas/prod/platform/{key}", Value=value, Type="String")
        yield ssm, eks


DATABASE = {"db-endpoint": "saas-prod-postgres.abc.us-east-1.rds.amazonaws.com", "db-port": "5432", "db-name": "app",
            "db-operator-login": "tenant_provisioner_operator"}


def test_kubeconfig_goes_through_the_tunnel_as_the_callers_role(aws, tmp_path):
    ssm, eks = aws
    tunnel = find_tunnel("prod", ssm=ssm, eks=eks, region=REGION, local_port=9443)
    cluster = eks.describe_cluster(name="saas-prod")["cluster"]
    path = tmp_path / "kube" / "saas-prod"
    write_kubeconfig(tunnel, path)
    config = yaml.safe_load(path.read_text())
    (entry,) = config["clusters"]
    assert entry["cluster"]["server"] == "https://127.0.0.1:9443"
    assert f"https://{entry['cluster']['tls-server-name']}" == cluster["endpoint"].rstrip("/")
    assert entry["cluster"]["certificate-authority-data"] == cluster["certificateAuthority"]["data"]
    (user,) = config["users"]
    assert user["user"]["exec"]["args"] == ["eks", "get-token", "--cluster-name", "saas-prod", "--region", REGION]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tunnel.session_command() == [
        "aws", "ssm", "start-session", "--region", REGION, "--target", "i-0123456789abcdef0",
        "--document-name", "AWS-StartPortForwardingSessionToRemoteHost", "--parameters",
        f"host={entry['cluster']['tls-server-name']},portNumber=443,localPortNumber=9443"]


def test_missing_tunnel_says_which_stacks_to_deploy(aws):
    ssm, eks = aws
    with pytest.raises(ClusterAccessError, match="deploy saas-dev-cluster and saas-dev-access"):
        find_tunnel("dev", ssm=ssm, eks=eks, region=REGION)


def test_cli_writes_the_kubeconfig_and_prints_the_command_without_opening_the_tunnel(aws, tmp_path, capsys):
    path = tmp_path / "config"
    assert main(["--env", "prod", "--region", REGION, "--kubeconfig", str(path), "--no-tunnel"]) == 0
    out = capsys.readouterr().out
    assert f"export KUBECONFIG={path}" in out and "aws ssm start-session" in out
    assert yaml.safe_load(path.read_text())["current-context"] == "saas-prod"
    assert main(["--env", "dev", "--region", REGION, "--no-tunnel"]) == 2


def test_database_tunnel_forwards_to_the_rds_instance_and_prints_a_url_without_password(aws):
    ssm, _ = aws
    tunnel = find_database_tunnel("prod", ssm=ssm, region=REGION)
    assert tunnel.session_command() == [
        "aws", "ssm", "start-session", "--region", REGION, "--target", "i-0123456789abcdef0",
        "--document-name", "AWS-StartPortForwardingSessionToRemoteHost", "--parameters",
        f"host={DATABASE['db-endpoint']},portNumber=5432,localPortNumber=15432"]
    assert tunnel.database_url() == "postgresql://tenant_provisioner_operator@localhost:15432/app?sslmode=require"
    subshell = tunnel.token_subshell("tenant-provisioner list")
    assert subshell == (
        f'( export PGPASSWORD="$(aws rds generate-db-auth-token --hostname {DATABASE["db-endpoint"]} --port 5432 '
        '--username tenant_provisioner_operator --region us-east-1)"; tenant-provisioner list )')
    # The token names the instance's own endpoint and port (what RDS verifies), not the tunnel's end.
    token = boto3.client("rds", region_name=REGION).generate_db_auth_token(
        DBHostname=tunnel.host, Port=tunnel.port, DBUsername=tunnel.username)
    assert token.startswith(f"{DATABASE['db-endpoint']}:5432/?Action=connect&DBUser=tenant_provisioner_operator&")


def test_database_tunnel_reads_only_what_the_database_access_policy_grants():
    from stacks.access_stack import DATABASE_PARAMETERS

    class Recorder:
        class exceptions:
            ParameterNotFound = KeyError

        def __init__(self):
            self.names = []

        def get_parameter(self, *, Name):
            self.names.append(Name)
            return {"Parameter": {"Value": "5432"}}

    recorder = Recorder()
    find_database_tunnel("prod", ssm=recorder, region=REGION)
    assert sorted(recorder.names) == sorted(f"/saas/prod/platform/{key}" for key in DATABASE_PARAMETERS)


def test_missing_database_parameters_say_which_stacks_to_deploy(aws):
    ssm, _ = aws
    with pytest.raises(ClusterAccessError, match="deploy saas-dev-data and saas-dev-access"):
        find_database_tunnel("dev", ssm=ssm, region=REGION)


def test_database_cli_prints_the_url_and_token_command_and_never_touches_the_master_secret(aws, capsys):
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.create_secret(Name="/saas/prod/platform/rds-master", SecretString='{"password": "s3cret-pw"}')
    assert main(["--env", "prod", "--region", REGION, "--database", "--no-tunnel", "--port", "6543"]) == 0
    out = capsys.readouterr().out
    assert "export DATABASE_URL='postgresql://tenant_provisioner_operator@localhost:6543/app?sslmode=require'" in out
    assert (f'PGPASSWORD="$(aws rds generate-db-auth-token --hostname {DATABASE["db-endpoint"]} --port 5432 '
            '--username tenant_provisioner_operator --region us-east-1)"') in out and "localPortNumber=6543" in out
    assert "valid 15 minutes" in out
    assert "s3cret-pw" not in out and "secretsmanager" not in out and "postgres@" not in out
    with pytest.raises(SystemExit):
        main(["--env", "prod", "--region", REGION, "--database", "--background"])


def test_a_tunnel_with_credentials_of_another_account_is_refused(aws, capsys):
    account = boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]
    assert main(["--env", "prod", "--region", REGION, "--account", account, "--database", "--no-tunnel"]) == 0
    assert main(["--env", "prod", "--region", REGION, "--account", "999999999999", "--database", "--no-tunnel"]) == 2
    assert f"credentials are for account {account}, not 999999999999" in capsys.readouterr().err


def test_every_runbook_kubectl_step_points_to_the_tunnel():
    from app import PROJECT_DIR
    runbooks = sorted((PROJECT_DIR / "docs" / "runbooks").glob("*.md"))
    using_kubectl = [p for p in runbooks if "kubectl" in p.read_text() and p.name != "cluster-access.md"]
    assert using_kubectl, "expected runbooks with kubectl steps"
    assert [p.name for p in using_kubectl if "cluster-access.md" not in p.read_text()] == []
    assert "cluster-tunnel:" in (PROJECT_DIR / "Makefile").read_text()


def test_every_runbook_that_runs_the_cli_against_a_deployment_points_to_the_database_tunnel():
    from app import PROJECT_DIR
    runbooks = sorted((PROJECT_DIR / "docs" / "runbooks").glob("*.md"))
    no_database = {"database-access.md", "stripe-setup.md"}   # the latter: `billing sync-catalog` talks to Stripe only
    using_cli = [p for p in runbooks if p.name not in no_database and (
        "tenant-provisioner " in p.read_text() or "python -m tenant_provisioner " in p.read_text())]
    assert len(using_cli) >= 10, "expected the tenant, billing, limits and failover runbooks"
    assert [p.name for p in using_cli if "database-access.md" not in p.read_text()] == []
    assert not [p.name for p in runbooks if "no bastion" in p.read_text() or "no path to the database" in p.read_text()]
    guide = (PROJECT_DIR / "docs" / "runbooks" / "database-access.md").read_text()
    assert "make db-tunnel ENV=prod ACCOUNT=<account> REGION=<region>" in guide and "CloudTrail" in guide
    assert "db-tunnel:" in (PROJECT_DIR / "Makefile").read_text()


def _tunnel():
    from tools.cluster_access import Tunnel
    return Tunnel(environment="prod", region=REGION, cluster_name="saas-prod", endpoint_host="abc.eks.amazonaws.com",
                  certificate_authority="Q0E=", instance_id="i-0123456789abcdef0", local_port=8443)


def test_background_tunnel_outlives_the_call_and_returns_once_kubectl_answers(tmp_path):
    import subprocess

    from tools.cluster_access import open_in_background
    started, probes = [], iter([False, False, True])
    def popen(command, **kwargs):
        started.append((command, kwargs))
        return subprocess.Popen(["sleep", "30"], **kwargs)
    process = open_in_background(_tunnel(), kubeconfig=tmp_path / "kubeconfig", ready=lambda: next(probes),
                                 sleep=lambda _: None, popen=popen)
    try:
        assert process.poll() is None                                     # still running after the call
        command, kwargs = started[0]
        assert command[:3] == ["aws", "ssm", "start-session"] and kwargs["start_new_session"] is True
        assert (tmp_path / "kubeconfig.tunnel.log").exists()
    finally:
        process.kill()
        process.wait()


def test_background_tunnel_that_exits_or_never_answers_fails_with_its_log(tmp_path):
    import subprocess

    from tools.cluster_access import open_in_background
    failing = lambda command, **kwargs: subprocess.Popen(["sh", "-c", "echo TargetNotConnected; exit 255"], **kwargs)  # noqa: E731
    with pytest.raises(ClusterAccessError, match="TargetNotConnected"):
        open_in_background(_tunnel(), kubeconfig=tmp_path / "k", ready=lambda: False, sleep=lambda _: __import__(
            "time").sleep(0.2), popen=failing)
    now = iter(range(0, 1000, 100))
    hanging = []
    def popen(command, **kwargs):
        hanging.append(subprocess.Popen(["sleep", "30"], **kwargs))
        return hanging[-1]
    with pytest.raises(ClusterAccessError, match="did not come up within 120 s"):
        open_in_background(_tunnel(), kubeconfig=tmp_path / "k", ready=lambda: False, clock=lambda: next(now),
                           sleep=lambda _: None, popen=popen)
    assert hanging[0].wait(timeout=5) is not None                       # stopped, not left behind
