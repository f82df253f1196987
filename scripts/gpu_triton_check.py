"""GPU check of the `triton` implementation: byte-identical to the reference on CUDA, plus a timing table.

Run from the repository root on a CUDA machine: `PYTHONPATH=. python3 scripts/gpu_triton_check.py`.
Needs only torch + triton + numpy (no pycocotools). Prints one row per synthetic configuration:
detections, correctness (xyxy, class, confidence bits, counts bytes all equal), p50/p99 host wall clock of
synchronised calls for reference and triton, the speed-up, the first call (compile) and the first call of
a new frame size after warm-up; then a retry check (tiny workspace) and a short profiler summary.

With `--cases DIR...` it works on captured case sets instead: every case checked against its capture, p50/p99
host time with the enqueue/finish split, per-kernel device time (torch.profiler), registers/spills of every
compiled kernel, optionally a cProfile of the host path (`--host-profile`), for the working tree, an earlier
copy (`--baseline MODULE`) and variants of the tuning attributes (`--variant name:attr=int,...`).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from kernels.reference import postprocess_reference
from kernels.synthetic import make_inputs
from kernels.triton_postprocess import TritonPostprocess

CONFIGS = [
    # name, frame (H, W), input size, queries, confident, batch, dtype, options
    ("720p", (720, 1280), 312, 100, 8, 1, torch.float32, {}),
    ("720p-lb-fp16", (720, 1280), 312, 100, 12, 1, torch.float16, {"letterbox": True}),
    ("1080p-8", (1080, 1920), 432, 300, 8, 1, torch.float32, {}),
    ("1080p-23", (1080, 1920), 432, 300, 23, 1, torch.float32, {}),
    ("1080p-crop-map", (1080, 1920), 432, 300, 15, 1, torch.float32, {"static_crop": True, "class_mapping": True}),
    ("1080p-B2", (1080, 1920), 432, 300, 12, 2, torch.float16, {"letterbox": True}),
    ("4K-30", (2160, 3840), 768, 300, 30, 1, torch.float32, {}),
    ("4K-lb-fp16-B2", (2160, 3840), 768, 300, 12, 2, torch.float16, {"letterbox": True}),
    ("1080p-general", (1080, 1920), 432, 300, 20, 1, torch.float32, {"threshold": 1e-3, "max_detections": 50}),
    ("720p-perclass", (720, 1280), 312, 100, 10, 1, torch.float16, {"per_class_threshold": True, "static_crop": True}),
]


def same(ref: list, out: list) -> bool:
    """Exact equality of every output field (confidence compared by bits on the GPU); prints what differs."""
    for b, (r, o) in enumerate(zip(ref, out, strict=True)):
        if len(r) != len(o) or not np.array_equal(r.xyxy, o.xyxy) or not np.array_equal(r.class_id, o.class_id):
            print(f"  image {b}: count/boxes/classes differ ({len(r)} vs {len(o)})")
            return False
        if r.confidence.view(np.int32).tolist() != o.confidence.view(np.int32).tolist():
            print(f"  image {b}: confidence bits differ: {r.confidence[:4]} vs {o.confidence[:4]}")
            return False
        bad = [j for j, (x, y) in enumerate(zip(r.masks, o.masks, strict=True)) if x.counts != y.counts]
        if bad:
            j = bad[0]
            print(
                f"  image {b}: {len(bad)} RLE differ, first {j}: {r.masks[j].counts[:40]!r}"
                f" vs {o.masks[j].counts[:40]!r}"
            )
            return False
    return len(ref) == len(out)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, inputs, repeats: int) -> np.ndarray:
    samples = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn(inputs)
        samples.append(time.perf_counter() - start)
    return np.array(samples) * 1e6


def phases(impl: TritonPostprocess, inputs, repeats: int = 50) -> tuple[float, float]:
    """Median host time of enqueue and of finish (us)."""
    enq, fin = [], []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        handle = impl.enqueue(inputs)
        t1 = time.perf_counter()
        impl.finish(handle)
        enq.append(t1 - t0)
        fin.append(time.perf_counter() - t1)
    return float(np.median(enq) * 1e6), float(np.median(fin) * 1e6)


def kernel_summary(impl: TritonPostprocess, inputs, label: str) -> None:
    """Device time per kernel/copy and host time of launches, from torch.profiler over 20 calls."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(20):
            impl(inputs)
    rows = []
    for event in prof.key_averages():
        device_us = getattr(event, "self_device_time_total", 0.0) or getattr(event, "self_cuda_time_total", 0.0)
        if device_us > 0 or "Launch" in event.key or "Synchronize" in event.key:
            rows.append(f"{event.key[:28]}: dev {device_us / 20:.1f} host {event.self_cpu_time_total / 20:.1f}")
    print(f"profile {label} (us per call): " + "; ".join(rows))


