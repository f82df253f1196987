"""First call of a new frame size vs warm calls, for the `triton` implementation on CUDA (issue 5: <= 2x).

One instance is warmed up (kernels compiled, graph captured) on the first size; then for every new frame
size (same queries, classes, mask size, dtype) the very first call is timed, then the median of warm calls,
and the outputs are checked against the reference.
Run from the repo root: PYTHONPATH=. python3 scripts/gpu_first_call.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from kernels.reference import postprocess_reference
from kernels.synthetic import make_inputs
from kernels.triton_postprocess import TritonPostprocess

SIZES = [(720, 1280), (1080, 1920), (2160, 3840), (600, 800), (480, 640), (1088, 1456)]


def _timed(fn, inputs) -> tuple[float, list]:
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


def main() -> None:
    impl = TritonPostprocess(torch.device("cuda"))
    warm_inputs = make_inputs(1, frame_sizes=[SIZES[0]], num_confident=8, device="cuda")
    for _ in range(20):
        impl(warm_inputs.clone())
    print(f"{'frame':>11} {'first us':>9} {'warm p50 us':>12} {'ratio':>6} identical  graphs captured")
    for size in SIZES[1:]:
        inputs = make_inputs(2, frame_sizes=[size], num_confident=8, device="cuda")
        first, out = _timed(impl, inputs.clone())
        warm = [_timed(impl, inputs.clone())[0] for _ in range(50)]
        ok = _same(out, postprocess_reference(inputs))
        p50 = float(np.median(warm))
        print(f"{size[1]:>5}x{size[0]:<5} {first:9.1f} {p50:12.1f} {first / p50:6.2f} {ok!s:>9}  {impl.graph_captures}")


if __name__ == "__main__":
    main()
