"""A fixed piece of host work, timed at a replay's start, before each case set and at its end: the host's speed.

On a shared or virtual machine the host's speed moves within a run: on the lent H200 the reference's p50 went from
2.9 to 5.9 ms between two case sets of one replay, and host-bound latencies (a `triton` call at 4K: 79-88 us in
fast stretches, 102-114 us in slow ones) move with it. The probe lets a reader tell a slow host from slow code:
the results carry its p50 at each point, and the Markdown summary says when they are far apart.
"""

from __future__ import annotations

import statistics
import time

PROBE_REPS = 15
SPREAD_WARNING = 1.25  # max / min of a run's probes above which the summary warns


def _work() -> int:
    """Interpreter work of the kind a post-processing call's host path does (dict lookups, small tuples, integer
    arithmetic); about 40 us on a current server core."""
    table = {i: (i, i + 1) for i in range(256)}
    total = 0
    for _ in range(6):
        for i in range(256):
            low, high = table[i]
            total += low * high
    return total


def host_probe_ns(reps: int = PROBE_REPS) -> int:
    """Median ns of `reps` timed runs of the fixed work, after one untimed run (its code and data warm: a slow
    host, not a cold cache, is what it is meant to show)."""
    _work()
    times = []
    for _ in range(reps):
        start = time.perf_counter_ns()
        _work()
        times.append(time.perf_counter_ns() - start)
    return int(statistics.median(times))


def _values(points: list[dict]) -> list[int]:
    return [p["p50_ns"] for p in points if p.get("p50_ns")]


def probe_spread(points: list[dict]) -> float | None:
    """max / min of the probes' p50s (1.0: the host kept its speed); None with fewer than two points."""
    values = _values(points)
    if len(values) < 2:
        return None
    return max(values) / min(values)


def moved_by(points: list[dict]) -> float | None:
    """The probes' spread where it is past SPREAD_WARNING (the host's speed moved during the run), else None: the
    one test behind every warning about it (summary, report, terminal, compare)."""
    spread = probe_spread(points)
    return spread if spread is not None and spread > SPREAD_WARNING else None


def probe_median(points: list[dict]) -> float | None:
    """The median of a run's probe p50s (its host's speed, to hold against another run's); None without any."""
    values = _values(points)
    return float(statistics.median(values)) if values else None


def apart(first: float | None, second: float | None) -> bool:
    """Whether two runs' probe medians are more than SPREAD_WARNING apart (False where either is missing)."""
    return bool(first and second) and max(first, second) > SPREAD_WARNING * min(first, second)