def kernel_stats() -> str:
    """Registers and spills of every compiled Triton kernel of this process (the triton_* modules)."""
    import importlib

    rows = []
    for modname in ("kernels.triton_select", "kernels.triton_masks", "kernels_base.triton_select",
                    "kernels_base.triton_masks"):  # fmt: skip
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        for attr in getattr(mod, "__all__", []):
            fn = getattr(mod, attr)
            caches = getattr(fn, "device_caches", {}) or {}
            for entry in caches.values():
                for compiled in entry[0].values():
                    regs, spills = getattr(compiled, "n_regs", "?"), getattr(compiled, "n_spills", "?")
                    warps = getattr(getattr(compiled, "metadata", None), "num_warps", "?")
                    rows.append(f"{modname.split('.')[0]}.{attr}: regs {regs} spills {spills} warps {warps}")
    return "\n".join(rows)


def case_sets(args: argparse.Namespace) -> int:
    """Captured case sets: byte identity vs the capture, host phases, per-kernel device time, per variant."""
    import importlib

    from replay.loading import load_for_replay

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    variants: dict[str, object] = {}
    if args.baseline:
        variants["base"] = importlib.import_module(args.baseline).TritonPostprocess(device)
    variants["new"] = TritonPostprocess(device)
    for spec in args.variant or []:  # name:attr=value,attr=value (attributes of TritonPostprocess)
        name, _, assigns = spec.partition(":")
        impl = TritonPostprocess(device)
        for item in assigns.split(","):
            key, _, value = item.partition("=")
            setattr(impl, key, type(getattr(impl, key))(int(value)))
        variants[name] = impl
    ok_all = True
    for directory in args.cases:
        loaded = load_for_replay(directory, device, max_cases=args.max_cases)
        inputs, expected = loaded.device_inputs, loaded.expected
        dets = [sum(len(r) for r in e) for e in expected]
        print(f"== {directory}: {len(inputs)} cases, detections per case {min(dets)}-{max(dets)}")
        ref = timed_cases(postprocess_reference, inputs, 1)
        print(f"  reference p50 {np.percentile(ref['total'], 50):.0f} us")
        for label, impl in variants.items():
            bad = [k for k, x in enumerate(inputs) if not same(expected[k], impl(x))]
            ok_all &= not bad
            t = timed_cases(impl, inputs, args.set_repeats)
            p50, p99 = np.percentile(t["total"], 50), np.percentile(t["total"], 99)
            print(
                f"  {label:10} identical {len(inputs) - len(bad)}/{len(inputs)} p50 {p50:6.1f} p99 {p99:6.1f}"
                f" enqueue {np.percentile(t['enqueue'], 50):6.1f} finish {np.percentile(t['finish'], 50):6.1f}"
                f" event-device {np.percentile(t['device'], 50):6.1f}  x{np.percentile(ref['total'], 50) / p50:.1f}"
            )
            if label in ("base", "new") or args.profile_all:
                kernel_summary_cases(impl, inputs[: min(len(inputs), 20)], f"{label}")
        if args.host_profile:
            host_profile(variants["new"], inputs)
    print(kernel_stats())
    print("ALL IDENTICAL" if ok_all else "MISMATCHES FOUND")
    return 0 if ok_all else 1


