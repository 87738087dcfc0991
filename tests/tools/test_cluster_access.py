"""The SSM tunnel tool against moto: finds the tunnel and cluster, writes a kubeconfig that goes
through the local end of the tunnel as the caller's IAM role, and the port-forwarding command."""

from __future__ import annotations

import stat

import boto3
import pytest
import yaml
from moto import mock_aws

from tools.cluster_access import ClusterAccessError, find_tunnel, main, write_kubeconfig

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
        yield ssm, eks


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


def test_every_runbook_kubectl_step_points_to_the_tunnel():
    from app import PROJECT_DIR
    runbooks = sorted((PROJECT_DIR / "docs" / "runbooks").glob("*.md"))
    using_kubectl = [p for p in runbooks if "kubectl" in p.read_text() and p.name != "cluster-access.md"]
    assert using_kubectl, "expected runbooks with kubectl steps"
    assert [p.name for p in using_kubectl if "cluster-access.md" not in p.read_text()] == []
    assert "cluster-tunnel:" in (PROJECT_DIR / "Makefile").read_text()
