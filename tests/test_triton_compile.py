"""Every Triton kernel compiles for the H100 (sm_90) with the arguments a real call passes.

The CPU interpreter runs the kernels' Python, which accepts some things the compiler rejects (a global that
is not a constexpr, a loop variable whose type changes between loops). This compiles each launch of a small
call ahead of time for CUDA sm_90 (Triton's own front end and ptxas, no GPU needed), so such errors fail CI
instead of the first GPU run. The launches are recorded under the interpreter and compiled in a subprocess
without it (there the kernels are real JIT functions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels.synthetic import make_inputs
from kernels.triton_postprocess import TritonPostprocess, compile_options

_ROOT = Path(__file__).resolve().parent.parent

_POINTER = {
    torch.float32: "*fp32",
    torch.float16: "*fp16",
    torch.int64: "*i64",
    torch.int32: "*i32",
    torch.uint8: "*u8",
}


def _signature(kernel, args: tuple, constexprs: dict) -> dict[str, str]:
    names = [n for n in kernel.arg_names if n not in constexprs]
    sig = {}
    for name, value in zip(names, args, strict=True):
        if isinstance(value, torch.Tensor):
            sig[name] = _POINTER[value.dtype]
        elif isinstance(value, bool):
            sig[name] = "i1"
        elif isinstance(value, int):
            sig[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
        else:
            sig[name] = "fp32"
    return {**sig, **dict.fromkeys(constexprs, "constexpr")}


def _launches(dtype: torch.dtype, **attributes: int) -> list[tuple]:
    """(kernel, args, constexprs, num_warps) of every distinct launch of two small calls, one per frame class,
    recorded while they run (with TritonPostprocess `attributes` set first: tuning values)."""
    impl = TritonPostprocess(torch.device("cpu"))
    impl.large_frame_rows = 100
    for name, value in attributes.items():
        setattr(impl, name, value)
    launches = {}
    real = impl._launch

    def record(kernel, grid, args, constexprs, num_warps):
        launches.setdefault((kernel.fn.__name__, num_warps, *constexprs.items()), (kernel, args, constexprs, num_warps))
        real(kernel, grid, args, constexprs, num_warps)

    impl._launch = record
    for frame in [(90, 120), (120, 90)]:
        impl(make_inputs(3, queries=12, input_size=64, frame_sizes=[frame], num_confident=3, dtype=dtype))
    return list(launches.values())


_COMPILE = """
import json, sys, importlib
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
for mod, name, sig, constexprs, options in json.load(sys.stdin):
    kernel = getattr(importlib.import_module(mod), name)
    source = ASTSource(kernel, sig, constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    assert compiled.asm.get("cubin"), name
    assert ("griddepcontrol.wait" in compiled.asm["ptx"]) == bool(constexprs.get("PDL")), name
    print(name, "ok")
"""


def _compile_all(
    dtype: torch.dtype, package: str = "kernels", path: str | None = None, kernels: tuple[str, ...] = (), **attributes
) -> None:
    """Compile every launch of a small call for sm_90 in a subprocess, from `package` (a copy of kernels/ under
    `path` for the timeline's instrumented kernels); only the `kernels` named, if any, and with `attributes` set."""
    launches = _launches(dtype, **attributes)
    # upload, select (with the regions), count, write, compress (with the copy back); write again with the large frame
    # class's tiles per item (its tile rows and compress block are the small class's: the same count and compress)
    assert len(launches) == 6 or attributes
    launches = [launch for launch in launches if not kernels or launch[0].fn.__name__ in kernels]
    gpu = {"USE_LIBDEVICE": True, "USE_ASM": True, "PDL": True}  # the interpreter turns these off: compiled as on a GPU
    jobs = []
    for kernel, args, constexprs, warps in launches:
        compiled = {k: gpu.get(k, v) for k, v in constexprs.items()}
        options = compile_options(kernel, warps, bool(compiled.get("PDL")))  # as TritonPostprocess._launch does
        module = kernel.fn.__module__.replace("kernels.", f"{package}.", 1)
        jobs.append((module, kernel.fn.__name__, _signature(kernel, args, constexprs), compiled, options))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, str(_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", _COMPILE], input=json.dumps(jobs), env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(" ok") == len(jobs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_kernels_compile_for_sm90(dtype: torch.dtype) -> None:
    _compile_all(dtype)


def test_count_pass_without_taps_compiles_for_sm90() -> None:
    """sure_rows = 0 (evaluate every pixel, no tap block) compiles too: the interpreter runs only the branches a
    call takes, so a constexpr edge value that breaks the compiler (a zero-length tl.arange) passes there."""
    _compile_all(torch.float32, kernels=("count_kernel",), sure_rows=0)


@pytest.mark.parametrize(
    "tuning",
    [
        {"tile_rows": 64, "tile_rows_large": 64},
        {"scan_block": 16, "chunk_block": 2, "compress_block": 16, "compress_block_large": 128},
    ],
    ids=["rows64", "small-blocks"],
)
def test_tuning_edges_compile_for_sm90(tuning: dict[str, int]) -> None:
    """The mask kernels compile for sm_90 with other tuning values too: 64-row tiles (the most a tile column's word
    holds) and the small blocks the interpreter tests use (several scan blocks, row-chunk steps and compress
    steps per mask)."""
    _compile_all(torch.float32, kernels=("count_kernel", "write_kernel", "compress_kernel"), **tuning)


def test_timeline_points_compile_for_sm90(tmp_path: Path, load_script) -> None:
    """scripts/gpu_timeline.py's copy of the kernels, a stamp at every `# timeline:` line, compiles for sm_90: a
    point whose value was renamed or is not defined where the line sits fails here, not on the GPU."""
    timeline = load_script("gpu_timeline")
    marks = [
        line for path in sorted((_ROOT / "kernels").glob("triton_*.py")) for line in path.read_text().splitlines()
        if "# timeline:" in line
    ]  # fmt: skip
    assert marks and all(timeline._MARK.match(line) for line in marks)
    points = timeline.instrumented_copy(_ROOT, tmp_path, 4096)
    assert len(points) == len(set(points)) == len(marks)
    assert {"upload start", "compress flag"} <= set(points)  # the timeline starts at one, the call ends at the other
    _compile_all(torch.float32, "kernels_timeline", str(tmp_path))
