"""GPU time of one call's CUDA graph per variant of the `triton` implementation, with live inputs.

For every case of the given sets, each variant in a rotating order makes one call, then its captured graph is
replayed with that call's inputs: 5 times synchronised (latency), 3 times after overwriting 4x the L2 cache (as
after other GPU work between calls, e.g. the model or a replay's other implementation) and 50 times back to back
(throughput). Prints the p50 per set and variant, and the ratio to the first variant. Run from the repository root
on a CUDA machine:
`PYTHONPATH=.:DIR_OF_COPIES python3 scripts/gpu_graph_time.py LABEL:MODULE:[ATTR=INT,...] ... CASES_DIR ...`,
e.g. `prev:kernels_prev.triton_postprocess: new:kernels.triton_postprocess: rc256:kernels.triton_postprocess:
row_chunk=256 cases/gpu-720p` (an earlier commit's kernels as a copy of kernels/ whose imports name the copy).
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import torch

from replay.loading import load_for_replay


def _variants(specs: list[str], device: torch.device) -> dict:
    impls = {}
    for spec in specs:
        label, module, *rest = spec.split(":")
        impl = importlib.import_module(module).TritonPostprocess(device)
        for assignment in rest[0].split(",") if rest and rest[0] else []:
            name, value = assignment.split("=")
            setattr(impl, name, type(getattr(impl, name))(int(value)))
        impls[label] = impl
    return impls


def _graph_handle(impl, batch: int, queries: int) -> int:
    """The cudaGraphExec_t of the plan for (batch, queries) and the frame class of the calls just made (an earlier
    commit's copy without frame classes: its plan's one graph)."""
    plan = next(p for p in impl._plans.values() if (p.layout.batch, p.layout.queries) == (batch, queries))
    graphs = getattr(plan, "graphs", None)
    return graphs[impl._args_tail[3]][1] if graphs is not None else plan.graph[1]


def _launch_latency(impl, handle: int, stream: torch.cuda.Stream, before=None) -> float:
    """Microseconds from one graph launch to its end on the GPU (events), after `before` and a synchronize."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    if before is not None:
        before()
    torch.cuda.synchronize()
    start.record(stream)
    impl._graph_launch(handle, stream.cuda_stream)
    end.record(stream)
    end.synchronize()
    return start.elapsed_time(end) * 1e3


def main(specs: list[str], directories: list[str]) -> None:
    device = torch.device("cuda")
    impls = _variants(specs, device)
    stream = torch.cuda.current_stream()
    raw = stream.cuda_stream
    l2 = torch.cuda.get_device_properties(device).L2_cache_size
    flush = torch.empty(4 * l2, dtype=torch.uint8, device=device)
    for directory in directories:
        inputs = load_for_replay(directory, device).device_inputs
        latency: dict[str, list[float]] = {k: [] for k in impls}
        throughput: dict[str, list[float]] = {k: [] for k in impls}
        cold: dict[str, list[float]] = {k: [] for k in impls}
        for i, x in enumerate(inputs):
            order = list(impls)
            order = order[i % len(order) :] + order[: i % len(order)]
            for label in order:
                impl = impls[label]
                live = x.clone()
                impl(live)
                impl(live)
                handle = _graph_handle(impl, x.logits.shape[0], x.logits.shape[1])
                latency[label] += [_launch_latency(impl, handle, stream) for _ in range(5)]
                # after the L2 cache was overwritten (as after other work, e.g. the model)
                cold[label] += [_launch_latency(impl, handle, stream, flush.zero_) for _ in range(3)]
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                impl._graph_launch(handle, raw)
                start.record(stream)
                for _ in range(50):
                    impl._graph_launch(handle, raw)
                end.record(stream)
                end.synchronize()
                throughput[label].append(start.elapsed_time(end) * 1e3 / 50)
                del live
        print(f"== {directory}: {len(inputs)} cases")
        base = None
        for label in impls:
            lat, thr, cl = (float(np.median(v[label])) for v in (latency, throughput, cold))
            base = base or (lat, thr, cl)
            print(
                f"  {label:10} graph latency p50 {lat:6.1f} us ({lat / base[0]:.3f}x)"
                f"  back-to-back {thr:6.1f} us/graph ({thr / base[1]:.3f}x)"
                f"  L2 flushed {cl:6.1f} us ({cl / base[2]:.3f}x)"
            )


if __name__ == "__main__":
    args = sys.argv[1:]
    main([a for a in args if ":" in a], [a for a in args if ":" not in a])