def host_profile(impl, inputs: list, repeats: int = 20) -> None:
    """cProfile of enqueue + finish over the cases: where the host time of a call goes (us per call)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    for _ in range(repeats):
        for x in inputs:
            sync()
            profiler.enable()
            impl.finish(impl.enqueue(x))
            profiler.disable()
    calls = repeats * len(inputs)
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:14]  # by own time
    print("    host profile (own us/call, cumulative us/call, function):")
    for (filename, line, name), (_cc, _nc, own, cum, _callers) in rows:
        print(f"      {own / calls * 1e6:7.1f} {cum / calls * 1e6:7.1f}  {filename.split('/')[-1]}:{line} {name}")


def timed_cases(impl, inputs: list, repeats: int) -> dict[str, np.ndarray]:
    """Host total / enqueue / finish and CUDA-event device time (us) per call over every case, repeats times."""
    rows = {"total": [], "enqueue": [], "finish": [], "device": []}
    phased = hasattr(impl, "enqueue")
    for _ in range(repeats):
        for x in inputs:
            cuda = torch.cuda.is_available()
            start, end = (torch.cuda.Event(enable_timing=True) for _ in "se") if cuda else (None, None)
            sync()
            if cuda:
                start.record()
            t0 = time.perf_counter()
            handle = impl.enqueue(x) if phased else None
            if cuda:
                end.record()
            t1 = time.perf_counter()
            if phased:
                impl.finish(handle)
            else:
                impl(x)
            t2 = time.perf_counter()
            if cuda:
                end.synchronize()
            rows["total"].append(t2 - t0)
            rows["enqueue"].append(t1 - t0)
            rows["finish"].append(t2 - t1)
            rows["device"].append(start.elapsed_time(end) / 1e3 if cuda else 0.0)
    return {k: np.array(v) * 1e6 for k, v in rows.items()}


def kernel_summary_cases(impl, inputs: list, label: str) -> None:
    """Per-kernel device time and the top host operations per call (torch.profiler) over a list of cases."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for x in inputs:
            impl(x)
    n = len(inputs)
    dev, host = [], []
    for event in prof.key_averages():
        device_us = getattr(event, "self_device_time_total", 0.0) or getattr(event, "self_cuda_time_total", 0.0)
        if device_us > 0:
            dev.append(f"{event.key[:24]} {device_us / n:.1f}")
        elif event.self_cpu_time_total / n > 2:
            host.append((event.self_cpu_time_total / n, event.key[:40]))
    print(f"    profile {label} device us/call: " + "; ".join(dev))
    print(f"    profile {label} host us/call: " + "; ".join(f"{k} {v:.1f}" for v, k in sorted(host, reverse=True)[:8]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--ref-repeats", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU interpreter (checks the script)")
    parser.add_argument("--cases", nargs="*", help="captured case sets: identity + phases + profile per variant")
    parser.add_argument("--baseline", help="module with an earlier TritonPostprocess to compare (e.g. a copy)")
    parser.add_argument("--variant", action="append", help="name:attr=int,... TritonPostprocess attributes")
    parser.add_argument("--profile-all", action="store_true", help="per-kernel profile of every variant")
    parser.add_argument("--host-profile", action="store_true", help="cProfile of the new variant's calls")
    parser.add_argument("--set-repeats", type=int, default=5)
    parser.add_argument("--max-cases", type=int, default=None)
    args = parser.parse_args()
    if args.cases:
        return case_sets(args)
    device = torch.device("cpu" if args.smoke else "cuda")
    configs = CONFIGS
    if args.smoke:
        configs = [(n, (90, 120), 64, 12, 3, b, dt, o) for n, _, _, _, _, b, dt, o in CONFIGS[:2] + CONFIGS[4:6]]
        configs += [("general", (90, 120), 64, 12, 3, 1, torch.float32, {"threshold": 1e-3})]
    import triton

    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (interpreter)"
    print(f"device {name} torch {torch.__version__} triton {triton.__version__}")
    variants = {"graph": TritonPostprocess(device), "plain": TritonPostprocess(device)}
    variants["plain"].use_cuda_graph = False  # plain launches instead of the CUDA graph
    ok_all = True
    first = True
    print(
        f"{'config':15} {'dets':>4} {'ok g/p':>6} {'ref p50':>8} {'graph p50':>9} {'p99':>6} {'plain p50':>9}"
        f" {'p99':>6} {'x graph':>7} {'first':>9} {'enq':>5} {'fin':>5} {'extra MB':>8}"
    )
    for name, frame, size, queries, confident, batch, dtype, opts in configs:
        inputs = make_inputs(
            7, batch=batch, queries=queries, classes=91, input_size=size, frame_sizes=[frame], dtype=dtype,
            num_confident=confident, device=device, **opts,
        )  # fmt: skip
        ref = postprocess_reference(inputs)
        oks, stats = [], []
        first_call = 0.0
        for label, impl in variants.items():
            start = time.perf_counter()
            try:
                out = impl(inputs)
            except Exception as exc:  # a variant that does not compile here is reported, not fatal
                print(f"  {label} failed: {type(exc).__name__}: {str(exc).splitlines()[-1][:200]}")
                oks.append(False)
                stats.append((float("inf"), float("inf")))
                continue
            if label == "graph":
                first_call = (time.perf_counter() - start) * 1e6
            ok = same(ref, out) and same(ref, impl(inputs))
            oks.append(ok)
            tri = timed(impl, inputs, args.repeats)
            stats.append((np.percentile(tri, 50), np.percentile(tri, 99)))
        ok_all &= all(oks)
        graph = variants["graph"]
        enq, fin = phases(graph, inputs)
        extra = 0.0
        if device.type == "cuda":
            sync()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            graph(inputs)
            extra = (torch.cuda.max_memory_allocated() - base) / 2**20
        refs = timed(postprocess_reference, inputs, args.ref_repeats)
        rp50 = np.percentile(refs, 50)
        dets = sum(len(r) for r in ref)
        mark = "c" if first else "n"
        first = False
        okstr = "/".join("y" if o else "N" for o in oks)
        print(
            f"{name:15} {dets:4d} {okstr:>6} {rp50:8.0f} {stats[0][0]:9.1f} {stats[0][1]:6.0f} {stats[1][0]:9.1f}"
            f" {stats[1][1]:6.0f} {rp50 / stats[0][0]:7.1f} {first_call:8.0f}{mark} {enq:5.0f} {fin:5.0f} {extra:8.3f}"
        )
    print("us, host wall clock of synchronised calls; first = first call of that shape by the graph instance")
    print("(c: includes compiling, n: new frame size/queries, kernels warm); enq/fin: phases of the graph instance;")
    print("extra MB: peak device memory allocated during one warm call beyond what was held before it")
    graph = variants["graph"]
    print(f"held buffers: workspace {graph._ws_cap * 8} B, result {graph._out_cap} B (+ pinned)")

    # Overflow path: a tiny workspace must re-run (through the same graph: the workspace is data), not truncate.
    big = (64, 12, (90, 120)) if args.smoke else (432, 300, (1080, 1920))
    small = TritonPostprocess(device)
    inputs = make_inputs(3, queries=big[1], input_size=big[0], frame_sizes=[big[2]], num_confident=20, device=device)
    small(inputs)
    captures = small.graph_captures
    small._new_workspace(16)
    retry_ok = same(postprocess_reference(inputs), small(inputs))
    print(
        f"retry path: reruns={small.reruns} identical={retry_ok} ws_cap={small._ws_cap} out_cap={small._out_cap} "
        f"graph captures {captures} -> {small.graph_captures}"
    )
    ok_all &= retry_ok

    inputs = make_inputs(5, queries=big[1], input_size=big[0], frame_sizes=[big[2]], num_confident=15, device=device)
    try:
        kernel_summary(variants["graph"], inputs, "1080p-15")
    except Exception as exc:
        print(f"profile failed: {type(exc).__name__}")
    print("ALL IDENTICAL (graph and plain launches)" if ok_all else "MISMATCHES FOUND")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
