"""Variants of the `triton` implementation for side-by-side replays on a GPU, as plug-in implementations.

`PYTHONPATH=scripts bench replay --impl reference,triton,triton_variants:NoRehearsal ...` (or IMPLS=... with
scripts/gpu_bench.sh): replay instantiates each class with no arguments.

- NoRehearsal: finish without its rehearsal of the unpacking (the A/B of commit 68049ec).
- Traced / TracedNoRehearsal: timestamps per call (host work before `cuGraphLaunch`, the launch, finish, the
  rehearsal, the unpacking) and CUDA events around the launch (launch + graph on the GPU), under replay's own
  conditions; their medians per frame size are printed at exit. The events add host time: time these variants
  for the split, not for the p50.
"""

from __future__ import annotations

import atexit
import time
from collections import defaultdict

import numpy as np
import torch

from kernels.triton_postprocess import TritonPostprocess

__all__ = ["NoRehearsal", "Traced", "TracedNoRehearsal"]


class NoRehearsal(TritonPostprocess):
    """finish without its rehearsal of the unpacking."""

    def __init__(self) -> None:
        super().__init__(torch.device("cuda"))
        self.rehearse_unpack = False


class Traced(TritonPostprocess):
    """The implementation with per-call timestamps (see the module docstring)."""

    rehearse = True

    def __init__(self) -> None:
        super().__init__(torch.device("cuda"))
        self.rehearse_unpack = self.rehearse
        self._rows: dict[tuple[int, int], list[dict]] = defaultdict(list)
        self._events: list[tuple[dict, torch.cuda.Event, torch.cuda.Event]] = []
        self._current: dict = {}
        self._stream = torch.cuda.current_stream()
        launch = self._graph_launch
        if launch is not None:
            self._graph_launch = lambda handle, stream: self._timed_launch(launch, handle, stream)
        atexit.register(self.report)

    def _timed_launch(self, launch, handle: int, stream: int) -> int:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter_ns()
        start.record(self._stream)
        t1 = time.perf_counter_ns()
        rc = launch(handle, stream)
        t2 = time.perf_counter_ns()
        end.record(self._stream)
        self._current.update(before_launch=t0 - self._current["t0"], launch=t2 - t1)
        self._events.append((self._current, start, end))
        return rc

    def enqueue(self, inputs):
        self._current = {"t0": time.perf_counter_ns(), "size": tuple(inputs.preprocess[0].original_size)}
        return super().enqueue(inputs)

    def finish(self, handle):
        row, unpacks, flights = self._current, [], []
        real_unpack, real_in_flight = self._unpack, self._in_flight

        def unpack(*args):
            t0 = time.perf_counter_ns()
            out = real_unpack(*args)
            unpacks.append(time.perf_counter_ns() - t0)
            return out

        def in_flight(*args):
            t0 = time.perf_counter_ns()
            out = real_in_flight(*args)
            flights.append(time.perf_counter_ns() - t0)
            return out

        self._unpack, self._in_flight = unpack, in_flight
        t0 = time.perf_counter_ns()
        try:
            out = super().finish(handle)
        finally:
            del self._unpack, self._in_flight
        row.update(finish=time.perf_counter_ns() - t0, unpack=unpacks[-1])
        if flights:
            row["rehearsal"] = flights[0]  # with the arrays made while the GPU works
        self._rows[row["size"]].append(row)
        return out

    def report(self) -> None:
        for row, start, end in self._events:
            end.synchronize()
            row["launch_and_graph"] = start.elapsed_time(end) * 1e6
        self._events.clear()
        keys = ("before_launch", "launch", "launch_and_graph", "finish", "rehearsal", "unpack")
        for (height, width), rows in self._rows.items():
            rows = rows[len(rows) // 6 :]  # past replay's warm-up pass (1 of 6 with --repeats 5)
            present = [k for k in keys if any(k in r for r in rows)]  # no rehearsal when the copy had landed
            parts = [f"{k} {np.median([r[k] for r in rows if k in r]) / 1e3:.1f}" for k in present]
            print(f"TRACE {type(self).__name__} {width}x{height} n={len(rows)} (us, p50): " + ", ".join(parts))


class TracedNoRehearsal(Traced):
    """Traced, without the rehearsal."""

    rehearse = False
