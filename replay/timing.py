"""The timing engine: interleaved, shuffled passes over a case set with fresh inputs per call.

Per pass the cases are visited in a shuffled order and, per case, the implementations in a shuffled order
(A, B, B, A, ...), so drift and clock changes hit all of them alike. Each call gets its own clone of the
case's device inputs, made before the clock starts (in chunks, rotating through the cases), so nothing is
served from a cache keyed on tensor identity. Per call three streams are recorded:

- host: perf_counter_ns around the whole call, device drained before the clock starts; the call is done
  when its outputs are host objects (the contract), which is what a pipeline sees;
- device: CUDA events around enqueue() for phased implementations (enqueue includes the non-blocking copy
  back), by default in a pass of their own after the timed passes, one call per case (the end event's record
  would otherwise sit inside the timed window, between enqueue and finish: a driver call that a pipeline does
  not make and that the unphased implementations do not pay; device_events="inline" records them in every
  timed call instead); for other implementations on CUDA a torch.profiler pass after the timed passes sums
  kernel and memcpy time per case. Per-case values of either pass are profiled_device_ns;
- host_post: the finish() part of a phased call.

Outputs are checked by the correctness gate after each chunk, never inside the timed window. GC is off
during timed chunks unless gc=True; cold=True flushes the L2 (a buffer of 2x its size) before every call.
"""

from __future__ import annotations

import ctypes
import gc
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kernels.contract import ImageDetections, PostprocessInputs
from kernels.registry import is_phased
from replay.correctness import CallCheck, CaseContext, CorrectnessTally
from replay.loading import LoadedCaseSet
from replay.stats import median_ci, summarize

__all__ = [
    "ImplRun",
    "TimingConfig",
    "host_by_previous",
    "measure_floors",
    "per_case_medians",
    "per_repetition_medians",
    "phased_device_ns",
    "run_case_set",
    "stream_stats",
]

CLONE_BUDGET_BYTES = 512 * 1024 * 1024  # device memory for the clones of one chunk of calls


@dataclass
class TimingConfig:
    """Options of the timing engine (see bench replay --help)."""

    repeats: int = 3
    warmup_repeats: int = 1
    cold: bool = False
    gc: bool = False
    target_ci: float | None = None  # fraction, e.g. 0.02 for 2%
    max_time_s: float | None = None
    check: bool = True
    seed: int = 0
    progress: bool | None = None  # None: tqdm decides (only on a terminal)
    device_events: str = "separate"  # phased implementations' CUDA events: "separate" pass or "inline" (timed calls)


@dataclass
class ImplRun:
    """Everything recorded for one implementation on one case set."""

    spec: str
    phased: bool
    tally: CorrectnessTally
    case_index: list[int] = field(default_factory=list)
    repetition: list[int] = field(default_factory=list)
    warmup: list[bool] = field(default_factory=list)
    host_ns: list[int] = field(default_factory=list)
    device_ns: list[int | None] = field(default_factory=list)
    host_post_ns: list[int | None] = field(default_factory=list)
    previous: list[str | None] = field(default_factory=list)  # the implementation called just before (same chunk)
    first_call_ns: int | None = None
    profiled_device_ns: list[int | None] = field(default_factory=list)
    device_source: str | None = None
    peak_extra_device_bytes: list[int | None] = field(default_factory=list)
    resident_device_bytes: int | None = None
    settings: dict | None = None  # the implementation's `settings` (how it ran, e.g. triton's host steps), if any

    def add(
        self,
        case: int,
        rep: int,
        warm: bool,
        host: int,
        device: int | None,
        post: int | None,
        previous: str | None = None,
    ) -> None:
        if self.first_call_ns is None:
            self.first_call_ns = host
        self.case_index.append(case)
        self.repetition.append(rep)
        self.warmup.append(warm)
        self.host_ns.append(host)
        self.device_ns.append(device)
        self.host_post_ns.append(post)
        self.previous.append(previous)

    def timed(self, stream: str = "host_ns") -> list[int]:
        """Samples of a stream from timed (not warm-up) calls, missing values dropped."""
        values = getattr(self, stream)
        return [v for v, w in zip(values, self.warmup, strict=True) if not w and v is not None]


class _Flusher:
    """Evicts caches before a call (--cold): writes a buffer twice the L2 (GPU) or last-level cache (CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset_persisting = None
        if device.type == "cuda":
            props = torch.cuda.get_device_properties(device)
            l2 = int(getattr(props, "L2_cache_size", 0)) or 64 * 1024 * 1024
            self.buffer = torch.empty(2 * l2, dtype=torch.uint8, device=device)
            self.reset_persisting = _cuda_reset_persisting_l2()
        else:
            self.buffer = torch.empty(2 * _cpu_llc_bytes(), dtype=torch.uint8)

    def __call__(self) -> None:
        self.buffer.fill_(1)
        if self.reset_persisting is not None:
            self.reset_persisting()


def _cpu_llc_bytes() -> int:
    """Size of the largest CPU cache (Linux sysfs), 32 MiB when unknown."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        try:
            sizes.append(int(text.rstrip("KMG")) * {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1], 1))
        except (ValueError, IndexError):
            continue
    return max(sizes, default=32 * 1024 * 1024)


