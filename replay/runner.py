"""One replay run: resolve device and implementations, load case sets, time them, assemble the results dict.

Everything a user can get wrong (device, implementation names, case sets) is checked before any timing, so
those errors cost nothing; failures during timing (an implementation raising or returning the wrong thing)
are reported per case and the run goes on. The results of completed work are always written.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cases.errors import BenchError
from kernels.contract import ImageDetections
from replay.affinity import format_cpus, pin_process
from replay.code_identity import code_identity
from replay.env import capture_environment, machine_name, sm_clock_mhz
from replay.loading import LoadedCaseSet, load_for_replay, resolve_device
from replay.markdown import results_markdown
from replay.probe import host_probe_ns
from replay.results import new_results, write_results
from replay.stats import bootstrap_ratio_ci, geomean_ratio, is_significant, mann_whitney_u
from replay.timing import (
    ImplRun,
    TimingConfig,
    host_by_previous,
    measure_floors,
    per_case_medians,
    per_repetition_medians,
    run_case_set,
    stream_stats,
)

__all__ = ["ReplayOptions", "ReplayOutcome", "resolve_implementations", "run_replay_options"]

_MAX_ERROR_LINES = 5  # per implementation and case set, on stderr (all of them go into the results)


@dataclass
class ReplayOptions:
    """Everything `bench replay` was asked to do."""

    cases_dirs: list[Path]
    impls: list[str] | None = None
    device: str = "auto"
    max_cases: int | None = None
    skip_bad: bool = False
    results_dir: Path = Path("bench_results")
    label: str = "replay"
    machine: str | None = None
    min_effect: float = 0.05
    cpu_affinity: frozenset[int] | None = None  # pin the replay to these CPUs (replay/affinity.py)
    timing: TimingConfig = field(default_factory=TimingConfig)
    argv: list[str] | None = None


@dataclass
class ReplayOutcome:
    """The results dict, where it was written, and the exit code (0 pass, 1 gate failed or errors)."""

    results: dict[str, Any]
    json_path: Path | None
    markdown_path: Path | None
    exit_code: int


def resolve_implementations(specs: list[str] | None, device: torch.device) -> dict[str, Any]:
    """Instantiate implementations by spec (default: every built-in available on device); BenchError if unknown."""
    from kernels.registry import available_implementations, get_implementation

    specs = specs or available_implementations(device)
    if not specs:
        raise BenchError(f"no implementation available on {device}; pass --impl")
    impls: dict[str, Any] = {}
    for spec in specs:
        if spec in impls:
            continue
        try:
            impls[spec] = get_implementation(spec, device)
        except ValueError as exc:
            raise BenchError(f"--impl: {str(exc).splitlines()[0]}") from exc
        except Exception as exc:  # e.g. a user module that fails on import or construction
            raise BenchError(f"--impl {spec!r} could not be created: {type(exc).__name__}: {exc}") from exc
    return impls


def _typical_output_bytes(case_sets: list[LoadedCaseSet]) -> int:
    """Median host size of a case's expected outputs (boxes, scores, classes, RLE strings)."""
    sizes = [
        sum(e.xyxy.nbytes + e.confidence.nbytes + e.class_id.nbytes + sum(len(m.counts) for m in e.masks) for e in exp)
        for cs in case_sets
        for exp in cs.expected
    ]
    return int(np.median(sizes)) if sizes else 1


def _speedup(base: ImplRun, run: ImplRun, num_cases: int, min_effect: float, seed: int) -> dict[str, Any]:
    a, b = base.timed(), run.timed()
    result: dict[str, Any] = {"baseline": base.spec, "ratio_of_medians": None, "ci95": None, "geomean_per_case": None}
    result.update(mann_whitney_p=None, effect=None, significant=False, faster=False)
    if not a or not b:
        return result
    ratio, lo, hi = bootstrap_ratio_ci(a, b, seed=seed)
    reps_a, reps_b = per_repetition_medians(base), per_repetition_medians(run)
    p = mann_whitney_u(reps_a, reps_b)[1] if reps_a and reps_b else None
    result.update(
        ratio_of_medians=ratio,
        ci95=[lo, hi],
        geomean_per_case=geomean_ratio(per_case_medians(base, num_cases), per_case_medians(run, num_cases)),
        mann_whitney_p=p,
        effect=ratio - 1.0,
        significant=is_significant(p, ratio, min_effect),
        faster=ratio > 1.0,
    )
    return result


def _impl_entry(run: ImplRun, num_cases: int, floor_ns: int | None) -> dict[str, Any]:
    stats = stream_stats(run)
    host = stats["host"]
    return {
        "phased": run.phased,
        "settings": run.settings,
        "device_source": run.device_source,
        "first_call_ns": run.first_call_ns,
        "samples": {
            "case_index": run.case_index,
            "repetition": run.repetition,
            "warmup": run.warmup,
            "host_ns": run.host_ns,
            "device_ns": run.device_ns,
            "host_post_ns": run.host_post_ns,
            "previous": run.previous,
        },
        "profiled_device_ns": run.profiled_device_ns,
        "stats": stats,
        "host_by_previous": host_by_previous(run),
        "per_case_median_ns": {
            "host": per_case_medians(run, num_cases),
            "device": per_case_medians(run, num_cases, "device_ns") if any(run.device_ns) else None,
            "host_post": per_case_medians(run, num_cases, "host_post_ns") if run.phased else None,
        },
        "memory": _memory_entry(run),
        "floor_multiple": (host["p50"] / floor_ns) if host and floor_ns else None,
        "speedup": None,
        "correctness": run.tally.summary(),
    }


