"""Summary of a synthesized cloud assembly: stacks per environment with resource counts, the Lambda
concurrency quota the environments need, and every cdk-nag acknowledgment with its reason (read
from ``validation-report.json``).

``python -m tools.synth_summary cdk.out`` prints it after ``make synth``; it exits non-zero when
the assembly holds no stacks or the validation report records a failed gate.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stacks.config import LAMBDA_UNRESERVED_MINIMUM


@dataclass(frozen=True)
class StackSummary:
    environment: str
    stack: str
    resources: int


@dataclass(frozen=True)
class Acknowledgment:
    finding: str
    construct: str
    reason: str




def _templates(outdir: Path) -> dict[str, dict]:
    manifest = json.loads((outdir / "manifest.json").read_text())
    return {name: json.loads((outdir / artifact["properties"]["templateFile"]).read_text())
            for name, artifact in manifest["artifacts"].items() if artifact["type"] == "aws:cloudformation:stack"}


def _environment(stack_name: str) -> str:
    """``saas-prod-data`` → ``prod``; ``saas-shared-account`` → ``shared``."""
    return stack_name.split("-")[1] if stack_name.count("-") >= 2 else "?"


def stack_summaries(outdir: Path) -> list[StackSummary]:
    """Every CloudFormation stack in the assembly's manifest, ordered by environment then name."""
    rows = []
    for name, template in _templates(outdir).items():
        rows.append(StackSummary(_environment(name), name, len(template.get("Resources", {}))))
    return sorted(rows, key=lambda row: (row.environment, row.stack))


def reserved_concurrency(outdir: Path) -> dict[str, int]:
    """Reserved concurrency summed over every Lambda function of each environment."""
    totals: dict[str, int] = {}
    for name, template in _templates(outdir).items():
        environment = _environment(name)
        reserved = sum(int(resource["Properties"].get("ReservedConcurrentExecutions", 0))
                       for resource in template.get("Resources", {}).values()
                       if resource["Type"] == "AWS::Lambda::Function")
        totals[environment] = totals.get(environment, 0) + reserved
    return {environment: total for environment, total in totals.items() if total}


def concurrency_quota_lines(reserved: dict[str, int]) -> list[str]:
    """What the account's Lambda concurrency quota must be, for one account and for one per environment."""
    if not reserved:
        return []
    per_env = ", ".join(f"{env} {total}" for env, total in sorted(reserved.items()))
    lines = [f"Lambda reserved concurrency: {per_env} (Lambda keeps {LAMBDA_UNRESERVED_MINIMUM} unreserved)."]
    lines += [f"  account quota needed with {env} alone in its account: >= {total + LAMBDA_UNRESERVED_MINIMUM}"
              for env, total in sorted(reserved.items())]
    if len(reserved) > 1:
        lines.append(f"  account quota needed with all environments in one account: "
                     f">= {sum(reserved.values()) + LAMBDA_UNRESERVED_MINIMUM}")
    lines.append("  `make preflight ENV=<env>` compares it with the account's quota "
                 "(Service Quotas: Lambda 'Concurrent executions', L-B99A9384).")
    return lines


def _report(outdir: Path) -> dict:
    path = outdir / "validation-report.json"
    return json.loads(path.read_text()) if path.exists() else {"pluginReports": []}


def failed_gates(outdir: Path) -> list[str]:
    """Plugins whose conclusion was not success (cdk-nag, built-in validation)."""
    return [p["pluginName"] for p in _report(outdir)["pluginReports"] if p["conclusion"] != "success"]


def acknowledgments(outdir: Path) -> list[Acknowledgment]:
    """Each suppressed finding, once per construct it was acknowledged on."""
    return [Acknowledgment(item["acknowledgedId"], item["acknowledgedAt"], item["reason"])
            for plugin in _report(outdir)["pluginReports"]
            for item in plugin.get("suppressedViolations", [])]


def main(argv: list[str]) -> int:
    outdir = Path(argv[1] if len(argv) > 1 else "cdk.out")
    console = Console(emoji=False, highlight=False)
    stacks = stack_summaries(outdir)
    table = Table(title=f"Synthesized stacks in {outdir}")
    for column in ("environment", "stack", "resources"):
        table.add_column(column, justify="right" if column == "resources" else "left")
    for row in stacks:
        table.add_row(row.environment, row.stack, str(row.resources))
    console.print(table)
    for line in concurrency_quota_lines(reserved_concurrency(outdir)):
        console.print(escape(line))
    acks = acknowledgments(outdir)
    distinct = sorted({(a.finding, a.reason) for a in acks})
    console.print(f"{len(acks)} acknowledged findings ({len(distinct)} distinct finding/reason pairs):")
    for finding, reason in distinct:
        console.print(f"  [bold]{escape(finding)}[/bold]: {escape(reason)}")
    failed = failed_gates(outdir)
    if not stacks or failed:
        console.print(f"[red]gate failed: {', '.join(failed) or 'no stacks synthesized'}[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
