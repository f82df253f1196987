"""Latency statistics: summaries, confidence intervals, speed-ups, and a Mann-Whitney U test.

Everything is numpy only (scipy is a test dependency); percentiles use numpy's default linear
interpolation, stdev is the sample standard deviation (ddof=1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "P99_RELIABLE_MIN",
    "bootstrap_ratio_ci",
    "geomean_ratio",
    "is_significant",
    "mann_whitney_u",
    "median_ci",
    "summarize",
]

# p99 needs a few hundred samples before its estimate stops being the max of a handful of values.
P99_RELIABLE_MIN = 300


def summarize(samples: Sequence[float] | np.ndarray) -> dict | None:
    """count, mean, stdev, min, p50, p90, p99, max, iqr (ns, floats) and p99_reliable; None without samples."""
    x = np.asarray([v for v in samples if v is not None], dtype=np.float64)
    if x.size == 0:
        return None
    p25, p50, p75, p90, p99 = np.percentile(x, [25, 50, 75, 90, 99])
    return {
        "count": int(x.size),
        "mean": float(x.mean()),
        "stdev": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "min": float(x.min()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(x.max()),
        "iqr": float(p75 - p25),
        "p99_reliable": bool(x.size >= P99_RELIABLE_MIN),
    }


def median_ci(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free CI of the median from binomial order statistics (normal approximation of the ranks).

    Used for noise-based stopping (--target-ci); None with fewer than 2 samples.
    """
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    if n < 2:
        return None
    z = _z_two_sided(confidence)
    half = z * math.sqrt(n) / 2.0
    lo = max(math.floor(n / 2.0 - half), 0)
    hi = min(math.ceil(n / 2.0 + half), n - 1)
    return float(x[lo]), float(x[hi])


def _z_two_sided(confidence: float) -> float:
    """Normal quantile for a two-sided interval, by bisection on erf (no scipy)."""
    target = confidence
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if math.erf(mid / math.sqrt(2)) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _bootstrap_medians(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of `resamples` bootstrap resamples of x, in chunks to bound memory."""
    out = np.empty(resamples, dtype=np.float64)
    chunk = max(1, 2_000_000 // max(x.size, 1))
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = np.median(x[idx], axis=1)
    return out


def bootstrap_ratio_ci(
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Speed-up median(baseline) / median(candidate) and its percentile-bootstrap CI: (ratio, lo, hi).

    The two sample sets are resampled independently (they are different implementations' calls).
    """
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("bootstrap_ratio_ci needs samples on both sides")
    rng = np.random.default_rng(seed)
    ratios = _bootstrap_medians(a, resamples, rng) / _bootstrap_medians(b, resamples, rng)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(ratios, [tail, 100.0 - tail])
    return float(np.median(a) / np.median(b)), float(lo), float(hi)


def geomean_ratio(baseline_medians: Sequence[float], candidate_medians: Sequence[float]) -> float | None:
    """Geometric mean over cases of baseline / candidate per-case medians (cases missing on a side skipped)."""
    logs = [
        math.log(a / b)
        for a, b in zip(baseline_medians, candidate_medians, strict=True)
        if a is not None and b is not None and a > 0 and b > 0
    ]
    return math.exp(sum(logs) / len(logs)) if logs else None


def _average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks with ties given their average rank, and the sizes of the tie groups."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    boundaries = np.flatnonzero(np.diff(sorted_vals) != 0) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [values.size]])
    ranks_sorted = np.empty(values.size, dtype=np.float64)
    for s, e in zip(starts, ends, strict=True):
        ranks_sorted[s:e] = (s + 1 + e) / 2.0
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    return ranks, (ends - starts).astype(np.float64)


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test, normal approximation with tie and continuity correction.

    Returns (U of x, p-value); matches scipy.stats.mannwhitneyu(x, y, method="asymptotic").
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_u needs samples on both sides")
    ranks, ties = _average_ranks(np.concatenate([a, b]))
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    u2 = n1 * n2 - u1
    n = n1 + n2
    mu = n1 * n2 / 2.0
    tie_term = float((ties**3 - ties).sum()) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if var <= 0:
        return u1, 1.0
    z = (max(u1, u2) - mu - 0.5) / math.sqrt(var)
    p = math.erfc(z / math.sqrt(2.0))  # 2 * normal survival function at z
    return u1, float(min(max(p, 0.0), 1.0))


def is_significant(p_value: float | None, ratio: float, min_effect: float, alpha: float = 0.05) -> bool:
    """A difference counts only with p < alpha and a speed-up ratio away from 1 by more than min_effect."""
    if p_value is None or not math.isfinite(ratio) or ratio <= 0:
        return False
    return p_value < alpha and abs(ratio - 1.0) > min_effect
