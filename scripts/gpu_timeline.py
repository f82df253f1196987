"""Where one call's GPU time goes inside its kernels: %globaltimer stamps at the `# timeline:` points.

The kernels carry comment lines `# timeline: <kernel> <point> [(<value>)] [@<index>]` at the phases worth timing.
This script copies `kernels/` into a temporary package, turns every such line into a stamp (the GPU's global
nanosecond timer, taken once `<value>` is ready, stored per point and program, or per `<index>`: the count pass's
work items), replays the call's CUDA graph on every case of the given sets and prints, per point, how many programs
(items) reached it and when (the first, the median and the last, in us after the upload kernel started; p50 over
the calls). `--dump DIR` also saves every call's per-item stamps (DIR/items_<set>.npz: one [points, items] array
per call, us, NaN where not reached; the point names under "points"). The kernels the calls run are the working
tree's with stamps added, so their own times grow a little; the order and the gaps are what to read. CUDA only:
`PYTHONPATH=. python3 scripts/gpu_timeline.py [--repeats N] [--flush-l2] [--dump DIR] CASES_DIR ...`.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from replay.loading import load_for_replay

PROGRAMS = 8192  # programs (work items) a point records, more are dropped: the largest grid timed, B * (nsplit + Q)
_MARK = re.compile(r"^(\s*)# timeline: (\w+) ([\w ]+?)(?: \((\w+)\))?(?: @(\w+))?$")
_ITEM = " [item]"  # suffix of a point stamped per work item (`@index`) rather than per program

_HEADER = '''
# --- added by scripts/gpu_timeline.py ---
_TIMELINE_ADDR = tl.constexpr({addr})


@triton.jit
def _timeline_program():
    """This program's index in the flattened grid."""
    return tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)


@triton.jit
def _timeline_stamp(point: tl.constexpr, value, pid):
    """The global timer once `value` is ready, at slot (point, pid) of the timeline buffer (pid: the program, or
    the work item of a per-item point)."""
    ready = value.to(tl.int64)
    if ready.numel > 1:
        ready = tl.max(tl.reshape(ready, (ready.numel,)), axis=0)
    now = tl.inline_asm_elementwise(
        "mov.u64 $0, %globaltimer;", "=l,l", [ready], dtype=tl.int64, is_pure=False, pack=1
    )
    ptr = tl.full((), _TIMELINE_ADDR, tl.int64).to(tl.pointer_type(tl.int64))
    tl.store(ptr + point * {programs} + pid, now, mask=pid < {programs})
'''


def instrumented_copy(root: Path, target: Path, addr: int) -> list[str]:
    """kernels/ copied into target/kernels_timeline with every `# timeline:` line turned into a stamp; the point
    names in stamp order."""
    package = target / "kernels_timeline"
    shutil.copytree(root / "kernels", package)
    points: list[str] = []
    for path in sorted(package.glob("triton_*.py")):
        lines = path.read_text().split("\n")
        out, changed = [], False
        for line in lines:
            match = _MARK.match(line)
            if not match:
                out.append(line.replace("from kernels.triton_", "from kernels_timeline.triton_"))
                continue
            indent, kernel, rest, value, index = match.groups()
            points.append(f"{kernel} {rest}" + (_ITEM if index else ""))
            where = index or "_timeline_program()"
            out.append(f"{indent}_timeline_stamp({len(points) - 1}, {value or 'tl.program_id(0)'}, {where})")
            changed = True
        text = "\n".join(out)
        if changed:
            at = text.index("\n\n\n", text.index("import triton.language as tl"))
            text = text[:at] + _HEADER.format(addr=addr, programs=PROGRAMS) + text[at:]
        path.write_text(text)
    return points


def _timeline(
    impl, live, buffer: torch.Tensor, points: list[str], origin: int, flush: torch.Tensor | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the first, median and last program's (item's) stamp (us after the first stamp of point `origin`;
    NaN: none) and how many reached it; and the per-item points' stamps, [points, items] (NaN: not reached). With
    `flush`, the L2 cache is overwritten first."""
    buffer.zero_()
    if flush is not None:
        flush.zero_()
    torch.cuda.synchronize()
    impl(live)
    torch.cuda.synchronize()
    stamps = buffer.view(len(points), PROGRAMS).cpu().numpy()
    hit = stamps > 0
    start = stamps[origin][hit[origin]].min()
    rows = np.full((len(points), 4), np.nan)
    for p in range(len(points)):
        if hit[p].any():
            t = (stamps[p][hit[p]] - start) / 1000.0
            rows[p] = (t.min(), np.median(t), t.max(), hit[p].sum())
        else:
            rows[p, 3] = 0
    per_item = [p for p, name in enumerate(points) if name.endswith(_ITEM)]
    items = int(hit[per_item].any(axis=0).nonzero()[0].max(initial=-1)) + 1 if per_item else 0
    raw = np.where(hit[per_item, :items], (stamps[per_item, :items] - start) / 1000.0, np.nan)
    return rows, raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", help="case set directories")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case")
    parser.add_argument(
        "--flush-l2", action="store_true", help="overwrite the L2 cache before each timed call (as after other work)"
    )
    parser.add_argument("--dump", type=Path, help="directory for every call's per-item stamps (items_<set>.npz)")
    args = parser.parse_args()
    device = torch.device("cuda")
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        marks = sum(bool(_MARK.match(line)) for f in (root / "kernels").glob("triton_*.py") for line in f.open())
        buffer = torch.zeros(marks * PROGRAMS, dtype=torch.int64, device=device)
        points = instrumented_copy(root, Path(tmp), buffer.data_ptr())
        sys.path.insert(0, tmp)
        impl = importlib.import_module("kernels_timeline.triton_postprocess").TritonPostprocess(device)
        origin = points.index("upload start")
        l2 = torch.cuda.get_device_properties(device).L2_cache_size
        flush = torch.empty(4 * l2, dtype=torch.uint8, device=device) if args.flush_l2 else None
        for directory in args.cases:
            inputs = load_for_replay(directory, device).device_inputs
            rows, raw = [], []
            for x in inputs:
                live = x.clone()
                impl(live)
                impl(live)
                for _ in range(args.repeats):
                    row, items = _timeline(impl, live, buffer, points, origin, flush)
                    rows.append(row)
                    raw.append(items)
            if args.dump is not None:
                args.dump.mkdir(parents=True, exist_ok=True)
                names = np.array([name for name in points if name.endswith(_ITEM)])
                np.savez(args.dump / f"items_{Path(directory).name}.npz", *raw, points=names)
            table = np.nanmedian(np.stack(rows), axis=0)
            state = ", L2 flushed before each call" if args.flush_l2 else ""
            print(f"== {directory}: {len(inputs)} cases x {args.repeats}{state}, us after the upload started", end="")
            print(" (p50 of calls)")
            print(f"  {'point':28} {'programs':>8} {'first':>7} {'median':>7} {'last':>7}")
            for name, (first, median, last, programs) in zip(points, table, strict=True):
                print(f"  {name:28} {programs:8.0f} {first:7.1f} {median:7.1f} {last:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
