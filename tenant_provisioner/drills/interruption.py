"""What clients saw while something failed: a probe that keeps calling the API, and the figures
every drill prints from its samples — time to detect, client-visible interruption, time to
recover, requests failed by status.

Shared by the cloud failover drills (``drills/failover.py``) and the local chaos drills
(``drills/chaos``), so a figure means the same everywhere.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

OK_STATUSES = range(200, 400)


@dataclass(frozen=True)
class Sample:
    at: float            # time.monotonic() when the request was sent
    status: int | str    # HTTP status, or the error class when no response came ("timeout", "refused")
    path: str = ""

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and self.status in OK_STATUSES


@dataclass(frozen=True)
class Interruption:
    """Figures of one fault, in seconds relative to the moment it was injected."""

    requests: int
    failed_by_status: dict[str, int]
    time_to_detect: float | None        # fault -> first failed request (None: clients never noticed)
    interruption: float | None          # first failed -> last failed request (what clients lived through)
    time_to_recover: float | None       # fault -> first request of the final unbroken run of successes

    @property
    def failed(self) -> int:
        return sum(self.failed_by_status.values())

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "failed": self.failed, "failed_by_status": self.failed_by_status,
                "time_to_detect_s": _round(self.time_to_detect), "interruption_s": _round(self.interruption),
                "time_to_recover_s": _round(self.time_to_recover)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def measure(samples: Iterable[Sample], fault_at: float, *, counts_as_failure: Callable[[Sample], bool] | None = None,
            ) -> Interruption:
    """The figures of ``samples`` for a fault injected at ``fault_at`` (monotonic seconds).

    ``counts_as_failure`` decides what a client would call broken (default: no 2xx/3xx answer);
    a drill may count an intended answer such as a 503 from ``/readyz`` separately.
    """
    broken = counts_as_failure or (lambda sample: not sample.ok)
    ordered = sorted(samples, key=lambda s: s.at)
    after = [s for s in ordered if s.at >= fault_at]
    failures = [s for s in after if broken(s)]
    by_status = Counter(str(s.status) for s in failures)
    if not failures:
        return Interruption(requests=len(after), failed_by_status={}, time_to_detect=None, interruption=None,
                            time_to_recover=None)
    last_failure = failures[-1].at
    recovered = next((s.at for s in after if s.at > last_failure and not broken(s)), None)
    return Interruption(
        requests=len(after), failed_by_status=dict(sorted(by_status.items())),
        time_to_detect=failures[0].at - fault_at, interruption=last_failure - failures[0].at,
        time_to_recover=None if recovered is None else recovered - fault_at)


@dataclass
class Probe:
    """Calls ``base_url + path`` for each path in turn from ``workers`` threads, every ``interval``
    seconds each, until stopped; every answer (or the lack of one) becomes a :class:`Sample`."""

    base_url: str
    paths: tuple[str, ...] = ("/readyz",)
    headers: Mapping[str, str] = field(default_factory=dict)
    workers: int = 2
    interval: float = 0.1
    timeout: float = 2.0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "Probe":
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True, name=f"probe-{i}")
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 1)

    def healthy_for(self, seconds: float) -> bool:
        """True when every sample of the last ``seconds`` succeeded (and there were some)."""
        since = time.monotonic() - seconds
        with self._lock:
            recent = [s for s in self.samples if s.at >= since]
        return bool(recent) and all(s.ok for s in recent)

    def _loop(self, index: int) -> None:
        turn = index
        while not self._stop.is_set():
            path = self.paths[turn % len(self.paths)]
            turn += 1
            sample = Sample(at=time.monotonic(), status=self._call(path), path=path)
            with self._lock:
                self.samples.append(sample)
            self._stop.wait(self.interval)

    def _call(self, path: str) -> int | str:
        return http_status(self.base_url.rstrip("/") + path, headers=self.headers, timeout=self.timeout)


def http_status(url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 2.0) -> int | str:
    """The HTTP status of a GET of ``url``, or the error class when no answer came ("timeout", ...)."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:   # noqa: S310 - operator-given URL
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code
    except TimeoutError:
        return "timeout"
    except urllib.error.URLError as exc:
        return "timeout" if isinstance(exc.reason, TimeoutError) else type(exc.reason).__name__
    except OSError as exc:
        return type(exc).__name__
