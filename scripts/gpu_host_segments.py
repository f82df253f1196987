"""Where one `triton` call's host time goes, step by step: `perf_counter_ns` stamps at the `# host:` points.

`kernels/triton_postprocess.py` carries comment lines `# host: <point>` after the steps of enqueue, finish and the
unpacking. This script copies `kernels/` into a temporary package, turns every such line into a stamp (the point's
name and the time, appended to a list), and times calls replay-style: a fresh clone of the inputs per call, the
device drained before it, and with `--interleave` the reference's call on another clone first (as in replay, which
leaves the host cold). It prints, per segment between consecutive stamps (`start` and `end` bound the call; a point
reached twice, e.g. by finish's rehearsal and then by the real unpacking, is numbered), the p50 and p90 in us over
the calls that passed through it. Each stamp adds a fraction of a microsecond (more on a cold host): read the
order and the sizes, not the sum. Run from the repository root on a CUDA machine:
`PYTHONPATH=. python3 scripts/gpu_host_segments.py [--interleave] [--no-rehearsal] [--host c|python ...] [--repeats N]
CASES_DIR ...`;
`--synthetic` runs a few synthetic calls instead (on the CPU under TRITON_INTERPRET=1: what the tests do).

`--between` names other work to run before each call instead of the reference's, to tell apart what a reference
call leaves cold: `cpu` writes 64 MiB of host memory and makes and drops 20,000 small Python objects (the CPU
caches and TLB, nothing on the device), `gpu` launches 300 small kernels and copies 4 MiB back (the driver and
the stream, little host memory), `sleep` idles 3 ms (the reference's duration, touching nothing) and `spin` stays
busy for 3 ms on a loop that touches nothing (idle or not: what an idle CPU costs the call after it).
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

_MARK = re.compile(r"^(\s*)# host: (\w+)$")
_HEADER = """
# --- added by scripts/gpu_host_segments.py ---
from time import perf_counter_ns as _host_now

