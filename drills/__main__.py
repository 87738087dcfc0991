"""``python -m drills [--short] [NAME ...]`` (``make drills``): the local failure drills.

Each drill gets a fresh throwaway platform on 127.0.0.1 (its own PostgreSQL 16.13 and Redis, the
reference API — and the worker where needed — as processes, a locust load), breaks one thing,
prints what it measured and checks its invariants. Exit code 0 when every invariant held and no
data was lost, 1 otherwise, 2 on bad arguments. ``--short`` is the version the tests run.

SIGTERM or SIGINT (a cancelled CI job, Ctrl-C) stops the running drill: its API, worker and locust
processes and its servers are stopped, then the process ends as that signal would have ended it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from drills.platform import FULL, SHORT, Platform
from drills.scenarios import DRILLS, DrillResult


def render(result: DrillResult) -> str:
    f = result.figures
    if f.get("failed") or "readyz" not in f:
        timing = (f"time to detect {_s(f.get('time_to_detect_s'))} · time to recover {_s(f.get('time_to_recover_s'))}"
                  f" · client-visible interruption {_s(f.get('interruption_s'))}")
    else:   # clients saw nothing: the figures are readiness's (what an orchestrator sees)
        ready = f["readyz"]
        timing = (f"no client request failed; /readyz: time to detect {_s(ready.get('time_to_detect_s'))} · "
                  f"time to recover {_s(ready.get('time_to_recover_s'))}")
    clients = f.get("clients_recovered_after_return_s")
    timing += (f" · tenant requests normal again "
               f"{'n/a' if clients is None else f'{clients:.0f} s'} after the dependency returned")
    lines = [f"== {result.name}: {result.what}", f"   {timing}",
             f"   requests after the fault {f.get('requests', 0)}, failed {f.get('failed', 0)} by status "
             f"{json.dumps(f.get('failed_by_status', {}))}; all responses {json.dumps(f.get('responses_by_status', {}))}",
             f"   data lost: {result.data_lost}" + (f" ({', '.join(f['lost'])})" if f.get("lost") else "")]
    for extra in ("readyz", "job", "usage"):
        if extra in f:
            lines.append(f"   {extra}: {json.dumps(f[extra])}")
    for name, passed, detail in result.invariants:
        lines.append(f"   [{'ok' if passed else 'BROKEN'}] {name}: {detail}")
    lines.append(f"   => {'PASS' if result.ok else 'FAIL'}")
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


class Stopped(BaseException):
    """SIGTERM/SIGINT arrived: raised where the drills are, so every :class:`Platform` on the way out
    stops what it started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _stop(signum: int, frame: object) -> None:
    for each in STOP_SIGNALS:   # a repeated signal must not cut the clean-up short
        signal.signal(each, signal.SIG_IGN)
    raise Stopped(signum)


def run(argv: list[str] | None = None) -> int:
    """:func:`main` as a program: on SIGTERM/SIGINT, clean up, then die of that signal."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)
    try:
        return main(argv)
    except Stopped as stopped:
        print(f"drills stopped by {stopped}; every process they started is stopped", file=sys.stderr, flush=True)
        signal.signal(stopped.signum, signal.SIG_DFL)
        os.kill(os.getpid(), stopped.signum)
        raise   # not reached: the signal ends the process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"drills to run (default all): {', '.join(DRILLS)}")
    parser.add_argument("--short", action="store_true", help="10 users and seconds-long phases (tests)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(DRILLS))
    if unknown:
        parser.error(f"unknown drill(s) {', '.join(unknown)}; choose from {', '.join(DRILLS)}")
    timing = SHORT if args.short else FULL
    results: list[DrillResult] = []
    started = time.monotonic()
    for name in args.names or list(DRILLS):
        with Platform(timing, billing=name == "stripe") as platform:
            result = DRILLS[name](platform)
        results.append(result)
        print(render(result), flush=True)
    print(f"{sum(r.ok for r in results)}/{len(results)} drills passed in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([{"name": r.name, "what": r.what, "ok": r.ok, "data_lost": r.data_lost,
                                          "figures": r.figures, "invariants": r.invariants} for r in results],
                                        indent=2, default=str))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(run())