def _memory_entry(run: ImplRun) -> dict[str, int | None] | None:
    """Peak extra device bytes per call (max and median over cases) and bytes kept between calls; CUDA only."""
    peaks = [v for v in run.peak_extra_device_bytes if v is not None]
    if not peaks:
        return None
    return {
        "peak_extra_per_call_max": max(peaks),
        "peak_extra_per_call_p50": int(np.median(peaks)),
        "resident": run.resident_device_bytes,
    }


def _case_work(expected: list[ImageDetections]) -> dict[str, int]:
    """What one case asks of an implementation: detections and full-frame mask pixels encoded."""
    detections = sum(len(image) for image in expected)
    pixels = sum(mask.size[0] * mask.size[1] for image in expected for mask in image.masks)
    return {"detections": detections, "output_pixels": pixels}


def _case_set_entry(
    case_set: LoadedCaseSet, runs: dict[str, ImplRun], specs: list[str], floor_ns: int | None, options: ReplayOptions
) -> dict[str, Any]:
    """The results entry of one case set: samples, statistics, speed-ups vs the baseline, correctness."""
    entries = {spec: _impl_entry(run, len(case_set), floor_ns) for spec, run in runs.items()}
    base = runs[specs[0]]
    for spec in specs[1:]:
        entries[spec]["speedup"] = _speedup(base, runs[spec], len(case_set), options.min_effect, options.timing.seed)
    return {
        "directory": str(case_set.directory),
        "manifest_hash": case_set.manifest_hash,
        "case_set_digest": case_set.digest,
        "num_cases": len(case_set),
        "case_files": case_set.case_files,
        "cases": [_case_work(expected) for expected in case_set.expected],
        "bad": [{"path": p, "message": m} for p, m in case_set.bad],
        "implementations": entries,
    }


def _error_printer() -> Callable[[str, int, str], None]:
    printed: dict[str, int] = {}

    def report(spec: str, case: int, message: str) -> None:
        printed[spec] = printed.get(spec, 0) + 1
        if printed[spec] <= _MAX_ERROR_LINES:
            print(f"bench: {spec}: case {case}: {message}", file=sys.stderr)
        elif printed[spec] == _MAX_ERROR_LINES + 1:
            print(f"bench: {spec}: more errors; all are listed in the results file", file=sys.stderr)

    return report


def run_replay_options(options: ReplayOptions) -> ReplayOutcome:
    """Run the whole replay and write its results (also after an interruption); see the module docstring."""
    if options.cpu_affinity:
        pin_process(options.cpu_affinity)  # before the loading and the implementations start threads
    device = resolve_device(options.device)
    impls = resolve_implementations(options.impls, device)
    case_sets = [
        load_for_replay(d, device, max_cases=options.max_cases, skip_bad=options.skip_bad) for d in options.cases_dirs
    ]
    timing = options.timing
    specs = list(impls)
    results = new_results(options.label, options.machine or machine_name(device))
    results["environment"] = capture_environment(device, options.argv)
    results["config"] = {
        "implementations": specs,
        "baseline": specs[0],
        "device": str(device),
        "repeats": timing.repeats,
        "warmup_repeats": timing.warmup_repeats,
        "cold": timing.cold,
        "gc": timing.gc,
        "device_events": timing.device_events,
        "target_ci": timing.target_ci,
        "max_time_s": timing.max_time_s,
        "min_effect": options.min_effect,
        "max_cases": options.max_cases,
        "check": timing.check,
        "skip_bad": options.skip_bad,
        "seed": timing.seed,
        "cpu_affinity": format_cpus(options.cpu_affinity) if options.cpu_affinity else None,
        "timed_passes": 0,
        "code": {spec: code_identity(impl) for spec, impl in impls.items()},
    }
    floors = measure_floors(device, _typical_output_bytes(case_sets))
    results["floors"] = floors
    results["host_probe"] = [{"at": "start", "p50_ns": host_probe_ns()}]
    floor_ns = floors["floor_ns"] if floors else None
    failed = False
    on_error = _error_printer()
    try:
        for case_set in case_sets:
            results["host_probe"].append({"at": str(case_set.directory), "p50_ns": host_probe_ns()})
            runs: dict[str, ImplRun] = {}
            try:
                _, passes = run_case_set(impls, case_set, device, timing, on_error=on_error, runs=runs)
            finally:  # also on Ctrl-C: what was measured so far is kept
                if runs:
                    results["case_sets"].append(_case_set_entry(case_set, runs, specs, floor_ns, options))
            results["config"]["timed_passes"] = max(results["config"]["timed_passes"], passes)
            failed |= any(not run.tally.passed for run in runs.values())
    except KeyboardInterrupt:
        results["status"] = "interrupted"
        results["exit_code"] = 130
        results["gate_passed"] = False
        _finish_environment(results, device)
        write_results(results, options.results_dir, markdown=results_markdown(results))
        raise
    exit_code = 1 if failed else 0
    results["exit_code"] = exit_code
    results["status"] = "complete"
    results["gate_passed"] = not failed
    _finish_environment(results, device)
    markdown = results_markdown(results)
    json_path, md_path = write_results(results, options.results_dir, markdown=markdown)
    return ReplayOutcome(results=results, json_path=json_path, markdown_path=md_path, exit_code=exit_code)


def _finish_environment(results: dict[str, Any], device: torch.device) -> None:
    results["host_probe"].append({"at": "end", "p50_ns": host_probe_ns()})
    gpu = results["environment"].get("gpu")
    if gpu is not None:
        gpu["sm_clock_mhz_after"] = sm_clock_mhz(device)
