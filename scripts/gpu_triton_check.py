"""GPU check of the `triton` implementation: byte-identical to the reference on CUDA, plus a timing table.

Run from the repository root on a CUDA machine: `PYTHONPATH=. python3 scripts/gpu_triton_check.py`.
Needs only torch + triton + numpy (no pycocotools). Prints one row per synthetic configuration:
detections, correctness (xyxy, class, confidence bits, counts bytes all equal), p50/p99 host wall clock of
synchronised calls for reference and triton, the speed-up, the first call (compile) and the first call of
a new frame size after warm-up; then a retry check (tiny workspace) and a short profiler summary.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--ref-repeats", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU interpreter (checks the script)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke else "cuda")
    configs = CONFIGS
    if args.smoke:
        configs = [(n, (90, 120), 64, 12, 3, b, dt, o) for n, _, _, _, _, b, dt, o in CONFIGS[:2] + CONFIGS[4:6]]
        configs += [("general", (90, 120), 64, 12, 3, 1, torch.float32, {"threshold": 1e-3})]
    import triton

    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (interpreter)"
    print(f"device {name} torch {torch.__version__} triton {triton.__version__}")
    variants = {
        "eval": TritonPostprocess(device),
        "gather": TritonPostprocess(device),
        "1prog": TritonPostprocess(device),
    }
    variants["gather"].gather_predecessor = True
    variants["1prog"].max_groups = 1  # one program per detection in count/write (a fallback if groups misbehave)
    ok_all = True
    first = True
    print(
        f"{'config':15} {'dets':>4} {'ok e/g/1':>8} {'ref p50':>8} {'eval p50':>8} {'p99':>6}"
        f" {'gath p50':>8} {'p99':>6}"
        f" {'x best':>6} {'first':>9} {'enq':>5} {'fin':>5} {'extra MB':>8}"
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
            if label == "eval":
                first_call = (time.perf_counter() - start) * 1e6
            ok = same(ref, out) and same(ref, impl(inputs))
            oks.append(ok)
            tri = timed(impl, inputs, args.repeats)
            stats.append((np.percentile(tri, 50), np.percentile(tri, 99)))
        ok_all &= oks[0]
        if not oks[1]:
            print(f"  gather variant not identical or failed on {name}")
        best = variants["gather" if oks[1] and stats[1][0] < stats[0][0] else "eval"]
        enq, fin = phases(best, inputs)
        extra = 0.0
        if device.type == "cuda":
            sync()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            best(inputs)
            extra = (torch.cuda.max_memory_allocated() - base) / 2**20
        refs = timed(postprocess_reference, inputs, args.ref_repeats)
        rp50 = np.percentile(refs, 50)
        dets = sum(len(r) for r in ref)
        mark = "c" if first else "n"
        first = False
        okstr = "/".join("y" if o else "N" for o in oks)
        print(
            f"{name:15} {dets:4d} {okstr:>8} {rp50:8.0f} {stats[0][0]:8.1f} {stats[0][1]:6.0f} {stats[1][0]:8.1f}"
            f" {stats[1][1]:6.0f} {rp50 / min(stats[0][0], stats[1][0]):6.1f} {first_call:8.0f}{mark}"
            f" {enq:5.0f} {fin:5.0f} {extra:8.3f} 1prog p50 {stats[2][0]:.0f}"
        )
    print("us, host wall clock of synchronised calls; first = first call of that shape by the eval instance")
    print("(c: includes compiling, n: new frame size/queries, kernels warm); enq/fin: phases of the faster variant;")
    print("extra MB: peak device memory allocated during one warm call beyond what was held before it")
    print(f"held buffers: workspace {variants['eval']._ws_cap * 8} B, result {variants['eval']._out_cap} B (+ pinned)")

    # Overflow path: a tiny workspace must re-run, not truncate.
    big = (64, 12, (90, 120)) if args.smoke else (432, 300, (1080, 1920))
    small = TritonPostprocess(device)
    small._ws_cap = 16
    small._workspace = torch.empty(16, dtype=torch.int64, device=device)
    inputs = make_inputs(3, queries=big[1], input_size=big[0], frame_sizes=[big[2]], num_confident=20, device=device)
    retry_ok = same(postprocess_reference(inputs), small(inputs))
    print(f"retry path: reruns={small.reruns} identical={retry_ok} ws_cap={small._ws_cap} out_cap={small._out_cap}")
    ok_all &= retry_ok

    inputs = make_inputs(5, queries=big[1], input_size=big[0], frame_sizes=[big[2]], num_confident=15, device=device)
    for label in ("eval", "gather"):
        impl = variants[label]
        try:
            kernel_summary(impl, inputs, f"{label} 1080p-15")
        except Exception as exc:
            print(f"profile {label} failed: {type(exc).__name__}")
    print("ALL IDENTICAL (eval variant)" if ok_all else "MISMATCHES FOUND")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
