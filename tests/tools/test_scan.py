"""`make scan`: checkov runs offline, without calling its vendor's API."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_scan_never_downloads_from_checkovs_vendor(tmp_path):
    """Offline, checkov's guideline download printed a long network traceback before the summary."""
    (tmp_path / "manifest.json").write_text("{}")  # a synthesized cdk.out: no synth needed
    planned = subprocess.run(["make", "-n", "scan", f"CDK_OUT={tmp_path}", "CHECKOV=/bin/true"], cwd=REPO,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    (command,) = [line for line in planned.splitlines() if line.startswith("/bin/true --directory")]
    assert "--skip-download" in command.split()
