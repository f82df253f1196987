"""Where one `triton` call's host time goes, replay-style (a fresh clone of the inputs per call).

Run from the repository root on a CUDA machine: `PYTHONPATH=. python3 scripts/gpu_call_split.py DIR...`.
Wraps a few TritonPostprocess methods with perf_counter_ns timers (each wrapper adds well under 1 us) and
prints the p50 per call of: the whole call, enqueue, a metadata miss (the lookup itself is inline), the graph
launch on the host, finish, what finish does while the GPU works (the arrays, the rehearsal of the unpacking), its
wait for the GPU and the unpacking; then the
GPU time of the graph alone (CUDA events around replay, in a separate pass).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict

import numpy as np
import torch

from kernels.reference import postprocess_reference
from replay.loading import load_for_replay


def main(
    directories: list[str], repeats: int = 5, module: str = "kernels.triton_postprocess", interleave: bool = False
) -> None:
    import importlib

    device = torch.device("cuda")
    impl = importlib.import_module(module).TritonPostprocess(device)
    spans: dict[str, list[int]] = defaultdict(list)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter_ns()
            out = fn(*args, **kwargs)
            spans[name].append(time.perf_counter_ns() - t0)
            return out

        return wrapper

    wrapped = (("_new_meta", "metadata (miss)"), ("_replay", "graph launch (host)"))
    wrapped += (("_wait", "wait (when not done)"), ("_graph_launch", "cuGraphLaunch (host)"))
    wrapped += (("_in_flight", "in flight: arrays and rehearsal (overlap the GPU)"),)
    for attr, label in wrapped:
        if getattr(impl, attr, None) is not None:  # an earlier version (--module) may lack some
            setattr(impl, attr, timed(label, getattr(impl, attr)))
    real_unpack = impl._unpack

    def unpack(*args):  # the live result buffer, or (an earlier version's) rehearsal on its private copy
        t0 = time.perf_counter_ns()
        out = real_unpack(*args)
        label = "unpack" if args[2] is impl._host_mv else "rehearsal (overlaps the GPU)"
        spans[label].append(time.perf_counter_ns() - t0)
        return out

    impl._unpack = unpack
    graph_replay = torch.cuda.CUDAGraph.replay
    torch.cuda.CUDAGraph.replay = timed("graph.replay (host)", graph_replay)
    for directory in directories:
        loaded = load_for_replay(directory, device)
        inputs = loaded.device_inputs
        for x in inputs * 2:
            impl(x)
        spans.clear()
        total, enq, fin = [], [], []
        for _ in range(repeats):
            for x in inputs:
                clone = x.clone()
                if interleave:  # what replay does: the reference's call (on its own clone) before this one
                    postprocess_reference(x.clone())
                torch.cuda.synchronize()
                t0 = time.perf_counter_ns()
                handle = impl.enqueue(clone)
                t1 = time.perf_counter_ns()
                impl.finish(handle)
                t2 = time.perf_counter_ns()
                total.append(t2 - t0)
                enq.append(t1 - t0)
                fin.append(t2 - t1)
        mode = "after a reference call each" if interleave else "back to back"
        print(f"== {directory}: {len(inputs)} cases x {repeats} ({mode}), graphs captured {impl.graph_captures}")
        rows = {"call": total, "enqueue": enq, "finish": fin, **spans}
        for name, values in rows.items():
            print(f"  {name:22} p50 {np.percentile(values, 50) / 1e3:7.1f} us  (n={len(values)})")
        # GPU time of the graph alone (events around the replay), with the last case's inputs alive: the graph reads
        # them by address from the argument block of the call just made.
        gpu = []
        live = inputs[-1].clone()
        handle = impl.enqueue(live)
        impl.finish(handle)
        plan = getattr(handle, "plan", None)
        graph = plan.graphs[impl._args_tail[3]] if plan is not None and impl._args_tail is not None else None
        graph = graph[0] if graph is not None else None
        for _ in range(50 if graph is not None else 0):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            graph_replay(graph)
            end.record()
            end.synchronize()
            gpu.append(start.elapsed_time(end) * 1e3)
        del live
        if gpu:
            print(f"  graph on the GPU      p50 {np.percentile(gpu, 50):7.1f} us  (events, {len(gpu)} replays)")
        spans.clear()
    torch.cuda.CUDAGraph.replay = graph_replay


if __name__ == "__main__":
    argv = sys.argv[1:]
    options = {"interleave": "--interleave" in argv}
    options.update(("module", a.split("=", 1)[1]) for a in argv if a.startswith("--module="))
    main([a for a in argv if not a.startswith("--")], **options)
