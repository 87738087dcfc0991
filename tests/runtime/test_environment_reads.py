"""`os.environ` is read only by settings classes (the GUIDE's rule), checked on the source tree.

A read counts when it is `os.environ` / `os.getenv` / `from os import environ|getenv`; it is allowed
inside a class whose name ends in ``Settings`` and in `runtime/env.py`, the helper those classes share.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

LIBRARY_DIRS = ("tenant_provisioner", "lambdas", "services")
SHARED_HELPER = Path("tenant_provisioner/runtime/env.py")
ENV_NAMES = {"environ", "getenv"}


def environment_reads(source: str) -> list[tuple[int, str]]:
    """(line, enclosing class or "") of every environment read outside a *Settings class."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, owner: str) -> None:
        if isinstance(node, ast.ClassDef):
            owner = node.name
        is_read = (isinstance(node, ast.Attribute) and node.attr in ENV_NAMES
                   and isinstance(node.value, ast.Name) and node.value.id == "os") or (
            isinstance(node, ast.ImportFrom) and node.module == "os"
            and any(alias.name in ENV_NAMES for alias in node.names))
        if is_read and not owner.endswith("Settings"):
            found.append((node.lineno, owner))
        for child in ast.iter_child_nodes(node):
            visit(child, owner)

    visit(ast.parse(source), "")
    return found


def test_checker_flags_reads_outside_settings_classes() -> None:
    source = '''
import os
from os import getenv
class RedisSettings:
    def from_env(self):
        return os.environ.get("REDIS_URL")
class Limiter:
    def share(self):
        return os.environ["RATE_LIMIT_REPLICAS"]
def tiers_path():
    return os.getenv("TIERS_FILE")
'''
    assert environment_reads(source) == [(3, ""), (9, "Limiter"), (11, "")]


def test_library_reads_environment_only_in_settings_classes() -> None:
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{line} (in {owner or 'module scope'})"
        for directory in LIBRARY_DIRS
        for path in sorted((REPO_ROOT / directory).rglob("*.py"))
        if path.relative_to(REPO_ROOT) != SHARED_HELPER
        for line, owner in environment_reads(path.read_text())
    ]
    assert not offenders, ("read the variable in a settings class and pass the value in: "
                           + ", ".join(offenders))
