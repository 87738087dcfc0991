"""The reviewed allow-lists of the security scans: every entry says why and expires.

``security/trivyignore.yaml`` (image scan; trivy reads it as its ignore file) and
``security/pip-audit-allowlist.yaml`` (Python dependencies) share one shape::

    vulnerabilities:
      - id: CVE-2026-12345
        statement: why it does not apply here, or which upstream fix we wait for
        expired_at: 2027-01-31

``python -m tools.allowlist`` checks both (an entry without a reason, or expired, or more than
MAX_DAYS ahead fails); ``python -m tools.allowlist --pip-audit-args`` prints the
``--ignore-vuln`` arguments of the Python list for the gates workflow.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
ALLOWLISTS = (REPO_ROOT / "security" / "trivyignore.yaml", REPO_ROOT / "security" / "pip-audit-allowlist.yaml")
PIP_AUDIT = ALLOWLISTS[1]
MAX_DAYS = 90
MIN_STATEMENT = 20


@dataclass(frozen=True)
class Entry:
    id: str
    statement: str
    expired_at: dt.date


def load(path: Path) -> list[Entry]:
    data = yaml.safe_load(path.read_text()) or {}
    entries = []
    for raw in data.get("vulnerabilities") or []:
        expiry = raw.get("expired_at")
        entries.append(Entry(id=str(raw.get("id", "")), statement=str(raw.get("statement", "")).strip(),
                             expired_at=expiry if isinstance(expiry, dt.date) else dt.date.min))
    return entries


def problems(path: Path, today: dt.date) -> list[str]:
    """Why an allow-list cannot be trusted: entries without an id, a reason or a valid expiry."""
    found = []
    for entry in load(path):
        where = f"{path.name}: {entry.id or '<no id>'}"
        if not entry.id:
            found.append(f"{where}: no id")
        if len(entry.statement) < MIN_STATEMENT:
            found.append(f"{where}: the statement must say why it is accepted (at least {MIN_STATEMENT} characters)")
        if entry.expired_at < today:
            found.append(f"{where}: expired on {entry.expired_at} (or no expired_at): fix it or review it again")
        elif entry.expired_at > today + dt.timedelta(days=MAX_DAYS):
            found.append(f"{where}: expires more than {MAX_DAYS} days ahead ({entry.expired_at})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.allowlist", description=__doc__.split("\n")[0])
    parser.add_argument("--pip-audit-args", action="store_true", help="print pip-audit's --ignore-vuln arguments")
    args = parser.parse_args(argv)
    found = [problem for path in ALLOWLISTS for problem in problems(path, dt.date.today())]
    if found:
        print("\n".join(found), file=sys.stderr)
        return 1
    if args.pip_audit_args:
        print(" ".join(f"--ignore-vuln {entry.id}" for entry in load(PIP_AUDIT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
