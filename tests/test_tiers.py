"""The tiers file is the single source of truth: it must load, and a bad one must say where."""

from __future__ import annotations

import pytest
import yaml

from tenant_provisioner.errors import ConfigError, InvalidInput
from tenant_provisioner.tiers import DEFAULT_TIERS_FILE, TiersSettings, load_tiers


def test_shipped_tiers_match_the_business_plan():
    catalog = load_tiers(DEFAULT_TIERS_FILE)
    assert catalog.names == ["starter", "pro", "business"]
    pro = catalog.get("pro")
    assert (pro.price_usd_per_month, pro.rate_per_second, pro.burst) == (49, 20, 100)
    assert (pro.api_requests.included, pro.api_requests.hard_limit) == (1_000_000, 2_000_000)
    assert pro.api_requests.has_overage and not catalog.get("starter").api_requests.has_overage
    assert catalog.get("business").storage_bytes == 100 * 1024**3
    assert (catalog.breakers.warning, catalog.breakers.hard_limit, catalog.breakers.suspension) == (0.9, 1.0, 2.0)


def test_tiers_file_env_override(tiny_tiers):
    assert load_tiers().get("starter").api_requests.hard_limit == 100


def test_unknown_tier_lists_the_valid_ones():
    with pytest.raises(InvalidInput, match="valid tiers: business, pro, starter"):
        load_tiers(DEFAULT_TIERS_FILE).get("enterprise")


def _write_variant(tmp_path, mutate):
    data = yaml.safe_load(DEFAULT_TIERS_FILE.read_text())
    mutate(data)
    path = tmp_path / "tiers.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["tiers"]["pro"].pop("burst"), "tiers.pro.burst"),
        (lambda d: d["tiers"]["pro"].update(rate_per_second="fast"), "tiers.pro.rate_per_second"),
        (lambda d: d["tiers"]["starter"].update(seats=-1), "tiers.starter.seats"),
        (lambda d: d["tiers"]["pro"]["api_requests"].update(hard_limit=10), "tiers.pro.api_requests.hard_limit"),
        (lambda d: d["tiers"]["pro"]["api_requests"].update(overage_usd_per_1000=None),
         "tiers.pro.api_requests.overage_usd_per_1000"),
        (lambda d: d["breakers"].update(warning=1.5), "breakers"),
        (lambda d: d.update(tiers={}), "tiers"),
    ],
)
def test_bad_tiers_file_names_the_field(tmp_path, mutate, field):
    path = _write_variant(tmp_path, mutate)
    with pytest.raises(ConfigError) as excinfo:
        load_tiers(path)
    assert f"field '{field}'" in str(excinfo.value)
    assert str(path) in str(excinfo.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_tiers(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_tiers(bad)


def test_tiers_file_setting_defaults_to_the_repo_file(tmp_path):
    assert TiersSettings.from_env({}).path == DEFAULT_TIERS_FILE
    assert TiersSettings.from_env({"TIERS_FILE": ""}).path == DEFAULT_TIERS_FILE
    other = tmp_path / "tiers.yaml"
    assert TiersSettings.from_env({"TIERS_FILE": str(other)}).path == other