def _cuda_reset_persisting_l2() -> Callable[[], None] | None:
    """cudaCtxResetPersistingL2Cache from the CUDA runtime torch loaded, or None when it cannot be found."""
    for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"):
        try:
            lib = ctypes.CDLL(name)
            fn = lib.cudaCtxResetPersistingL2Cache
        except (OSError, AttributeError):
            continue
        return lambda fn=fn: fn()
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_floors(device: torch.device, copy_bytes: int, reps: int = 200) -> dict[str, Any] | None:
    """This GPU's floors: an (almost) empty kernel launch + synchronize, and a D2H copy into pinned memory.

    Returns None on CPU. floor_ns = sum of both p50s: a call that launches work and copies one result back
    cannot beat it.
    """
    if device.type != "cuda":
        return None
    scratch = torch.zeros(1, device=device)
    src = torch.empty(max(copy_bytes, 1), dtype=torch.uint8, device=device)
    dst = torch.empty(src.numel(), dtype=torch.uint8, pin_memory=True)
    launch, copy = [], []
    for k in range(reps + 10):
        _sync(device)
        t0 = time.perf_counter_ns()
        scratch.add_(1)
        torch.cuda.synchronize(device)
        t1 = time.perf_counter_ns()
        dst.copy_(src, non_blocking=True)
        torch.cuda.synchronize(device)
        t2 = time.perf_counter_ns()
        if k >= 10:  # first launches include lazy initialisation
            launch.append(t1 - t0)
            copy.append(t2 - t1)
    launch_stats, copy_stats = summarize(launch), summarize(copy)
    assert launch_stats is not None and copy_stats is not None
    return {
        "launch_sync_ns": launch_stats,
        "d2h_copy_ns": copy_stats,
        "d2h_bytes": int(src.numel()),
        "floor_ns": int(launch_stats["p50"] + copy_stats["p50"]),
    }


def _timed_call(
    impl: Any, phased: bool, inputs: PostprocessInputs, device: torch.device, events: bool = True
) -> tuple[object, int, int | None, int | None]:
    """One call: (outputs, host ns, device ns or None, host_post ns or None); a phased call on CUDA with events
    has CUDA events around its enqueue. Exceptions propagate."""
    cuda = device.type == "cuda"
    if phased:
        start = end = stream = None
        if cuda and events:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            # Looked up before the clock starts: Event.record() without a stream spends ~5-10 us of Python on
            # finding the current stream, and the end record sits inside the timed window.
            stream = torch.cuda.current_stream(device)
        _sync(device)
        if start is not None:
            start.record(stream)
        t0 = time.perf_counter_ns()
        handle = impl.enqueue(inputs)
        if end is not None:
            end.record(stream)
        t_mid = time.perf_counter_ns()
        outputs = impl.finish(handle)
        t1 = time.perf_counter_ns()
        device_ns = None
        if start is not None and end is not None:
            end.synchronize()
            device_ns = round(start.elapsed_time(end) * 1e6)
        return outputs, t1 - t0, device_ns, t1 - t_mid
    _sync(device)
    t0 = time.perf_counter_ns()
    outputs = impl(inputs)
    t1 = time.perf_counter_ns()
    return outputs, t1 - t0, None, None


def _profiled_device_ns(impl: Any, inputs: PostprocessInputs, device: torch.device) -> int | None:
    """Kernel + memcpy time of one call from torch.profiler (sum of CUDA activity durations)."""
    from torch.profiler import ProfilerActivity, profile

    _sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        impl(inputs)
        _sync(device)
    total_us = 0.0
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            total_us += event.time_range.elapsed_us()
    return round(total_us * 1000)


def _schedule(num_cases: int, specs: list[str], rng: random.Random) -> list[tuple[int, str]]:
    """One pass: cases in a shuffled order, implementations in a shuffled order per case."""
    cases = list(range(num_cases))
    rng.shuffle(cases)
    calls = []
    for case in cases:
        order = list(specs)
        rng.shuffle(order)
        calls.extend((case, spec) for spec in order)
    return calls


