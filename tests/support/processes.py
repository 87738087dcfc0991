"""Waiting for a process we started (the API, the worker, a benchmark's server) to serve HTTP."""

from __future__ import annotations

import subprocess
import time

from tenant_provisioner.drills.interruption import http_status


class NotReady(RuntimeError):
    """The process exited, or did not answer 200, before the deadline; the message says which."""


def wait_until_ready(url: str, process: subprocess.Popen, *, what: str, seconds: float = 60.0,
                     see: str = "") -> None:
    """Poll ``url`` until it answers 200. Raise :class:`NotReady` as soon as ``process`` exits, or
    when ``seconds`` pass; the message ends with the tail of the process's output when it is piped
    (the process is killed to read it), else with ``see`` (where its log is)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NotReady(f"the {what} exited with {process.returncode} before {url} answered 200"
                           f"{_output_or(process, see)}")
        if http_status(url, timeout=1.0) == 200:
            return
        time.sleep(0.1)
    raise NotReady(f"the {what} did not answer 200 at {url} within {seconds:.0f} s{_output_or(process, see)}")


def _output_or(process: subprocess.Popen, see: str) -> str:
    if process.stdout is None:
        return f"; see {see}" if see else ""
    process.kill()
    output = process.communicate(timeout=10)[0]
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    return f"; its output ends:\n{text[-3000:]}"
