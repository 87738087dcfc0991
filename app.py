#!/usr/bin/env python3
"""CDK entry point: ``-c env=dev|prod|all`` (default all) selects the environments to synthesize.

Account and region come from ``-c account=… -c region=…``, else CDK_DEFAULT_ACCOUNT/REGION, else
the placeholders whose AZ lookups are committed in cdk.context.json (offline, deterministic synth).
cdk-nag's AwsSolutions checks and CDK's built-in validation gate every synth.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import aws_cdk as cdk

from stacks.config import ENVIRONMENTS, PLACEHOLDER_ACCOUNT, load_config
from stacks.nag import register_gates
from stacks.placeholders import PlaceholderConfigError, check_deployable
from stacks.platform import build_platform, build_shared_account


PROJECT_DIR = Path(__file__).resolve().parent


def project_context() -> dict[str, object]:
    """The context the CDK CLI would pass (cdk.json feature flags + committed cdk.context.json),
    for synthesizing in-process (tests) exactly as ``cdk synth`` does."""
    flags = json.loads((PROJECT_DIR / "cdk.json").read_text())["context"]
    return {**flags, **json.loads((PROJECT_DIR / "cdk.context.json").read_text())}


def selected_environments(choice: str) -> list[str]:
    """``all`` means every environment; anything else must name one."""
    if choice == "all":
        return list(ENVIRONMENTS)
    if choice not in ENVIRONMENTS:
        raise SystemExit(f"-c env={choice!r}: choose one of {', '.join([*ENVIRONMENTS, 'all'])}")
    return [choice]


def build_app(app: cdk.App) -> cdk.App:
    """Register the gates and build every selected environment into ``app``.

    For a real account (anything but the placeholder), every configuration value still at its
    example is refused first, all of them in one :class:`PlaceholderConfigError`.
    """
    register_gates(app)
    account = app.node.try_get_context("account") or os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = app.node.try_get_context("region") or os.environ.get("CDK_DEFAULT_REGION")
    every = [load_config(name, account=account, region=region) for name in ENVIRONMENTS]
    selected = [config for config in every
                if config.name in selected_environments(app.node.try_get_context("env") or "all")]
    if selected[0].account != PLACEHOLDER_ACCOUNT:
        check_deployable(every)   # the shared-account stack carries every environment's senders
    shared = build_shared_account(app, every)   # identical whichever environment is selected
    for config in selected:
        build_platform(app, config, shared=shared)
    return app


if __name__ == "__main__":
    try:
        build_app(cdk.App()).synth()
    except PlaceholderConfigError as error:
        raise SystemExit(f"error: {error}") from None
