"""Benchmark: our one-round-trip limiter vs the `limits` library, same Redis, same run.

Each contender makes the calls a service needs to answer one request *with* RateLimit header
values: ours is one FCALL (decision, remaining, reset, quota); `limits` needs ``hit()`` plus
``get_window_stats()``. Round trips are counted on the wire (replies read per decision), not
assumed. Figures: decisions/s on one synchronous client, p50/p99 latency per decision, median of
``--runs`` runs after a warm-up; within a run the contenders take turns in short blocks, so
background load on a shared machine hits them alike. This prints figures; it is not a timed test.

    .venv/bin/python bench/ratelimit.py [--redis-url redis://127.0.0.1:6379/0] [--keys 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import redis
from redis.utils import HIREDIS_AVAILABLE
from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tenant_provisioner.limits import RateLimiter  # noqa: E402
from tenant_provisioner.tiers import Quota, Tier  # noqa: E402


class CountingConnection(redis.Connection):
    """Counts replies read: one per round trip for unpipelined commands."""

    replies = 0

    def read_response(self, *args, **kwargs):  # type: ignore[override]
        CountingConnection.replies += 1
        return super().read_response(*args, **kwargs)


def _pool(url: str) -> redis.ConnectionPool:
    return redis.ConnectionPool.from_url(url, connection_class=CountingConnection)


class Tally:
    """One contender's decisions in one run, gathered over many short blocks."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.latencies: list[int] = []
        self.replies = 0

    def block(self, decide: Callable[[str], object], keys: list[str], first: int, n: int) -> None:
        before = CountingConnection.replies
        start = time.perf_counter()
        for i in range(first, first + n):
            t0 = time.perf_counter_ns()
            decide(keys[i % len(keys)])
            self.latencies.append(time.perf_counter_ns() - t0)
        self.elapsed += time.perf_counter() - start
        self.replies += CountingConnection.replies - before

    def figures(self) -> tuple[float, float, float, float]:
        """(decisions/s, p50 ms, p99 ms, round trips per decision)."""
        n = len(self.latencies)
        ordered = sorted(self.latencies)
        return n / self.elapsed, ordered[n // 2] / 1e6, ordered[int(n * 0.99)] / 1e6, self.replies / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--keys", type=int, default=100, help="tenants (keys) the load is spread over")
    parser.add_argument("--decisions", type=int, default=5000, help="decisions per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--block", type=int, default=250, help="decisions per contender before rotating")
    args = parser.parse_args()

    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    # `limits`' own benchmark parameters: 500/minute per key.
    item = RateLimitItemPerMinute(500)
    tier = Tier(name="bench", display_name="Bench", price_usd_per_month=0, rate_per_second=500 / 60, burst=500,
                api_requests=Quota(included=10**12, hard_limit=10**12, overage_usd_per_1000=None),
                storage_gb=1, seats=1, db_connections=1)
    ours = RateLimiter(redis.Redis(connection_pool=_pool(args.redis_url)), key_prefix=prefix)
    ours.load()
    storage = RedisStorage(args.redis_url, connection_pool=_pool(args.redis_url), key_prefix=prefix + "limits")
    moving, sliding = MovingWindowRateLimiter(storage), SlidingWindowCounterRateLimiter(storage)

    def with_stats(strategy):
        def decide(key: str) -> object:
            allowed = strategy.hit(item, key)
            stats = strategy.get_window_stats(item, key)  # remaining + reset for the headers
            return allowed, stats
        return decide

    contenders = {
        "ours (FCALL tp_acquire, headers included)": lambda key: ours.acquire(key, tier).headers,
        "limits 5.8 moving window + window stats": with_stats(moving),
        "limits 5.8 sliding-window counter + window stats": with_stats(sliding),
    }
    keys = [f"tenant-{i:06d}" for i in range(args.keys)]
    parser_name = "hiredis" if HIREDIS_AVAILABLE else "pure-Python (pip install hiredis for production figures)"
    print(f"redis {args.redis_url}  keys={args.keys}  decisions/run={args.decisions}  runs={args.runs} "
          f"(median reported)  one synchronous client, loopback, reply parser: {parser_name}")
    runs: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in contenders}
    for decide in contenders.values():
        Tally().block(decide, keys, 0, min(2000, args.decisions))  # warm-up: scripts loaded, keys created
    for _ in range(args.runs):
        tallies = {name: Tally() for name in contenders}
        # Short blocks in rotation, so load from other processes hits every contender alike.
        for first in range(0, args.decisions, args.block):
            for name, decide in contenders.items():
                tallies[name].block(decide, keys, first, min(args.block, args.decisions - first))
        for name, tally in tallies.items():
            runs[name].append(tally.figures())
    results = {name: tuple(statistics.median(r[i] for r in rs) for i in range(4)) for name, rs in runs.items()}
    print(f"{'contender':52} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'round trips':>12}")
    for name, (rate, p50, p99, trips) in results.items():
        print(f"{name:52} {rate:12.0f} {p50:8.3f} {p99:8.3f} {trips:12.2f}")
    ours_rate = results["ours (FCALL tp_acquire, headers included)"][0]
    sliding_rate = results["limits 5.8 sliding-window counter + window stats"][0]
    print(f"ours / limits sliding window: {ours_rate / sliding_rate:.2f}x (target >= 1.5x); "
          f"ours p99 {results['ours (FCALL tp_acquire, headers included)'][2]:.3f} ms (target < 1 ms)")
    cleanup = redis.Redis.from_url(args.redis_url)
    for key in cleanup.scan_iter(match=f"{prefix}*", count=1000):
        cleanup.delete(key)


if __name__ == "__main__":
    main()
