"""Network stack: 3 AZs x 3 subnet tiers, NAT per environment, private endpoints, flow logs."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from stacks.network_stack import INTERFACE_ENDPOINTS

ENVS = ("dev", "prod")


def _subnets(template_json, env, kind):
    return [r for r in template_json[(env, "network")]["Resources"].values()
            if r["Type"] == "AWS::EC2::Subnet"
            and {"Key": "aws-cdk:subnet-name", "Value": kind} in r["Properties"]["Tags"]]


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("kind", ["public", "private", "isolated"])
def test_three_subnets_of_each_tier_in_three_azs(template_json, env, kind):
    subnets = _subnets(template_json, env, kind)
    assert len(subnets) == 3
    assert {s["Properties"]["AvailabilityZone"] for s in subnets} == {"us-east-1a", "us-east-1b", "us-east-1c"}
    assert all(s["Properties"]["MapPublicIpOnLaunch"] == (kind == "public") for s in subnets)


@pytest.mark.parametrize(("kind", "target"), [("public", "GatewayId"), ("private", "NatGatewayId"), ("isolated", None)])
def test_default_routes_internet_gateway_nat_or_none(template_json, kind, target):
    resources = template_json[("prod", "network")]["Resources"]
    subnet_ids = {name for name, r in resources.items() if r["Type"] == "AWS::EC2::Subnet"
                  and {"Key": "aws-cdk:subnet-name", "Value": kind} in r["Properties"]["Tags"]}
    tables = {r["Properties"]["RouteTableId"]["Ref"] for r in resources.values()
              if r["Type"] == "AWS::EC2::SubnetRouteTableAssociation" and r["Properties"]["SubnetId"]["Ref"] in subnet_ids}
    routes = [r["Properties"] for r in resources.values()
              if r["Type"] == "AWS::EC2::Route" and r["Properties"]["RouteTableId"]["Ref"] in tables]
    assert len(tables) == 3
    assert [sorted(set(r) & {"GatewayId", "NatGatewayId"}) for r in routes] == ([[target]] * 3 if target else [])


@pytest.mark.parametrize(("env", "nat_gateways"), [("dev", 1), ("prod", 3)])
def test_nat_gateways_one_in_dev_one_per_az_in_prod(templates, env, nat_gateways):
    templates[(env, "network")].resource_count_is("AWS::EC2::NatGateway", nat_gateways)


@pytest.mark.parametrize("env", ENVS)
def test_s3_gateway_and_interface_endpoints(templates, template_json, env):
    template = templates[(env, "network")]
    template.has_resource_properties("AWS::EC2::VPCEndpoint", {
        "VpcEndpointType": "Gateway",
        "ServiceName": Match.object_like({"Fn::Join": ["", Match.array_with([".s3"])]}),
    })
    interface = [r["Properties"] for r in template_json[(env, "network")]["Resources"].values()
                 if r["Type"] == "AWS::EC2::VPCEndpoint" and r["Properties"].get("VpcEndpointType") == "Interface"]
    names = {p["ServiceName"] for p in interface}
    assert names == {f"com.amazonaws.us-east-1.{service.short_name}" for service in INTERFACE_ENDPOINTS.values()}
    assert {"com.amazonaws.us-east-1.secretsmanager", "com.amazonaws.us-east-1.sts",
            "com.amazonaws.us-east-1.ecr.api", "com.amazonaws.us-east-1.ecr.dkr",
            "com.amazonaws.us-east-1.logs", "com.amazonaws.us-east-1.eks-auth",
            "com.amazonaws.us-east-1.xray"} == names
    assert all(p["PrivateDnsEnabled"] for p in interface)


@pytest.mark.parametrize(("env", "azs"), [("dev", 1), ("prod", 3)])
def test_interface_endpoints_span_the_configured_azs(template_json, env, azs):
    interface = [r["Properties"] for r in template_json[(env, "network")]["Resources"].values()
                 if r["Type"] == "AWS::EC2::VPCEndpoint" and r["Properties"].get("VpcEndpointType") == "Interface"]
    assert {len(p["SubnetIds"]) for p in interface} == {azs}
    assert all("privateSubnet" in ref["Ref"] for p in interface for ref in p["SubnetIds"])


@pytest.mark.parametrize(("env", "cidr"), [("dev", "10.20.0.0/16"), ("prod", "10.10.0.0/16")])
def test_endpoints_admit_https_from_the_vpc_only(templates, env, cidr):
    templates[(env, "network")].has_resource_properties("AWS::EC2::SecurityGroup", {
        "GroupDescription": "Interface endpoints: HTTPS from the VPC",
        "SecurityGroupIngress": [Match.object_like({"CidrIp": cidr, "FromPort": 443, "ToPort": 443})],
    })


@pytest.mark.parametrize(("env", "days"), [("dev", 14), ("prod", 90)])
def test_all_traffic_flow_logs_to_a_kms_encrypted_log_group(templates, env, days):
    template = templates[(env, "network")]
    template.has_resource_properties("AWS::EC2::FlowLog", {
        "ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"})
    template.has_resource_properties("AWS::Logs::LogGroup", {
        "RetentionInDays": days, "KmsKeyId": Match.object_like({"Fn::GetStackOutput": Match.any_value()})})


@pytest.mark.parametrize("env", ENVS)
def test_default_security_group_is_locked_down(templates, env):
    templates[(env, "network")].resource_count_is("Custom::VpcRestrictDefaultSG", 1)


@pytest.mark.parametrize(("kind", "tag"), [("public", "kubernetes.io/role/elb"),
                                           ("private", "kubernetes.io/role/internal-elb")])
def test_subnets_tagged_for_eks_load_balancers(template_json, kind, tag):
    assert all({"Key": tag, "Value": "1"} in s["Properties"]["Tags"] for s in _subnets(template_json, "prod", kind))
    assert not any({"Key": tag, "Value": "1"} in s["Properties"]["Tags"] for s in _subnets(template_json, "prod", "isolated"))