def _chunks(calls: list[tuple[int, str]], case_set: LoadedCaseSet) -> list[list[tuple[int, str]]]:
    """Split a pass so the clones of one chunk fit CLONE_BUDGET_BYTES."""
    chunks: list[list[tuple[int, str]]] = [[]]
    used = 0
    for call in calls:
        size = case_set.input_bytes(call[0])
        if chunks[-1] and used + size > CLONE_BUDGET_BYTES:
            chunks.append([])
            used = 0
        chunks[-1].append(call)
        used += size
    return chunks


def _ci_reached(runs: dict[str, ImplRun], target: float) -> bool:
    """True when every implementation's host-median 95% CI half-width is within target of its median."""
    for run in runs.values():
        samples = run.timed()
        ci = median_ci(samples)
        if ci is None:
            return False
        median = float(np.median(samples))
        if median <= 0 or (ci[1] - ci[0]) / 2 / median > target:
            return False
    return True


def run_case_set(
    impls: dict[str, Any],
    case_set: LoadedCaseSet,
    device: torch.device,
    config: TimingConfig,
    *,
    on_error: Callable[[str, int, str], None] | None = None,
    runs: dict[str, ImplRun] | None = None,
) -> tuple[dict[str, ImplRun], int]:
    """Warm-up and timed passes of every implementation over case_set; returns (runs by spec, timed passes).

    Pass an empty dict as runs to keep what was recorded when the run is interrupted (Ctrl-C).
    """
    from tqdm import tqdm

    if config.device_events not in ("separate", "inline"):
        raise ValueError(f"device_events: {config.device_events!r} is neither 'separate' nor 'inline'")
    inline_events = config.device_events == "inline"
    rng = random.Random(config.seed)
    specs = list(impls)
    runs = {} if runs is None else runs
    runs.update(
        (spec, ImplRun(spec=spec, phased=is_phased(impl), tally=CorrectnessTally(enabled=config.check)))
        for spec, impl in impls.items()
    )
    for run in runs.values():
        phased_source = "cuda_events" if inline_events else "cuda_events_pass"
        run.device_source = (phased_source if run.phased else "profiler") if device.type == "cuda" else None
    contexts = [CaseContext(inputs) for inputs in case_set.cpu_inputs]
    flusher = _Flusher(device) if config.cold else None
    started = time.monotonic()
    total_passes = config.warmup_repeats + config.repeats
    open_ended = config.target_ci is not None or config.max_time_s is not None
    bar = tqdm(
        total=None if open_ended else total_passes * len(case_set) * len(specs),
        desc=f"replay {case_set.directory.name}",
        unit="call",
        disable=(not config.progress) if config.progress is not None else None,
        leave=False,
    )

    def run_pass(warm: bool, rep: int) -> None:
        for chunk in _chunks(_schedule(len(case_set), specs, rng), case_set):
            clones = [case_set.device_inputs[case].clone() for case, _ in chunk]
            _sync(device)
            results: list[tuple[int, str, object, BaseException | None]] = []
            gc.collect()
            gc_was_enabled = gc.isenabled()
            if not config.gc:
                gc.disable()
            previous = None  # the chunk's first call follows the clones' work, not an implementation's
            try:
                for (case, spec), inputs in zip(chunk, clones, strict=True):
                    if flusher is not None:
                        flusher()
                    before, previous = previous, spec
                    try:
                        outputs, host, dev, post = _timed_call(
                            impls[spec], runs[spec].phased, inputs, device, inline_events
                        )
                    except Exception as exc:  # an implementation's bug: reported per case, the run goes on
                        results.append((case, spec, None, exc))
                        continue
                    runs[spec].add(case, rep, warm, host, dev, post, before)
                    results.append((case, spec, outputs, None))
            finally:
                if gc_was_enabled:
                    gc.enable()
            del clones
            for case, spec, outputs, exc in results:
                bar.update(1)
                _check(runs[spec], case, rep, outputs, exc, case_set, contexts, config, on_error)

    try:
        for rep in range(config.warmup_repeats):
            run_pass(True, rep)
        rep = 0
        while True:
            run_pass(False, rep)
            rep += 1
            elapsed = time.monotonic() - started
            if rep < config.repeats:
                continue
            if config.max_time_s is not None and elapsed >= config.max_time_s:
                break
            if config.target_ci is not None:
                if _ci_reached(runs, config.target_ci):
                    break
                if config.max_time_s is None and elapsed >= _DEFAULT_MAX_TIME_S:
                    break
                continue
            if config.max_time_s is None:
                break
        if device.type == "cuda":
            for spec, impl in impls.items():
                if not runs[spec].phased:
                    runs[spec].profiled_device_ns = _device_pass(_profiled_device_ns, impl, case_set, device)
                elif not inline_events:
                    runs[spec].profiled_device_ns = _device_pass(phased_device_ns, impl, case_set, device)
                runs[spec].peak_extra_device_bytes = _memory_cases(impl, case_set, device)
                resident = getattr(impl, "resident_device_bytes", None)
                runs[spec].resident_device_bytes = int(resident) if resident is not None else None
    finally:
        bar.close()
        for spec, impl in impls.items():  # after the calls: a setting an implementation gave up on shows
            settings = getattr(impl, "settings", None)
            runs[spec].settings = dict(settings) if settings else None
    return runs, rep