HOST_STAMPS: list = []
_host_stamp = HOST_STAMPS.append
"""


def stamped_copy(root: Path, target: Path) -> list[str]:
    """kernels/ copied into target/kernels_host with every `# host:` line of triton_postprocess.py turned into a
    stamp; the point names in file order."""
    package = target / "kernels_host"
    shutil.copytree(root / "kernels", package)
    for path in package.glob("*.py"):
        path.write_text(path.read_text().replace("from kernels.", "from kernels_host."))
    module = package / "triton_postprocess.py"
    points, out = [], []
    for line in module.read_text().split("\n"):
        match = _MARK.match(line)
        if match:
            indent, point = match.groups()
            points.append(point)
            line = f"{indent}_host_stamp(({point!r}, _host_now()))"
        out.append(line)
    text = "\n".join(out)
    at = text.index("\n\n", text.index("__all__"))
    module.write_text(text[:at] + "\n" + _HEADER + text[at:])
    return points


def segments(stamps: list[tuple[str, int]], start: int, end: int) -> dict[str, int]:
    """Nanoseconds of each segment of one call, named `previous -> point` (#2, #3 for repeats)."""
    bounds = [("start", start), *stamps, ("end", end)]
    out: dict[str, int] = {}
    for (a, ta), (b, tb) in pairwise(bounds):
        key, n = f"{a} -> {b}", 1
        while key in out:
            n += 1
            key = f"{a} -> {b} #{n}"
        out[key] = tb - ta
    return out


def time_calls(
    impl, calls: Iterable, stamps: list, before: Callable[[object], None] | None, sync: Callable[[], None]
) -> dict[str, list[int]]:
    """Per segment, its nanoseconds in every call that passed through it (and the whole call as `call`)."""
    table: dict[str, list[int]] = defaultdict(list)
    for inputs in calls:
        live = inputs.clone()
        if before is not None:
            before(inputs)
        sync()
        stamps.clear()
        t0 = time.perf_counter_ns()
        impl.finish(impl.enqueue(live))
        t1 = time.perf_counter_ns()
        for name, ns in segments(list(stamps), t0, t1).items():
            table[name].append(ns)
        table["call"].append(t1 - t0)
    return table


def _between_work(name: str, device: torch.device) -> Callable[[object], None] | None:
    """The work run before each timed call (see the module's docstring); None for none."""
    if name == "none":
        return None
    if name == "reference":
        from kernels.reference import postprocess_reference

        return lambda x: postprocess_reference(x.clone())
    if name == "cpu":
        buffer = np.zeros(64 << 20, np.uint8)

        def cpu(_x) -> None:
            buffer[:] += 1
            junk = [bytes(64) for _ in range(20000)]
            del junk

        return cpu
    if name == "gpu":
        small = torch.zeros(256, device=device)
        big = torch.zeros(1 << 20, device=device)

        def gpu(_x) -> None:
            for _ in range(300):
                small.add_(1.0)
            big.cpu()

        return gpu
    if name == "sleep":
        return lambda _x: time.sleep(0.003)
    if name == "spin":

        def spin(_x) -> None:
            end = time.perf_counter_ns() + 3_000_000
            while time.perf_counter_ns() < end:
                pass

        return spin
    raise ValueError(f"--between: unknown work {name!r}")


def _print(title: str, table: dict[str, list[int]]) -> None:
    print(f"== {title}")
    for name, values in table.items():
        p50, p90 = np.percentile(values, [50, 90]) / 1e3
        print(f"  {name:34} p50 {p50:7.2f}  p90 {p90:7.2f}  n={len(values)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case set directories")
    parser.add_argument("--interleave", action="store_true", help="the reference's call before each call (cold)")
    parser.add_argument(
        "--between", choices=["none", "reference", "cpu", "gpu", "sleep", "spin"], action="append",
        help="work before each call (repeatable: one table per work; --interleave is --between reference)",
    )  # fmt: skip
    parser.add_argument("--no-rehearsal", action="store_true", help="finish without its rehearsal of the unpacking")
    parser.add_argument(
        "--host", choices=["c", "python"], action="append",
        help="the host steps in C (kernels/_host.c, the default where built) or in Python (repeatable: a table each)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5, help="passes over each case set")
    parser.add_argument("--synthetic", action="store_true", help="a few synthetic calls (CPU under the interpreter)")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    device = torch.device("cuda" if torch.cuda.is_available() and not args.synthetic else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    betweens = args.between or ["reference" if args.interleave else "none"]
    with tempfile.TemporaryDirectory() as tmp:
        points = stamped_copy(root, Path(tmp))
        sys.path.insert(0, tmp)
        module = importlib.import_module("kernels_host.triton_postprocess")
        impls = {}
        for host in args.host or ["c"]:
            impl = impls[host] = module.TritonPostprocess(device)
            impl.rehearse_unpack = not args.no_rehearsal
            if host == "python":
                impl.c_host = None
            elif impl.c_host is None:
                parser.error("--host c: kernels/_host.c was not built (pip install -e ., or scripts/build_host.py)")
        print(f"points: {', '.join(points)}")
        if args.synthetic:
            from kernels.synthetic import make_inputs

            sets = {"synthetic": [make_inputs(s, queries=12, input_size=64, frame_sizes=[(90, 120)]) for s in range(3)]}
        else:
            from replay.loading import load_for_replay

            sets = {d: load_for_replay(d, device).device_inputs for d in args.cases}
        for name, inputs in sets.items():
            for impl in impls.values():
                for x in inputs * 2:  # compile, capture, fill the caches of the plan and the metadata
                    impl(x)
            for between in betweens:
                for host, impl in impls.items():
                    table = time_calls(
                        impl, inputs * args.repeats, module.HOST_STAMPS, _between_work(between, device), sync
                    )
                    mode = "back to back" if between == "none" else f"after {between} work each"
                    _print(f"{name}: {len(inputs)} cases x {args.repeats} ({mode}, host steps in {host})", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
