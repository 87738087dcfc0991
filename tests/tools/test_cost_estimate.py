"""The pre-deploy estimator on hand-written templates: each price rule, budgets, exit codes."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tools import cost_estimate
from tools.cost_estimate import (CACHE, EKS, ENDPOINTS, NAT, RDS, WAF, PriceBook, estimate, load_templates, main,
                                  over_budget)
from tenant_provisioner.errors import ConfigError, InvalidInput

PRICES = PriceBook.load()
HOURS = Decimal(730)


def _template(*resources: tuple[str, dict]) -> dict:
    return {"Resources": {f"R{i}": {"Type": kind, "Properties": props} for i, (kind, props) in enumerate(resources)}}


def _one(kind: str, props: dict, env: str = "prod"):
    return estimate({(env, "x"): _template((kind, props))}, PRICES)


def _template_total(result, env="prod"):
    return sum((line.monthly_usd for line in result.lines if line.env == env and not line.assumed), Decimal(0))


@pytest.mark.parametrize("support, hourly", [("STANDARD", "0.10"), ("EXTENDED", "0.60"), (None, "0.60")])
def test_eks_control_plane_defaults_to_extended_support(support, hourly):
    props = {"UpgradePolicy": {"SupportType": support}} if support else {}
    result = _one("AWS::EKS::Cluster", props)
    assert result.total("prod", EKS) == Decimal(hourly) * HOURS


def test_rds_multi_az_doubles_instance_and_storage():
    single = _one("AWS::RDS::DBInstance", {"DBInstanceClass": "db.m7g.large", "AllocatedStorage": "100",
                                           "StorageType": "gp3"})
    multi = _one("AWS::RDS::DBInstance", {"DBInstanceClass": "db.m7g.large", "AllocatedStorage": "100",
                                          "StorageType": "gp3", "MultiAZ": True})
    assert single.total("prod", RDS) == Decimal("0.168") * HOURS + 100 * Decimal("0.115")
    assert multi.total("prod", RDS) == 2 * single.total("prod", RDS)


def test_cross_region_backup_replication_is_priced_when_configured():
    props = {"DBInstanceClass": "db.m7g.large", "AllocatedStorage": "100", "StorageType": "gp3"}
    plain = _one("AWS::RDS::DBInstance", props)
    replicated = _one("AWS::RDS::DBInstance", {**props, "AutomaticBackupReplicationRegion": "us-west-2"})
    extra = replicated.total("prod", RDS) - plain.total("prod", RDS)
    assert extra == 100 * (Decimal("0.095") + Decimal("0.02"))
    assert any("replicated to us-west-2" in line.detail for line in replicated.lines)


def test_the_monthly_restore_drill_prices_its_temporary_instance_only_with_the_drill():
    db = ("AWS::RDS::DBInstance", {"DBInstanceClass": "db.m7g.large", "AllocatedStorage": "100", "StorageType": "gp3",
                                   "MultiAZ": True})
    without = estimate({("prod", "data"): _template(db)}, PRICES)
    with_drill = estimate({("prod", "data"): _template(db),
                           ("prod", "dr"): _template(("AWS::StepFunctions::StateMachine", {}))}, PRICES)
    (line,) = [line for line in with_drill.lines if line.detail.startswith("restore drill")]
    assert line.assumed and line.monthly_usd == 2 * (Decimal("0.168") + 100 * Decimal("0.115") / HOURS)
    assert not [line for line in without.lines if line.detail.startswith("restore drill")]


@pytest.mark.parametrize("props, nodes", [
    ({"NumCacheClusters": 3}, 3), ({"NumNodeGroups": 2, "ReplicasPerNodeGroup": 1}, 4), ({}, 1)])
def test_cache_nodes_count_primaries_and_replicas(props, nodes):
    redis = _one("AWS::ElastiCache::ReplicationGroup", {"CacheNodeType": "cache.m7g.large", "Engine": "redis", **props})
    valkey = _one("AWS::ElastiCache::ReplicationGroup", {"CacheNodeType": "cache.m7g.large", "Engine": "valkey",
                                                        **props})
    assert redis.total("prod", CACHE) == nodes * Decimal("0.158") * HOURS
    assert valkey.total("prod", CACHE) == redis.total("prod", CACHE) * Decimal("0.8")


def test_network_resources():
    templates = {("dev", "network"): _template(
        ("AWS::EC2::NatGateway", {}), ("AWS::EC2::EIP", {}),
        ("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Interface", "ServiceName": "com.amazonaws.us-east-1.ecr.api",
                                   "SubnetIds": ["a", "b", "c"]}),
        ("AWS::EC2::VPCEndpoint", {"ServiceName": "com.amazonaws.us-east-1.s3"}),   # gateway: free
        ("AWS::EC2::VPC", {}), ("AWS::IAM::Role", {}), ("Custom::VpcRestrictDefaultSG", {}))}
    result = estimate(templates, PRICES)
    assert _template_total(result, "dev") == (Decimal("0.045") + Decimal("0.005") + 3 * Decimal("0.01")) * HOURS
    assert result.total("dev", NAT) > 0 and result.total("dev", ENDPOINTS) > 0
    assert any("ecr.api endpoint x 3 AZ" in line.detail for line in result.lines)
    assert result.unpriced == []


def test_waf_alarms_and_unknown_types():
    templates = {("prod", "edge"): _template(
        ("AWS::WAFv2::WebACL", {"Rules": [{}, {}, {}]}),
        ("AWS::CloudWatch::Alarm", {"Metrics": [{"MetricStat": {}}, {"MetricStat": {}}, {"Expression": "a+b"}]}),
        ("AWS::CloudWatch::Dashboard", {}), ("AWS::Route53::HostedZone", {"Name": "example.com"}),
        ("AWS::S3::Bucket", {}), ("AWS::GameLift::Fleet", {}))}
    result = estimate(templates, PRICES)
    assert _template_total(result) == Decimal(5 + 3) + Decimal("0.20") + Decimal(3) + Decimal("0.50")
    assert result.total("prod", WAF) > 8   # plus the assumed requests
    assert result.unpriced == [("prod", "edge", "AWS::GameLift::Fleet")]


def test_the_ssm_tunnel_instance_and_its_volume_are_priced():
    from tools.cost_estimate import TUNNEL
    result = _one("AWS::EC2::Instance", {"InstanceType": "t4g.nano",
                                         "BlockDeviceMappings": [{"Ebs": {"VolumeSize": 8}}]})
    assert result.total(kind=TUNNEL) == Decimal("0.0042") * 730 + 8 * Decimal("0.08")


def test_usage_assumptions_are_marked():
    result = _one("AWS::EC2::NatGateway", {})
    assumed = [line for line in result.lines if line.assumed]
    assert any("GB through NAT" in line.detail for line in assumed)
    assert any("GB logs ingested" in line.detail for line in assumed)
    assert not any("tenant secrets" in line.detail for line in assumed)  # passwords derived: no secret per tenant


def test_a_missing_price_names_the_key():
    with pytest.raises(ConfigError, match=r"no price at rds\.instance_per_hour\.db\.x9g\.huge"):
        _one("AWS::RDS::DBInstance", {"DBInstanceClass": "db.x9g.huge"})


def test_over_budget_reasons():
    result = _one("AWS::EKS::Cluster", {})           # extended support: $438
    assert over_budget(result, {"prod": Decimal(1000)}) == []
    assert over_budget(result, {"prod": Decimal(400)})[0].startswith("prod: $")
    assert "approved" in over_budget(result, {"prod": Decimal(9999)}, (Decimal(100), Decimal(200)))[0]


def _write(tmp_path, templates: dict) -> str:
    for (env, component), template in templates.items():
        (tmp_path / f"saas-{env}-{component}.template.json").write_text(json.dumps(template))
    (tmp_path / "manifest.json").write_text("{}")
    return str(tmp_path)


def test_main_exit_codes(tmp_path, capsys):
    cheap = _write(tmp_path, {("dev", "cluster"): _template(("AWS::EKS::Cluster", {"UpgradePolicy": {
        "SupportType": "STANDARD"}}))})
    assert main([cheap]) == 0
    assert "Total" in capsys.readouterr().out
    expensive = tmp_path / "expensive"
    expensive.mkdir()
    _write(expensive, {("dev", "cluster"): _template(*[("AWS::EKS::Cluster", {})] * 2)})   # 2 x $438 > $500
    assert main([str(expensive)]) == 1
    assert "OVER BUDGET: dev" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert "run `make synth` first" in capsys.readouterr().err


def test_load_templates_ignores_other_files(tmp_path):
    (tmp_path / "asset.json").write_text("{}")
    with pytest.raises(InvalidInput, match="no saas-<env>-<component>"):
        load_templates(tmp_path)


class FakePricing:
    """Answers get_products like the Price List API for the filters it is given."""

    def __init__(self, prices: dict[str, str]) -> None:
        self.prices, self.calls = prices, []

    def get_products(self, ServiceCode, Filters, MaxResults):  # noqa: N803 - boto3's parameter names
        fields = {f["Field"]: f["Value"] for f in Filters}
        self.calls.append((ServiceCode, fields))
        usd = self.prices.get(fields["instanceType"])
        if usd is None:
            return {"PriceList": []}
        item = {"terms": {"OnDemand": {"T": {"priceDimensions": {"D": {"pricePerUnit": {"USD": usd}}}}}}}
        return {"PriceList": [json.dumps(item)]}


def test_price_check_reports_only_differences():
    listed = {k: str(v) for section in (PRICES.data["ec2_instance_per_hour"], PRICES.data["rds"]["instance_per_hour"],
                                        PRICES.data["elasticache"]["node_per_hour"])
              for k, v in section.items() if k != "source"}
    listed["db.m7g.large"] = "0.1780000000"
    del listed["cache.t4g.micro"]
    client = FakePricing(listed)
    differences = cost_estimate.check_prices(PRICES, client)
    assert differences == [("rds.instance_per_hour.db.m7g.large", Decimal("0.168"), Decimal("0.178")),
                           ("elasticache.node_per_hour.cache.t4g.micro", Decimal("0.016"), None)]
    assert all(fields["regionCode"] == "us-east-1" for _, fields in client.calls)
    assert ("AmazonRDS", "PostgreSQL") in {(s, f.get("databaseEngine")) for s, f in client.calls}


def test_write_prices_updates_values_in_place(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(cost_estimate.PRICES_FILE.read_text())
    changed = cost_estimate.write_prices(path, [
        ("rds.instance_per_hour.db.m7g.large", Decimal("0.168"), Decimal("0.1780")),
        ("ec2_instance_per_hour.m7g.large", Decimal("0.0816"), Decimal("0.0820")),
        ("elasticache.node_per_hour.cache.t4g.micro", Decimal("0.016"), None)], "2027-01-02")
    assert changed == 2
    updated = PriceBook.load(path)
    assert updated.price("rds", "instance_per_hour", "db.m7g.large") == Decimal("0.178")
    assert updated.price("ec2_instance_per_hour", "m7g.large") == Decimal("0.082")
    assert updated.price("elasticache", "node_per_hour", "cache.m7g.large") == Decimal("0.158")   # untouched
    assert updated.as_of == "2027-01-02" and "# AWS list prices" in path.read_text()   # comments kept


def test_auto_mode_nodes_with_fee_and_volumes_ecr_storage_and_xray_traces():
    result = estimate({("prod", "cluster"): _template(
        ("AWS::EKS::Cluster", {"ComputeConfig": {"Enabled": True}, "UpgradePolicy": {"SupportType": "STANDARD"}})),
        ("prod", "registry"): _template(("AWS::ECR::Repository", {}), ("AWS::ECR::Repository", {}))}, PRICES)
    lines = {line.detail: line.monthly_usd for line in result.lines if line.assumed}
    usage = PRICES.usage("prod")
    nodes = usage["auto_mode_nodes"]
    fee = 1 + PRICES.price("eks", "auto_mode_fee_share")
    node_line = next(v for k, v in lines.items() if k.startswith("Auto Mode nodes"))
    assert node_line == nodes["count"] * PRICES.price("ec2_instance_per_hour", nodes["instance_type"]) * fee * HOURS
    assert lines[f"{nodes['count'] * nodes['disk_gb']} GB Auto Mode node volumes"] > 0
    stored = Decimal(usage["ecr_gb_per_repository"]) * 2
    assert lines[f"{stored} GB of images in 2 ECR repositories"] == stored * PRICES.price("ecr", "storage_gb_month")
    traces = Decimal(str(usage["xray_million_traces"]))
    assert next(v for k, v in lines.items() if "X-Ray traces" in k) == traces * PRICES.price("xray", "per_million_traces")
