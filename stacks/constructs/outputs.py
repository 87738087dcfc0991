"""Values the app team and later stacks read: an SSM parameter (for code) and a stack output (for people)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ssm as ssm
from constructs import Construct


def parameter_name(env_name: str, key: str) -> str:
    """Where ``key`` of environment ``env_name`` lives in SSM Parameter Store."""
    return f"/saas/{env_name}/platform/{key}"


def publish(scope: Construct, env_name: str, key: str, value: str, description: str) -> ssm.StringParameter:
    """Publish a non-secret value as SSM parameter ``/saas/<env>/platform/<key>`` and as a CfnOutput."""
    construct_id = "".join(part.capitalize() for part in key.split("-"))
    parameter = ssm.StringParameter(scope, f"{construct_id}Parameter", parameter_name=parameter_name(env_name, key),
                                    string_value=value, description=description)
    cdk.CfnOutput(scope, construct_id, value=value, description=description)
    return parameter
