"""The timing engine: interleaving, shuffled order per pass, fresh inputs per call, GC, warm-up, stopping rules."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from kernels.contract import ImageDetections, PostprocessInputs
from kernels.reference import postprocess_reference
from kernels.synthetic import make_inputs
from replay.loading import LoadedCaseSet
from replay.timing import TimingConfig, per_case_medians, per_repetition_medians, run_case_set, stream_stats

SMALL = {"queries": 10, "classes": 6, "input_size": 32, "frame_sizes": [(24, 32)], "num_confident": 2}


def _case_set(seed: int, count: int) -> LoadedCaseSet:
    inputs = [make_inputs(seed + i, **SMALL) for i in range(count)]
    return LoadedCaseSet(
        directory=Path("mem"),
        manifest={},
        manifest_hash=None,
        digest=None,
        case_files=[f"case_{i:06d}.safetensors" for i in range(count)],
        device_inputs=inputs,
        cpu_inputs=inputs,
        expected=[postprocess_reference(x) for x in inputs],
        provenance=[{} for _ in inputs],
    )


class Recorder:
    """Reference output plus a log of what each call saw."""

    def __init__(self, name: str, log: list, case_set: LoadedCaseSet) -> None:
        self.name, self.log, self.case_set = name, log, case_set

    def __call__(self, inputs: PostprocessInputs) -> list[ImageDetections]:
        case = next(i for i, x in enumerate(self.case_set.device_inputs) if torch.equal(x.masks, inputs.masks))
        original = self.case_set.device_inputs[case]
        self.log.append((self.name, case, inputs.masks.data_ptr(), inputs.masks is original.masks, gc.isenabled()))
        return postprocess_reference(inputs)


class PhasedRecorder(Recorder):
    def enqueue(self, inputs: PostprocessInputs) -> PostprocessInputs:
        return inputs

    def finish(self, handle: PostprocessInputs) -> list[ImageDetections]:
        return self(handle)


@pytest.mark.parametrize("gc_on", [False, True])
def test_passes_are_interleaved_shuffled_and_use_fresh_inputs(seed: int, gc_on: bool) -> None:
    cases = _case_set(seed, 4)
    log: list = []
    impls = {"a": Recorder("a", log, cases), "b": PhasedRecorder("b", log, cases)}
    config = TimingConfig(repeats=3, warmup_repeats=1, gc=gc_on, seed=7, progress=False)
    runs, passes = run_case_set(impls, cases, torch.device("cpu"), config)
    assert passes == 3 and len(log) == 4 * 2 * 4
    passes_log = [log[k : k + 8] for k in range(0, len(log), 8)]
    for calls in passes_log:
        assert sorted((name, case) for name, case, *_ in calls) == sorted((n, c) for n in "ab" for c in range(4))
        # A and B alternate per case: both implementations see a case before the pass moves on.
        assert all({calls[k][1]} == {calls[k + 1][1]} for k in range(0, 8, 2))
        assert len({ptr for _, _, ptr, _, _ in calls}) == 8  # every call its own clone
    assert not any(is_original for *_, is_original, _ in log)
    assert {enabled for *_, enabled in log} == {gc_on}
    orders = {tuple((name, case) for name, case, *_ in calls) for calls in passes_log}
    assert len(orders) > 1  # shuffled per pass
    for spec, run in runs.items():
        assert run.warmup == [True] * 4 + [False] * 12
        assert sorted(run.repetition) == [0] * 8 + [1] * 4 + [2] * 4
        assert run.first_call_ns == run.host_ns[0]
        assert run.tally.verdict == "identical" and run.tally.counts["identical"] == 16
        stats = stream_stats(run)
        assert stats["host"]["count"] == 12 and stats["device"] is None
        assert (stats["host_post"] is not None) == (spec == "b")
        assert len(per_repetition_medians(run)) == 3 and None not in per_case_medians(run, 4)
    b = runs["b"]
    assert all(post <= host for post, host in zip(b.host_post_ns, b.host_ns, strict=True))


def test_same_seed_same_schedule(seed: int) -> None:
    cases = _case_set(seed, 3)
    orders = []
    for _ in range(2):
        log: list = []
        impls = {"a": Recorder("a", log, cases), "b": Recorder("b", log, cases)}
        run_case_set(impls, cases, torch.device("cpu"), TimingConfig(repeats=2, seed=11, progress=False))
        orders.append([(name, case) for name, case, *_ in log])
    assert orders[0] == orders[1]


def test_each_call_records_the_implementation_called_before_it(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sample names the implementation called just before it in its chunk (None for a chunk's first call:
    clones and a sync come before it), and the host times group by it."""
    import replay.timing as timing

    cases = _case_set(seed, 4)
    monkeypatch.setattr(timing, "CLONE_BUDGET_BYTES", 3 * cases.input_bytes(0))  # chunks of three calls
    log: list = []
    impls = {"a": Recorder("a", log, cases), "b": PhasedRecorder("b", log, cases)}
    runs, _ = run_case_set(impls, cases, torch.device("cpu"), TimingConfig(repeats=2, seed=3, progress=False))
    assert len(log) == 3 * 8  # a warm-up and two timed passes of 8 calls, each in chunks of 3, 3 and 2
    expected = [None if k % 8 in (0, 3, 6) else log[k - 1][0] for k in range(len(log))]
    seen = {spec: iter(run.previous) for spec, run in runs.items()}
    assert [next(seen[name]) for name, *_ in log] == expected
    a = runs["a"]
    groups = timing.host_by_previous(a)
    assert sum(g["count"] for g in groups.values()) == 8 and set(groups) <= {"", "a", "b"}
    after_b = [v for v, w, p in zip(a.host_ns, a.warmup, a.previous, strict=True) if not w and p == "b"]
    assert groups["b"]["p50"] == float(np.median(after_b))


