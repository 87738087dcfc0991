"""Every Lambda function's reserved concurrency is a typed per-environment value (``concurrency.*``):
refused at config time when Lambda would refuse it, and what the synthesized templates carry."""

from __future__ import annotations

import dataclasses
import json

import aws_cdk as cdk
import pytest

from app import build_app, project_context
from stacks.config import ENVIRONMENTS, PLACEHOLDER_ACCOUNT, ConcurrencyConfig, ConcurrencyConfigError, load_config
from tools.synth_summary import concurrency_quota_lines, reserved_concurrency

HANDLER_SUFFIX = ".handler.handler"


def _reserved_by_function(template_json, env: str) -> dict[str, int | None]:
    """``lambdas/<name>`` → ReservedConcurrentExecutions of every project function of ``env``."""
    return {r["Properties"]["Handler"].removeprefix("lambdas.").removesuffix(HANDLER_SUFFIX):
            r["Properties"].get("ReservedConcurrentExecutions")
            for (e, _), template in template_json.items() if e == env
            for r in template["Resources"].values()
            if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler", "").startswith("lambdas.")}


@pytest.mark.parametrize("env", list(ENVIRONMENTS))
def test_every_function_reserves_exactly_its_configured_concurrency(template_json, env):
    assert _reserved_by_function(template_json, env) == load_config(env).concurrency.reserved()


def test_synthesized_values_and_the_printed_quota_follow_the_config(tmp_path, monkeypatch):
    """A config variant with a distinct value per function: every function and the quota line follow it."""
    values = {name: index for index, name in enumerate(ConcurrencyConfig().reserved(), start=3)}
    variant = ConcurrencyConfig(account_quota=400, **values)
    original = ENVIRONMENTS["dev"]
    monkeypatch.setitem(ENVIRONMENTS, "dev", lambda account, region: dataclasses.replace(
        original(account, region), concurrency=variant))
    context = {**project_context(), "aws:cdk:bundling-stacks": [], "account": PLACEHOLDER_ACCOUNT,
               "region": "us-east-1", "env": "dev"}
    build_app(cdk.App(outdir=str(tmp_path), context=context)).synth()
    templates = {("dev", path.name): json.loads(path.read_text()) for path in tmp_path.glob("saas-dev-*.template.json")}
    assert _reserved_by_function(templates, "dev") == values
    assert reserved_concurrency(tmp_path)["dev"] == sum(values.values())
    assert f"dev alone in its account: >= {sum(values.values()) + 100}" in "\n".join(
        concurrency_quota_lines(reserved_concurrency(tmp_path)))


def test_the_shipped_values_fit_a_default_account():
    for name in ENVIRONMENTS:
        concurrency = load_config(name).concurrency
        assert concurrency.total() + 100 <= concurrency.account_quota


@pytest.mark.parametrize("field, value", [("provision_tenant", -1), ("stripe_webhook", 0), ("cost_report", True),
                                          ("restore_drill", 1.5)])
def test_a_value_below_one_or_not_a_whole_number_is_refused_by_name(field, value):
    with pytest.raises(ConcurrencyConfigError) as error:
        ConcurrencyConfig(**{field: value})
    assert f"concurrency.{field} = {value!r}: must be a whole number of at least 1" in str(error.value)


def test_every_bad_value_is_listed_in_one_error():
    with pytest.raises(ConcurrencyConfigError) as error:
        ConcurrencyConfig(provision_tenant=-5, budget_breaker=0)
    assert "concurrency.provision_tenant = -5" in str(error.value)
    assert "concurrency.budget_breaker = 0" in str(error.value)


def test_reservations_above_the_account_quota_are_refused_with_what_to_do():
    """A new account's reduced quota (e.g. 10) cannot hold any reservation: Lambda keeps 100 unreserved."""
    with pytest.raises(ConcurrencyConfigError) as error:
        ConcurrencyConfig(account_quota=10)
    message = str(error.value)
    assert "adds up to 23" in message and "account quota 10" in message
    assert "L-B99A9384" in message and "concurrency.account_quota" in message
    with pytest.raises(ConcurrencyConfigError, match=r"above the account quota 1000 .*\(900 at most\)"):
        ConcurrencyConfig(provision_tenant=890)
    assert ConcurrencyConfig(provision_tenant=887).total() == 900   # exactly the quota minus 100 fits


def test_a_quota_that_is_not_a_positive_number_is_refused():
    with pytest.raises(ConcurrencyConfigError, match="concurrency.account_quota = 0"):
        ConcurrencyConfig(account_quota=0)
