"""First call of a new frame size vs warm calls, for the `triton` implementation on CUDA (issue 5: <= 2x).

One instance is warmed up (kernels compiled, graph captured) on the first size; then for every new frame
size (same queries, classes, mask size, dtype) the very first call is timed with its enqueue / finish /
metadata-miss parts and re-runs, then the median of warm calls (back to back) and of cold calls (the same
inputs, each after a reference call: cold caches as in replay, but no new metadata), so that first / cold
isolates what a new frame size costs beyond a cold host. The outputs are checked against the reference.
Run from the repo root: PYTHONPATH=. python3 scripts/gpu_first_call.py (--smoke: tiny sizes on the CPU
interpreter, TRITON_INTERPRET=1, to check the script).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from kernels.reference import postprocess_reference
from kernels.synthetic import make_inputs
from kernels.triton_postprocess import TritonPostprocess

SIZES = [(720, 1280), (1080, 1920), (2160, 3840), (600, 800), (480, 640), (1088, 1456)]


def _timed(fn, inputs) -> tuple[float, list]:
    if inputs.logits.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter_ns()
    out = fn(inputs)
    return (time.perf_counter_ns() - start) / 1e3, out


def _same(a: list, b: list) -> bool:
    return all(
        np.array_equal(x.xyxy, y.xyxy)
        and np.array_equal(x.class_id, y.class_id)
        and np.array_equal(x.confidence.view(np.int32), y.confidence.view(np.int32))
        and [m.counts for m in x.masks] == [m.counts for m in y.masks]
        for x, y in zip(a, b, strict=True)
    )


def _phase_timers(impl: TritonPostprocess) -> dict[str, float]:
    """Wrap enqueue, finish and the metadata miss with timers; the dict holds each one's last time in us."""
    last: dict[str, float] = {}
    for name in ("enqueue", "finish", "_new_meta"):
        fn = getattr(impl, name)

        def timed(*args, _fn=fn, _name=name, **kwargs):
            start = time.perf_counter_ns()
            out = _fn(*args, **kwargs)
            last[_name] = (time.perf_counter_ns() - start) / 1e3
            return out

        setattr(impl, name, timed)
    return last


def main(smoke: bool = False) -> None:
    device = torch.device("cpu" if smoke else "cuda")
    sizes = [(60, 80), (90, 120)] if smoke else SIZES
    small = {"queries": 12, "classes": 8, "input_size": 64} if smoke else {}
    warm_reps, cold_reps = (2, 2) if smoke else (50, 10)
    impl = TritonPostprocess(device)
    warm_inputs = make_inputs(1, frame_sizes=[sizes[0]], num_confident=8, device=device, **small)
    for _ in range(3 if smoke else 20):
        impl(warm_inputs.clone())
    last = _phase_timers(impl)
    print(
        f"{'frame':>11} {'first us':>9} {'enq':>6} {'fin':>6} {'meta':>5} {'reruns':>6} {'cold p50':>9} "
        f"{'warm p50':>9} {'/warm':>6} {'/cold':>6} identical  graphs captured"
    )
    for size in sizes[1:]:
        inputs = make_inputs(2, frame_sizes=[size], num_confident=8, device=device, **small)
        last.clear()
        reruns = impl.reruns
        first, out = _timed(impl, inputs.clone())
        phases = (last.get("enqueue", 0.0), last.get("finish", 0.0), last.get("_new_meta", 0.0))
        reruns = impl.reruns - reruns
        warm = [_timed(impl, inputs.clone())[0] for _ in range(warm_reps)]
        cold = []  # the same inputs after a reference call (cold caches as in replay, no new metadata)
        for _ in range(cold_reps):
            clone = inputs.clone()
            postprocess_reference(inputs)
            cold.append(_timed(impl, clone)[0])
        ok = _same(out, postprocess_reference(inputs))
        p50, cold50 = float(np.median(warm)), float(np.median(cold))
        print(
            f"{size[1]:>5}x{size[0]:<5} {first:9.1f} {phases[0]:6.1f} {phases[1]:6.1f} {phases[2]:5.1f} {reruns:6d} "
            f"{cold50:9.1f} {p50:9.1f} {first / p50:6.2f} {first / cold50:6.2f} {ok!s:>9}  {impl.graph_captures}"
        )


if __name__ == "__main__":
    main(smoke="--smoke" in sys.argv[1:])
