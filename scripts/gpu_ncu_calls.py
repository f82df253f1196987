"""A few `triton` calls with plain launches (no CUDA graph), for Nsight Compute to profile kernel by kernel.

ncu profiles kernels, not graph replays, so this turns the graph off, makes warm-up rounds over the chosen cases
(compiles, grows the buffers: each kernel's first 6 launches with the defaults, more if a call re-ran with bigger
buffers) and then one call per chosen case. Run from the repository root on a CUDA machine, e.g. the 4K count
pass, skipping the warm-up:

    ncu --clock-control none -k regex:count_kernel --launch-skip 6 --launch-count 3 \\
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \\
        --section SourceCounters --import-source yes -o count \\
        env PYTHONPATH=. python3 scripts/gpu_ncu_calls.py cases/gpu-4k
    ncu -i count.ncu-rep --page details
    ncu -i count.ncu-rep --page source --csv --print-source sass > count_sass.csv

(`--clock-control none`: the clocks the benchmarks run at.) `--device cpu` with TRITON_INTERPRET=1 checks the script
on a small case set without a GPU.
"""

from __future__ import annotations

import argparse
import sys

import torch

from kernels.triton_postprocess import TritonPostprocess
from replay.loading import load_for_replay


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", help="case set directory")
    parser.add_argument("--pick", type=int, nargs="+", default=[0, 10, 20], help="case indices (modulo the set)")
    parser.add_argument("--warmup-rounds", type=int, default=2, help="rounds over the picked cases before the calls")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu under TRITON_INTERPRET=1")
    args = parser.parse_args()
    device = torch.device(args.device)
    impl = TritonPostprocess(device)
    impl.use_cuda_graph = False
    inputs = load_for_replay(args.cases, device).device_inputs
    picked = [inputs[i % len(inputs)] for i in args.pick]
    for x in picked * args.warmup_rounds:
        impl(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    for x in picked:
        impl(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(f"{len(picked)} calls after {args.warmup_rounds} warm-up rounds: {args.cases}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
