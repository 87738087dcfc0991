"""Every control-plane function's synthesized environment matches the settings class its handler
reads: the stack sets no variable the handler does not read, and the handler finds every
variable it requires (`tenant_provisioner/runtime/settings.py: FUNCTION_SETTINGS`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from tenant_provisioner.errors import ConfigError
from tenant_provisioner.runtime.settings import COMMON_VARIABLES, FUNCTION_SETTINGS

# A value CloudFormation fills in at deploy time (Ref, Fn::GetAtt, ...) stands in as this string;
# it parses as a whole number too (e.g. a cache port), so only the variable's presence is judged.
DEPLOY_TIME_VALUE = "1"


class ReadRecorder(Mapping[str, str]):
    """An environment that remembers which variables were looked up."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self._variables = dict(variables)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._variables[name]

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(name)
        return self._variables.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read.add(name)
        return name in self._variables

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("a settings class must read variables by name, not list the environment")

    def __len__(self) -> int:
        return len(self._variables)


def _functions(template_json):
    for (env, component), template in sorted(template_json.items()):
        for logical_id, resource in template.get("Resources", {}).items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            handler = resource["Properties"].get("Handler", "")
            parts = handler.split(".")
            if len(parts) == 4 and parts[0] == "lambdas":
                variables = resource["Properties"].get("Environment", {}).get("Variables", {})
                yield f"{env}/{component}/{logical_id}", parts[1], variables


def test_every_function_of_every_environment_reads_exactly_what_its_stack_sets(template_json):
    checked = []
    for where, name, variables in _functions(template_json):
        assert name in FUNCTION_SETTINGS, f"{where}: lambdas/{name} has no settings class in FUNCTION_SETTINGS"
        environment = ReadRecorder({key: value if isinstance(value, str) else DEPLOY_TIME_VALUE
                                    for key, value in variables.items()})
        try:
            FUNCTION_SETTINGS[name].from_env(environment)
        except ConfigError as exc:
            pytest.fail(f"{where}: lambdas/{name} cannot start with what its stack sets: {exc}")
        unread = set(variables) - environment.read - COMMON_VARIABLES
        assert not unread, f"{where}: the stack sets {sorted(unread)}, which lambdas/{name} never reads"
        assert COMMON_VARIABLES <= set(variables), f"{where}: missing {sorted(COMMON_VARIABLES - set(variables))}"
        checked.append((where.split("/")[0], name))
    environments = {env for env, _ in checked}
    assert {(env, name) for env in environments for name in FUNCTION_SETTINGS} <= set(checked), \
        "some function was not synthesized in some environment"


def test_the_recorder_catches_a_variable_nobody_reads():
    from tenant_provisioner.runtime.settings import StripeWebhookSettings

    environment = ReadRecorder({"DATABASE_URL": "postgresql://x@h/db", "ENVIRONMENT_NAME": "dev"})
    StripeWebhookSettings.from_env(environment)
    assert "ENVIRONMENT_NAME" not in environment.read and "DATABASE_URL" in environment.read
