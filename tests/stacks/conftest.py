"""One synthesis of the whole app (both environments, every gate) per test session.

``synthesized`` builds the app exactly as ``cdk synth`` does (cdk.json feature flags, committed
cdk.context.json, cdk-nag registered, built-in validation on) into a fresh temporary outdir, with
Lambda bundling skipped. A failing gate does not hide the templates: they are still read from the
outdir, so the assertion tests run and ``test_app_gates`` reports the findings.

``templates[(env, component)]`` is the ``assertions.Template`` of stack ``saas-<env>-<component>``
(e.g. ``templates[("prod", "data")]``), built lazily once; ``template_json`` gives the raw dicts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from app import build_app, project_context
from stacks.config import PLACEHOLDER_ACCOUNT, PLACEHOLDER_REGION

StackKey = tuple[str, str]


def stack_key(stack_id: str) -> StackKey:
    """``saas-prod-data`` → ``("prod", "data")``; components may contain dashes."""
    _, env, component = stack_id.split("-", 2)
    return env, component


@dataclass
class SynthesizedApp:
    """What one synthesis produced: the outdir, each stack's template, and the validation outcome."""

    outdir: Path
    template_json: dict[StackKey, dict]
    validation_error: str | None
    _templates: dict[StackKey, assertions.Template] = field(default_factory=dict)

    @property
    def validation_report(self) -> dict | None:
        path = self.outdir / "validation-report.json"
        return json.loads(path.read_text()) if path.exists() else None

    def template(self, env: str, component: str) -> assertions.Template:
        key = (env, component)
        if key not in self._templates:
            self._templates[key] = assertions.Template.from_json(self.template_json[key])
        return self._templates[key]


class _Templates(Mapping[StackKey, assertions.Template]):
    def __init__(self, synthesized: SynthesizedApp) -> None:
        self._synthesized = synthesized

    def __getitem__(self, key: StackKey) -> assertions.Template:
        return self._synthesized.template(*key)

    def __iter__(self) -> Iterator[StackKey]:
        return iter(self._synthesized.template_json)

    def __len__(self) -> int:
        return len(self._synthesized.template_json)


def synthesize(outdir: Path) -> SynthesizedApp:
    """Synthesize every environment into ``outdir`` (offline: placeholder account, no bundling)."""
    context = {**project_context(), "aws:cdk:bundling-stacks": [],
               "account": PLACEHOLDER_ACCOUNT, "region": PLACEHOLDER_REGION, "env": "all"}
    app = build_app(cdk.App(outdir=str(outdir), context=context))
    try:
        app.synth()
        error = None
    except RuntimeError as exc:  # jsii surfaces ValidationFailed (nag / built-in rules) this way
        error = str(exc)
    templates = {stack_key(path.name.removesuffix(".template.json")): json.loads(path.read_text())
                 for path in sorted(outdir.glob("*.template.json"))}
    if not templates:
        raise RuntimeError(f"synthesis produced no templates: {error}")
    return SynthesizedApp(outdir=outdir, template_json=templates, validation_error=error)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def templates(synthesized: SynthesizedApp) -> Mapping[StackKey, assertions.Template]:
    """``templates[("dev", "network")]`` → assertions.Template of stack ``saas-dev-network``."""
    return _Templates(synthesized)


@pytest.fixture(scope="session")
def template_json(synthesized: SynthesizedApp) -> dict[StackKey, dict]:
    """``template_json[("prod", "data")]`` → the raw CloudFormation template dict."""
    return synthesized.template_json


@dataclass(frozen=True)
class Foundation:
    """A gated app holding one environment's foundation stacks (security → network → data → cluster)."""

    app: cdk.App
    env: cdk.Environment
    security: "SecurityStack"
    network: "NetworkStack"
    data: "DataStack"
    cluster: "ClusterStack"


def foundation(tmp_path_factory: pytest.TempPathFactory, name: str, config) -> Foundation:
    """Synthesizable app for a config variant, with cdk-nag's gates on and bundling skipped; callers
    add the stacks under test and call ``app.synth()`` (which raises on any unacknowledged finding)."""
    from stacks.cluster_stack import ClusterStack
    from stacks.data_stack import DataStack
    from stacks.nag import register_gates
    from stacks.network_stack import NetworkStack
    from stacks.security_stack import SecurityStack

    app = cdk.App(outdir=str(tmp_path_factory.mktemp(name)),
                  context={**project_context(), "aws:cdk:bundling-stacks": []})
    register_gates(app)
    env = cdk.Environment(account=config.account, region=config.region)
    security = SecurityStack(app, "security", config=config, env=env)
    network = NetworkStack(app, "network", config=config, security=security, env=env)
    data = DataStack(app, "data", config=config, network=network, security=security, env=env)
    cluster = ClusterStack(app, "cluster", config=config, network=network, security=security, data=data, env=env)
    return Foundation(app=app, env=env, security=security, network=network, data=data, cluster=cluster)
