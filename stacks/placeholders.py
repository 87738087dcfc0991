"""Configuration that cannot ship its examples: every value still at an example, in one message.

``stacks/config.py`` ships example values (``ops@example.com``, ``example-org/…``, no cluster
administrators) so that the offline synth and the tests run. A deploy with them "succeeds" and then
nothing works: SES identities can never be verified, alarms mail nobody, CI can never assume its
role, nobody can reach the cluster. So synthesizing for a real account (``-c account=<id>`` other
than the placeholder) fails with ONE message naming every such value, not one per attempt.

The scan is generic over the config dataclasses, so a value added later (a domain, a certificate
ARN) is caught as long as its example uses a reserved example domain or the placeholder account.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from stacks.config import PLACEHOLDER_ACCOUNT, EnvConfig

# RFC 2606 example domains, the example GitHub organisation, and the offline synth's placeholder account.
EXAMPLE_PATTERN = re.compile(
    rf"(?:^|[@./:])example\.(?:com|org|net)\b|^example-org/|\b{PLACEHOLDER_ACCOUNT}\b", re.IGNORECASE)
# Values that must not be empty in a real deploy: without them nobody can operate the cluster.
REQUIRED_NON_EMPTY = {
    "cluster.admin_role_arns": "no cluster administrator: add at least one IAM role ARN",
}
DOCUMENTATION = "docs/configuration.md"


class PlaceholderConfigError(ValueError):
    """A real-account synth with configuration values still at their examples."""


@dataclass(frozen=True)
class ExampleValue:
    environment: str
    path: str        # dotted field path inside EnvConfig, e.g. "limits.ops_emails"
    problem: str     # the example value, or why an empty value cannot ship

    def __str__(self) -> str:
        return f"{self.environment}: {self.path} {self.problem}"


def _walk(value: object, path: str) -> Iterator[tuple[str, object]]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _walk(getattr(value, item.name), f"{path}.{item.name}" if path else item.name)
    elif isinstance(value, tuple):
        for element in value:
            yield from _walk(element, path)
    else:
        yield path, value


def example_values(config: EnvConfig) -> list[ExampleValue]:
    """Every value of ``config`` still at an example, plus every required value left empty."""
    found = [ExampleValue(config.name, path, f"= {value!r} is an example")
             for path, value in _walk(config, "")
             if path != "account" and isinstance(value, str) and EXAMPLE_PATTERN.search(value)]
    for path, problem in REQUIRED_NON_EMPTY.items():
        value: object = config
        for name in path.split("."):
            value = getattr(value, name)
        if not value:
            found.append(ExampleValue(config.name, path, f"is empty ({problem})"))
    return found


def check_deployable(configs: Iterable[EnvConfig]) -> None:
    """Raise one :class:`PlaceholderConfigError` listing every example value of every config."""
    configs = list(configs)
    found = [item for config in configs for item in example_values(config)]
    if found:
        accounts = ", ".join(sorted({config.account for config in configs}))
        lines = "\n".join(f"  - {item}" for item in found)
        raise PlaceholderConfigError(
            f"refusing to synthesize for account {accounts}: {len(found)} configuration value(s) are still at "
            f"their examples.\n{lines}\nSet them in stacks/config.py (each is described in {DOCUMENTATION}), "
            f"or synthesize without -c account=… for the offline placeholder account.")
