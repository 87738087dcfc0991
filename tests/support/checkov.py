"""checkov from its own virtualenv (the Makefile's build/checkov, installed by `make test`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKOV = REPO_ROOT / "build" / "checkov" / "bin" / "checkov"


def run_checkov(*target: str, framework: str) -> dict:
    """checkov's JSON report of ``framework`` over ``target`` (``--file F`` or ``--directory D``), offline."""
    if not CHECKOV.exists():
        raise RuntimeError(f"{CHECKOV} is missing: run `make build/checkov/bin/checkov` (or `make test`)")
    result = subprocess.run([str(CHECKOV), *target, "--framework", framework, "--output", "json", "--skip-download",
                             "--quiet"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"checkov failed ({result.returncode}): {result.stderr[-2000:]}")
    report = json.loads(result.stdout) if result.stdout.strip() else {}
    return report[0] if isinstance(report, list) else report