def test_implementation_settings_are_recorded_after_the_calls(seed: int) -> None:
    """An implementation's `settings` mapping is read after its calls (a setting it gave up on during the run
    shows) and copied; one without it records None."""
    cases = _case_set(seed, 2)
    log: list = []
    with_settings = PhasedRecorder("b", log, cases)
    with_settings.settings = {"host_steps": "c"}
    original_call = with_settings.finish
    with_settings.finish = lambda handle: with_settings.settings.update(host_steps="python") or original_call(handle)
    impls = {"a": Recorder("a", log, cases), "b": with_settings}
    runs, _ = run_case_set(impls, cases, torch.device("cpu"), TimingConfig(repeats=1, seed=3, progress=False))
    assert runs["a"].settings is None
    assert runs["b"].settings == {"host_steps": "python"} and runs["b"].settings is not with_settings.settings


def test_stopping_rules(seed: int) -> None:
    cases = _case_set(seed, 2)
    impls = {"a": Recorder("a", [], cases)}
    cpu = torch.device("cpu")
    # A target no noise can meet: runs until --max-time, at least --repeats passes.
    _, passes = run_case_set(impls, cases, cpu, TimingConfig(repeats=1, target_ci=1e-9, max_time_s=1.5, progress=False))
    assert passes > 1
    # A loose target is met after the minimum number of passes.
    _, passes = run_case_set(impls, cases, cpu, TimingConfig(repeats=3, target_ci=10.0, progress=False))
    assert passes == 3


def test_raising_call_is_recorded_as_error_and_run_continues(seed: int) -> None:
    cases = _case_set(seed, 3)
    reports: list = []

    def sometimes(inputs: PostprocessInputs) -> list[ImageDetections]:
        if torch.equal(inputs.masks, cases.device_inputs[1].masks):
            raise ValueError("bad case 1")
        return postprocess_reference(inputs)

    runs, _ = run_case_set(
        {"s": sometimes},
        cases,
        torch.device("cpu"),
        TimingConfig(repeats=2, warmup_repeats=0, progress=False),
        on_error=lambda spec, case, msg: reports.append((spec, case, msg)),
    )
    run = runs["s"]
    assert sorted(set(run.case_index)) == [0, 2] and len(run.host_ns) == 4
    assert run.tally.counts == {"identical": 4, "equivalent": 0, "mismatch": 0, "error": 2}
    assert reports == [("s", 1, "raised ValueError: bad case 1")] * 2
    assert run.tally.verdict == "error"


class _FakeEvent:
    """A stand-in for torch.cuda.Event: logs its records; elapsed_time says 5 us."""

    log: ClassVar[list] = []

    def __init__(self, enable_timing: bool = False) -> None:
        pass

    def record(self, stream=None) -> None:
        _FakeEvent.log.append("record")

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, other) -> float:
        return 0.005


@pytest.mark.parametrize("mode", ["separate", "inline"])
def test_device_events_of_phased_calls_inline_or_in_a_pass_of_their_own(
    seed: int, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA (faked here: events, stream, sync and memory pass), a phased implementation's device time comes from
    CUDA events around its enqueue: by default in a pass after the timed ones, one call per case, so no event is
    recorded inside a timed call; inline, in every timed call. The unphased implementation's comes from the
    profiler pass either way."""
    import replay.timing as timing

    cases = _case_set(seed, 3)
    log: list = []
    _FakeEvent.log = log
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: "stream")
    monkeypatch.setattr(timing, "_sync", lambda device: None)
    monkeypatch.setattr(timing, "_memory_cases", lambda impl, case_set, device: [None] * len(case_set.device_inputs))
    monkeypatch.setattr(timing, "_profiled_device_ns", lambda impl, inputs, device: 7000)
    impls = {"a": Recorder("a", log, cases), "b": PhasedRecorder("b", log, cases)}
    config = TimingConfig(repeats=2, warmup_repeats=1, progress=False, device_events=mode)
    runs, _ = run_case_set(impls, cases, torch.device("cuda"), config)
    phased, plain = runs["b"], runs["a"]
    timed_calls = 3 * 3  # warm-up and timed passes
    phased_calls = [k for k, entry in enumerate(log) if entry[0] == "b"]
    before = [sum(1 for entry in log[:k] if entry == "record") for k in phased_calls]
    if mode == "separate":
        assert phased.device_source == "cuda_events_pass"
        assert all(v is None for v in phased.device_ns)
        assert before[:timed_calls] == [0] * timed_calls  # no event inside a timed call
        assert before[timed_calls:] == [2, 4, 6]  # the pass: one call per case between its two events
        assert phased.profiled_device_ns == [5000] * 3
    else:
        assert phased.device_source == "cuda_events"
        assert phased.device_ns == [5000] * timed_calls and phased.profiled_device_ns == []
        assert before == [2 * (k + 1) for k in range(timed_calls)]  # a start and an end event around each enqueue
    assert stream_stats(phased)["device"]["p50"] == 5000
    assert plain.device_source == "profiler" and plain.profiled_device_ns == [7000] * 3
    assert all(v is not None for v in phased.host_post_ns)
