"""replay.stats against numpy and scipy on known samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from replay.stats import (
    P99_RELIABLE_MIN,
    bootstrap_ratio_ci,
    geomean_ratio,
    is_significant,
    mann_whitney_u,
    median_ci,
    summarize,
)

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("size", [1, 2, 7, 100, 1000])
@pytest.mark.parametrize("dist", ["normal", "lognormal", "ties"])
def test_summarize_matches_numpy(size: int, dist: str, rng: np.random.Generator) -> None:
    x = {
        "normal": lambda: rng.normal(1e5, 1e3, size),
        "lognormal": lambda: rng.lognormal(11, 0.5, size),
        "ties": lambda: rng.integers(1, 4, size).astype(float) * 1000,
    }[dist]()
    s = summarize(x)
    assert s is not None
    assert s["count"] == size
    # Same float64 formulas as numpy; rtol only absorbs summation-order rounding.
    np.testing.assert_allclose(s["mean"], x.mean(), rtol=1e-12)
    np.testing.assert_allclose(s["stdev"], x.std(ddof=1) if size > 1 else 0.0, rtol=1e-12)
    assert s["min"] == x.min() and s["max"] == x.max()
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        np.testing.assert_allclose(s[key], np.percentile(x, q), rtol=1e-12)
    np.testing.assert_allclose(s["iqr"], np.percentile(x, 75) - np.percentile(x, 25), rtol=1e-12, atol=1e-9)
    assert s["p99_reliable"] == (size >= P99_RELIABLE_MIN)


def test_summarize_known_values_and_empty() -> None:
    s = summarize([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert s is not None
    assert (s["mean"], s["min"], s["max"], s["p50"]) == (5.5, 1.0, 10.0, 5.5)
    assert s["p90"] == pytest.approx(9.1)  # numpy linear interpolation: 1 + 0.9 * 9
    assert s["stdev"] == pytest.approx(math.sqrt(55 / 6))
    assert summarize([]) is None
    assert summarize([None, None]) is None


@pytest.mark.parametrize(
    ("n1", "n2", "kind"),
    [(3, 3, "distinct"), (5, 8, "distinct"), (7, 9, "ties"), (20, 20, "ties"), (30, 12, "shifted"), (4, 4, "equal")],
)
def test_mann_whitney_matches_scipy(n1: int, n2: int, kind: str, rng: np.random.Generator) -> None:
    if kind == "distinct":
        x, y = rng.normal(0, 1, n1), rng.normal(0.5, 1, n2)
    elif kind == "ties":
        x, y = rng.integers(0, 4, n1).astype(float), rng.integers(1, 5, n2).astype(float)
    elif kind == "shifted":
        x, y = rng.normal(0, 1, n1), rng.normal(3, 1, n2)
    else:
        x = y = np.full(n1, 2.0)
    u, p = mann_whitney_u(x, y)
    ref = scipy_stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic")
    assert u == pytest.approx(float(ref.statistic), abs=1e-9)
    # Same normal approximation, so the p-values agree to rounding of erfc vs scipy's normal sf.
    assert p == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-12)


def test_mann_whitney_rejects_empty() -> None:
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])


def test_bootstrap_ratio_ci(rng: np.random.Generator) -> None:
    base = rng.normal(2000, 50, 400)
    fast = rng.normal(1000, 25, 400)
    ratio, lo, hi = bootstrap_ratio_ci(base, fast, seed=3)
    assert ratio == pytest.approx(np.median(base) / np.median(fast))
    assert lo < ratio < hi
    assert lo > 1.9 and hi < 2.1
    assert bootstrap_ratio_ci(base, fast, seed=3) == (ratio, lo, hi)  # deterministic for a seed
    same = bootstrap_ratio_ci(base, base, seed=1)
    assert same[0] == 1.0 and same[1] <= 1.0 <= same[2]


def test_geomean_and_median_ci(rng: np.random.Generator) -> None:
    assert geomean_ratio([4.0, 9.0], [1.0, 1.0]) == pytest.approx(6.0)
    assert geomean_ratio([4.0, None], [2.0, 1.0]) == pytest.approx(2.0)
    assert geomean_ratio([None], [1.0]) is None
    x = rng.normal(100, 10, 1001)
    lo, hi = median_ci(x)
    assert lo < np.median(x) < hi
    assert hi - lo < 3.0  # ~ 2 * 1.96 * 1.2533 * 10 / sqrt(1001) = 1.55
    assert median_ci([1.0]) is None


@pytest.mark.parametrize(
    ("p", "ratio", "expected"),
    [(0.01, 1.5, True), (0.01, 0.5, True), (0.01, 1.03, False), (0.2, 2.0, False), (None, 2.0, False)],
)
def test_significance_rule(p: float | None, ratio: float, expected: bool) -> None:
    assert is_significant(p, ratio, min_effect=0.05) is expected
