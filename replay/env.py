"""The environment recorded with every result: machine, CPU, GPU + driver + SM clock, versions, commit.

Numbers are only comparable on the same machine, so results carry enough to tell machines apart and
to reproduce the run (command line, commit and whether the tree was dirty).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from replay.affinity import available_cpus, format_cpus
from replay.results import slug

__all__ = ["capture_environment", "cpu_model", "gpu_info", "machine_name", "sm_clock_mhz"]


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _nvidia_smi(query: str, index: int) -> str | None:
    """One value of `nvidia-smi --query-gpu`, or None when nvidia-smi is missing or fails."""
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits", f"--id={index}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip().splitlines()
    return value[0].strip() if value else None


def sm_clock_mhz(device: torch.device) -> int | None:
    """Current SM clock of a CUDA device in MHz (nvidia-smi), None on CPU or when unavailable."""
    if device.type != "cuda":
        return None
    value = _nvidia_smi("clocks.sm", device.index or 0)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def gpu_info(device: torch.device) -> dict[str, Any] | None:
    """Name, driver, L2 size and SM clock of the CUDA device used; None on CPU."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {
        "name": props.name,
        "index": index,
        "driver": _nvidia_smi("driver_version", index),
        "capability": f"{props.major}.{props.minor}",
        "memory_bytes": int(props.total_memory),
        "l2_cache_bytes": int(getattr(props, "L2_cache_size", 0)) or None,
        "sm_clock_mhz_before": sm_clock_mhz(torch.device("cuda", index)),
        "sm_clock_mhz_after": None,
    }


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def _commit(cwd: Path) -> tuple[str | None, bool | None]:
    """HEAD commit and dirty flag of the git checkout holding the code (None outside git).

    A copy of the tree without .git (a remote GPU box, a container) can name its commit in
    RLEBENCH_COMMIT, with RLEBENCH_DIRTY=1 when the copy had uncommitted changes.
    """
    if os.environ.get("RLEBENCH_COMMIT"):
        return os.environ["RLEBENCH_COMMIT"], os.environ.get("RLEBENCH_DIRTY") == "1"
    head = _git(["rev-parse", "HEAD"], cwd)
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return (head.strip() if head else None), (None if status is None else bool(status.strip()))


def _version(module_name: str) -> str | None:
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return getattr(module, "__version__", None)


def machine_name(device: torch.device) -> str:
    """Directory name for results: the GPU model for CUDA runs, 'cpu-<model>' otherwise."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return slug(torch.cuda.get_device_name(index), "gpu")
    return "cpu-" + slug(cpu_model(), "unknown")


def capture_environment(device: torch.device, argv: list[str] | None = None) -> dict[str, Any]:
    """Everything about this machine and checkout that a results file records (GPU fields on CUDA)."""
    commit, dirty = _commit(Path(__file__).resolve().parent)
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": _cpu_count(),
        "cpu_affinity": format_cpus(available_cpus()),  # the CPUs the replay's process may run on
        "torch": torch.__version__,
        "triton": _version("triton"),
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "gpu": gpu_info(device),
        "commit": commit,
        "dirty": dirty,
        "command_line": list(sys.argv if argv is None else argv),
    }


def _cpu_count() -> int | None:
    return os.cpu_count()
