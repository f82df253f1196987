"""Fixtures for the report tests: a builder of small, valid, synthetic replay results dicts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from replay.results import new_results, validate_results
from replay.stats import bootstrap_ratio_ci, geomean_ratio, is_significant, mann_whitney_u, summarize

ResultsBuilder = Callable[..., dict]


def _correctness(calls: int, verdict: str = "identical") -> dict:
    return {
        "checked": True,
        "verdict": verdict,
        "calls": calls,
        "identical": calls if verdict == "identical" else 0,
        "equivalent": 0,
        "mismatch": calls if verdict == "mismatch" else 0,
        "errors": 0,
        "error_messages": [],
        "notes": [],
        "known_differences": [],
        "parity": {},
    }


def build_results(
    *,
    seed: int = 0,
    impls: Sequence[str] = ("reference", "triton"),
    case_sets: Sequence[str] = ("nano-312", "hd-720p"),
    cases: int = 6,
    repeats: int = 5,
    warmup_repeats: int = 1,
    slowdown: dict[str, float] | None = None,
    noise: float = 0.03,
    gpu: str | None = None,
    manifest_prefix: str = "sha256:set-",
    verdicts: dict[str, str] | None = None,
) -> dict:
    """A results dict following replay/results.py, with lognormal noise around per-case base latencies.

    The baseline is the first implementation; slowdown multiplies an implementation's latencies (triton
    defaults to half the reference's). Every sample is generated, stats and speed-ups are computed with
    replay.stats exactly as a replay would.
    """
    rng = np.random.default_rng(seed)
    factors = {"reference": 1.0, "triton": 0.5}
    factors.update(slowdown or {})
    results = new_results(label="synthetic", machine=(gpu or "cpu-test").lower().replace(" ", "-"))
    results["environment"] = {
        "hostname": "test",
        "platform": "Linux",
        "python": "3.12",
        "cpu_model": "Test CPU 9000",
        "cpu_count": 2,
        "torch": "2.13.0",
        "triton": "3.9.0",
        "numpy": np.__version__,
        "cuda": None,
        "gpu": None if gpu is None else {"name": gpu, "driver": "570.00", "index": 0},
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "dirty": False,
        "command_line": ["bench", "replay", "--cases-dir", "cases/samples/nano-312"],
    }
    baseline = impls[0]
    results["config"] = {
        "implementations": list(impls),
        "baseline": baseline,
        "device": "cpu" if gpu is None else "cuda:0",
        "repeats": repeats,
        "warmup_repeats": warmup_repeats,
        "cold": False,
        "gc": False,
        "target_ci": None,
        "max_time_s": None,
        "min_effect": 0.02,
        "max_cases": None,
        "check": True,
        "skip_bad": False,
        "seed": 0,
        "timed_passes": repeats,
    }
    for s, set_name in enumerate(case_sets):
        # the cases themselves do not depend on seed (same case set); only the timing noise does
        detections = [int(d) for d in np.random.default_rng(1000 + s).integers(0, 25, size=cases)]
        base_ns = [(200_000 + 80_000 * d) * (1 + s) for d in detections]
        entry: dict = {
            "directory": f"cases/samples/{set_name}",
            "manifest_hash": f"{manifest_prefix}{set_name}",
            "num_cases": cases,
            "case_files": [f"case_{i:06d}.safetensors" for i in range(cases)],
            "bad": [],
            "implementations": {},
            "cases": [{"detections": d, "output_pixels": d * 312 * 312 * (1 + s)} for d in detections],
        }
        for name in impls:
            samples: dict[str, list] = {k: [] for k in ("case_index", "repetition", "warmup", "host_ns")}
            samples["device_ns"], samples["host_post_ns"] = [], []
            for rep in range(warmup_repeats + repeats):
                for c in range(cases):
                    warm = rep < warmup_repeats
                    value = base_ns[c] * factors.get(name, 1.0) * float(rng.lognormal(0.0, noise))
                    samples["case_index"].append(c)
                    samples["repetition"].append(rep)
                    samples["warmup"].append(warm)
                    samples["host_ns"].append(int(value * (1.6 if warm else 1.0)))
                    samples["device_ns"].append(None)
                    samples["host_post_ns"].append(None)
            timed = [v for v, w in zip(samples["host_ns"], samples["warmup"], strict=True) if not w]
            per_case = [
                float(
                    np.median(
                        [
                            v
                            for v, ci, w in zip(
                                samples["host_ns"], samples["case_index"], samples["warmup"], strict=True
                            )
                            if ci == c and not w
                        ]
                    )
                )
                for c in range(cases)
            ]
            entry["implementations"][name] = {
                "phased": False,
                "device_source": None,
                "first_call_ns": int(base_ns[0] * 3),
                "samples": samples,
                "profiled_device_ns": [None] * cases,
                "stats": {"host": summarize(timed), "device": None, "host_post": None},
                "per_case_median_ns": {"host": per_case, "device": None, "host_post": None},
                "floor_multiple": None,
                "speedup": None,
                "correctness": _correctness(len(timed), (verdicts or {}).get(name, "identical")),
            }
        base_impl = entry["implementations"][baseline]
        base_timed = [
            v for v, w in zip(base_impl["samples"]["host_ns"], base_impl["samples"]["warmup"], strict=True) if not w
        ]
        for name in impls[1:]:
            impl = entry["implementations"][name]
            timed = [v for v, w in zip(impl["samples"]["host_ns"], impl["samples"]["warmup"], strict=True) if not w]
            ratio, lo, hi = bootstrap_ratio_ci(base_timed, timed, resamples=300)
            _, p = mann_whitney_u(base_timed, timed)
            impl["speedup"] = {
                "baseline": baseline,
                "ratio_of_medians": ratio,
                "ci95": [lo, hi],
                "geomean_per_case": geomean_ratio(
                    base_impl["per_case_median_ns"]["host"], impl["per_case_median_ns"]["host"]
                ),
                "mann_whitney_p": p,
                "effect": ratio - 1,
                "significant": is_significant(p, ratio, 0.02),
                "faster": ratio > 1,
            }
        results["case_sets"].append(entry)
    validate_results(results, source="synthetic results")
    return results


@pytest.fixture
def make_results() -> ResultsBuilder:
    """build_results, as a fixture (tests never import from tests/)."""
    return build_results
