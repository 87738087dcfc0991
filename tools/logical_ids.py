"""Would a deploy replace resources? Compare CloudFormation logical ids (and types) of every stack
between a git revision and the working tree — the part of ``cdk diff`` that needs no AWS account.

``python -m tools.logical_ids --base REF`` (``make logical-ids BASE=REF``) exports REF with
``git archive``, synthesizes it and the working tree offline (every environment, bundling
skipped: logical ids do not depend on asset contents), and prints per stack the ids added,
removed or whose resource type changed. Exit 1 when any stack differs or a stack appeared or
vanished, 0 when every stack keeps exactly its resources.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ACCOUNT, REGION = "111111111111", "us-east-1"   # the Makefile's offline placeholders
# Runs inside the tree being synthesized, with that tree's own app.py and stacks/.
_SYNTH = """
import sys, aws_cdk as cdk, app
context = {**app.project_context(), "aws:cdk:bundling-stacks": [], "env": "all",
           "account": sys.argv[2], "region": sys.argv[3]}
app.build_app(cdk.App(outdir=sys.argv[1], context=context)).synth()
"""
_CREDENTIALS = ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION")

Resources = dict[str, dict[str, str]]   # stack name → logical id → resource type


@dataclass(frozen=True)
class StackDiff:
    stack: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    retyped: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.retyped)


def resources(outdir: Path) -> Resources:
    """Logical id → type for every stack of a cloud assembly (nested stage assemblies included)."""
    found: Resources = {}
    for template in sorted(outdir.rglob("*.template.json")):
        body = json.loads(template.read_text())
        found[template.name.removesuffix(".template.json")] = {
            logical_id: resource["Type"] for logical_id, resource in body.get("Resources", {}).items()}
    return found


def compare(before: Resources, after: Resources) -> list[StackDiff]:
    """One entry per stack of either side; a stack missing on one side counts as all added/removed."""
    diffs = []
    for stack in sorted(before.keys() | after.keys()):
        old, new = before.get(stack, {}), after.get(stack, {})
        diffs.append(StackDiff(
            stack=stack, added=tuple(sorted(new.keys() - old.keys())), removed=tuple(sorted(old.keys() - new.keys())),
            retyped=tuple(sorted(i for i in old.keys() & new.keys() if old[i] != new[i]))))
    return diffs


def synthesize(tree: Path, outdir: Path) -> Resources:
    """Synthesize `tree` (a checkout) offline into `outdir` with this interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in _CREDENTIALS}
    env |= {"AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([sys.executable, "-c", _SYNTH, str(outdir), ACCOUNT, REGION], cwd=tree, env=env, check=True)
    return resources(outdir)


def export_revision(ref: str, target: Path) -> Path:
    """The files of git revision `ref` under `target` (no worktree, no checkout of this repo)."""
    archive = target / "base.tar"
    subprocess.run(["git", "-C", str(REPO_ROOT), "archive", "--format=tar", "-o", str(archive), ref], check=True)
    tree = target / "base"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def report(diffs: list[StackDiff]) -> str:
    lines = []
    for diff in diffs:
        status = "CHANGED" if diff.changed else "same"
        lines.append(f"{status:8} {diff.stack}")
        for label, ids in (("added", diff.added), ("removed", diff.removed), ("type changed", diff.retyped)):
            lines.extend(f"         {label}: {logical_id}" for logical_id in ids)
    changed = sum(d.changed for d in diffs)
    lines.append(f"{len(diffs)} stacks, {changed} with changed logical ids")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.logical_ids", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="git revision to compare the working tree with")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="logical-ids-") as scratch:
        work = Path(scratch)
        before = synthesize(export_revision(args.base, work), work / "base.out")
        after = synthesize(REPO_ROOT, work / "head.out")
    if not before or not after:
        print("no stacks synthesized", file=sys.stderr)
        return 1
    diffs = compare(before, after)
    print(report(diffs))
    return 1 if any(d.changed for d in diffs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