_DEFAULT_MAX_TIME_S = 300.0  # --target-ci without --max-time stops here at the latest


def phased_device_ns(impl: Any, inputs: PostprocessInputs, device: torch.device) -> int | None:
    """Device time of one phased call: CUDA events around its enqueue (None off CUDA)."""
    return _timed_call(impl, True, inputs, device, events=True)[2]


def _device_pass(
    measure: Callable[[Any, PostprocessInputs, torch.device], int | None],
    impl: Any,
    case_set: LoadedCaseSet,
    device: torch.device,
) -> list[int | None]:
    """Per case, the device time `measure` takes of one call on a fresh clone (the pass after the timed ones: the
    profiler's for unphased implementations, phased_device_ns for phased ones); None where the call raised."""
    out: list[int | None] = []
    for inputs in case_set.device_inputs:
        try:
            out.append(measure(impl, inputs.clone(), device))
        except Exception:  # the implementation's failures are already reported by the timed passes
            out.append(None)
    return out


def _memory_cases(impl: Any, case_set: LoadedCaseSet, device: torch.device) -> list[int | None]:
    """Per case, device memory a call allocates beyond what was allocated before it (its inputs excluded).

    An untimed pass after the timed ones: buffers an implementation keeps between calls are not counted
    here (see resident_device_bytes); a full-size mask built per call would be.
    """
    out: list[int | None] = []
    for inputs in case_set.device_inputs:
        clone = inputs.clone()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        try:
            impl(clone)
        except Exception:  # the implementation's failures are already reported by the timed passes
            out.append(None)
            continue
        torch.cuda.synchronize(device)
        out.append(int(torch.cuda.max_memory_allocated(device) - before))
    return out


def _check(
    run: ImplRun,
    case: int,
    rep: int,
    outputs: object,
    exc: BaseException | None,
    case_set: LoadedCaseSet,
    contexts: list[CaseContext],
    config: TimingConfig,
    on_error: Callable[[str, int, str], None] | None,
) -> None:
    """Correctness of one call outside the timed window; exceptions become per-case 'error' verdicts."""
    if exc is not None:
        message = f"raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        run.tally.record(case, rep, CallCheck("error", message=message))
        if on_error is not None:
            on_error(run.spec, case, message)
        return
    if not config.check:
        return
    expected: list[ImageDetections] = case_set.expected[case]
    result = run.tally.check(case, rep, expected, outputs, contexts[case])
    if result.verdict == "error" and on_error is not None:
        on_error(run.spec, case, result.message or "wrong output structure")


def stream_stats(run: ImplRun) -> dict[str, dict | None]:
    """Statistics of the timed samples per stream (device falls back to the profiler pass)."""
    device = run.timed("device_ns") or [v for v in run.profiled_device_ns if v is not None]
    return {
        "host": summarize(run.timed("host_ns")),
        "device": summarize(device) if device else None,
        "host_post": summarize(run.timed("host_post_ns")) if run.phased else None,
    }


def host_by_previous(run: ImplRun) -> dict[str, dict[str, float | int]]:
    """Count and median host time of the timed calls grouped by the implementation called just before each (the
    key "" for a chunk's first call): a call after a similar implementation can find the host warmer."""
    groups: dict[str, list[int]] = {}
    for previous, warm, value in zip(run.previous, run.warmup, run.host_ns, strict=True):
        if not warm:
            groups.setdefault(previous or "", []).append(value)
    return {key: {"count": len(v), "p50": float(np.median(v))} for key, v in groups.items()}


def per_case_medians(run: ImplRun, num_cases: int, stream: str = "host_ns") -> list[float | None]:
    """Median of the timed samples of each case (None for a case without samples)."""
    buckets: list[list[int]] = [[] for _ in range(num_cases)]
    for case, warm, value in zip(run.case_index, run.warmup, getattr(run, stream), strict=True):
        if not warm and value is not None:
            buckets[case].append(value)
    return [float(np.median(b)) if b else None for b in buckets]


def per_repetition_medians(run: ImplRun) -> list[float]:
    """Median host time of each timed pass (the unit the Mann-Whitney test compares)."""
    buckets: dict[int, list[int]] = {}
    for rep, warm, value in zip(run.repetition, run.warmup, run.host_ns, strict=True):
        if not warm:
            buckets.setdefault(rep, []).append(value)
    return [float(np.median(v)) for _, v in sorted(buckets.items()) if v and not math.isnan(np.median(v))]
