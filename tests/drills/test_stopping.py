"""`python -m drills` stopped by SIGTERM (a cancelled CI job) or SIGINT (Ctrl-C) leaves no process behind: the API, the
worker, locust and the servers it started all end, and it dies of the signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a live process, None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in "ZX" else (int(fields[1]), fields[0], int(fields[19]))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _descendants(root: int) -> dict[tuple[int, int], str]:
    """Every live process below ``root``: (pid, start time) -> its command line."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[2]
    found, todo = {}, [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found[(child, starts[child])] = _cmdline(child)
            todo.append(child)
    return found


def _alive(pid: int, start: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == start


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_every_process_the_drills_started(signum, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    log = tmp_path / "drills.log"
    with log.open("wb") as out:
        drills = subprocess.Popen([sys.executable, "-m", "drills", "--short", "redis"], cwd=REPO_ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        children: dict[tuple[int, int], str] = {}
        while not any("locust" in command for command in children.values()):   # the API is up, the load runs
            assert drills.poll() is None, f"the drill ended before its load started:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no locust within 120 s:\n{log.read_text()}"
            time.sleep(0.2)
            children = _descendants(drills.pid)
        assert any("services.api" in command for command in children.values())
        drills.send_signal(signum)
        assert drills.wait(timeout=30) == -signum, log.read_text()
        deadline = time.monotonic() + 10   # orphans are reaped by init a moment later
        while (survivors := [command for (pid, start), command in children.items() if _alive(pid, start)]) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not survivors, f"still running after {signum.name}: {survivors}"
        assert f"drills stopped by {signum.name}" in log.read_text()
    finally:
        if drills.poll() is None:
            drills.kill()
            drills.wait()
        for pid, start in _descendants(drills.pid) | children:   # never leave them to the next test
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
