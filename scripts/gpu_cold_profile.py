"""Per-kernel GPU time of the `triton` graph, cold vs warm, from torch.profiler (one session per case set).

Cold: each call right after a reference call on fresh clones, as in replay (the reference's work evicts caches
between calls); warm: the same call again right after. Also the graph's span (first kernel start to last kernel
end) and the gaps between its kernels. Run from the repository root on a CUDA machine:
`PYTHONPATH=. python3 scripts/gpu_cold_profile.py [--module=kernels_prev.triton_postprocess] DIR...`.
"""

from __future__ import annotations

import importlib
import sys
from collections import defaultdict

import numpy as np
import torch

from kernels.reference import postprocess_reference
from replay.loading import load_for_replay

KERNELS = ["upload", "select", "count", "write", "compress"]  # the graph's kernels, in order


def _graphs(prof) -> list[list[tuple[float, float, str]]]:
    """The profiled calls' kernels (start, end, name) in order, one list per call (upload ... compress)."""
    kernels = sorted(
        (e.time_range.start, e.time_range.end, e.name.replace("_kernel", ""))
        for e in prof.events()
        if e.device_type == torch.autograd.DeviceType.CUDA and any(f"{k}_kernel" in e.name for k in KERNELS)
    )
    n = len(KERNELS)
    calls = [kernels[i : i + n] for i in range(0, len(kernels) - n + 1, n)]
    return [c for c in calls if c[0][2] == KERNELS[0] and c[-1][2] == KERNELS[-1]]


def main(directories: list[str], module: str = "kernels.triton_postprocess", repeats: int = 2) -> None:
    device = torch.device("cuda")
    impl = importlib.import_module(module).TritonPostprocess(device)
    for directory in directories:
        inputs = load_for_replay(directory, device).device_inputs
        for x in inputs:  # compiled, graph captured
            impl(x.clone())
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(repeats):
                for x in inputs:
                    ref_in, cold_in, warm_in = x.clone(), x.clone(), x.clone()
                    postprocess_reference(ref_in)
                    torch.cuda.synchronize()
                    impl(cold_in)
                    torch.cuda.synchronize()
                    impl(warm_in)
                    torch.cuda.synchronize()
        rows: dict[str, dict[str, list[float]]] = {"cold": defaultdict(list), "warm": defaultdict(list)}
        calls = _graphs(prof)
        for i, call in enumerate(calls):
            row = rows["cold" if i % 2 == 0 else "warm"]
            for start, end, name in call:
                row[name].append(end - start)
            span = call[-1][1] - call[0][0]
            row["span"].append(span)
            row["gaps"].append(span - sum(end - start for start, end, _ in call))
        print(f"== {directory}: {len(calls)} graphs (us, p50)")
        for mode, row in rows.items():
            print(f"  {mode}: " + ", ".join(f"{k} {np.median(v):.1f}" for k, v in row.items()))


if __name__ == "__main__":
    argv = sys.argv[1:]
    options = {a.split("=", 1)[0][2:]: a.split("=", 1)[1] for a in argv if a.startswith("--module=")}
    main([a for a in argv if not a.startswith("--")], **options)
