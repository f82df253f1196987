"""scripts/gpu_host_segments.py: its stamped copy of the kernels runs, and its segments add up to the call."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton.jit runs in the kernel modules

import numpy as np
import pytest
import torch

from kernels.reference import postprocess_reference
from kernels.synthetic import make_inputs

_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def script(load_script):
    return load_script("gpu_host_segments")


@pytest.fixture
def stamped(script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The stamped copy's triton_postprocess module and its points (the copy's modules forgotten afterwards)."""
    points = script.stamped_copy(_ROOT, tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("kernels_host.triton_postprocess"), points
    for name in [n for n in sys.modules if n == "kernels_host" or n.startswith("kernels_host.")]:
        del sys.modules[name]


def test_every_host_mark_becomes_a_stamp(script, stamped) -> None:
    module, points = stamped
    source = (_ROOT / "kernels" / "triton_postprocess.py").read_text()
    marks = [line for line in source.splitlines() if "# host:" in line]
    assert marks and all(script._MARK.match(line) for line in marks)
    assert points == [script._MARK.match(line).group(2) for line in marks] and len(set(points)) == len(points)
    assert "# host:" not in Path(module.__file__).read_text()


def test_segments_cover_the_call_and_its_waiting_path(script, stamped, seed: int) -> None:
    """Every call's segments add up to the call; with finish's wait path forced (a flag that never holds the call's
    number: on the CPU everything has landed by then) the early arrays, the rehearsal and the wait are stamped too;
    the results stay the reference's."""
    module, _points = stamped
    impl = module.TritonPostprocess(torch.device("cpu"))
    small = {"queries": 12, "input_size": 64, "frame_sizes": [(90, 120)], "num_confident": 3}
    calls = [make_inputs(seed + i, **small) for i in range(2)]
    for x in calls:
        impl(x)
    impl._flag_mv = memoryview(np.zeros(1, np.int64))
    table = script.time_calls(impl, calls, module.HOST_STAMPS, None, lambda: None)
    assert len(table["call"]) == 2
    for i, total in enumerate(table["call"]):
        assert sum(values[i] for name, values in table.items() if name != "call") == total
    names = set(table)
    for segment in (
        "start -> plan", "tail -> arrays", "arrays -> in_flight", "in_flight -> waited", "waited -> header",
        "header -> masks", "detections -> end",
    ):  # fmt: skip
        assert segment in names, segment
    assert script.segments([("a", 5), ("a", 7)], 1, 9) == {"start -> a": 4, "a -> a": 2, "a -> end": 2}
    for x in calls:
        expected = postprocess_reference(x)
        actual = impl(x)
        assert [m.counts for e in expected for m in e.masks] == [m.counts for a in actual for m in a.masks]


@pytest.mark.parametrize("name", ["reference", "cpu", "gpu", "sleep", "spin"])
def test_work_between_calls_runs_on_the_cpu(script, name: str, seed: int) -> None:
    """Each --between work runs (here on the CPU) and takes its inputs the way time_calls passes them; none is
    nothing; an unknown name is refused."""
    work = script._between_work(name, torch.device("cpu"))
    work(make_inputs(seed, queries=12, input_size=64, frame_sizes=[(90, 120)]))
    assert script._between_work("none", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="unknown work"):
        script._between_work("nap", torch.device("cpu"))
