"""Pinning a replay to CPUs: the CPUs a process may run on, as a flag value and in results.

On a shared or virtual host the scheduler moves a process's threads between CPUs, and a call that lands on a
CPU whose caches another thread just used runs cold; which calls do changes from run to run. Pinning the whole
process (every thread it has, and so every thread it starts later) to the same CPUs for every implementation
keeps that out of the comparison, as `taskset` would from the shell.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_cpus", "format_cpus", "parse_cpus", "pin_process"]


def available_cpus() -> frozenset[int]:
    """The CPUs this process may run on now (all of them where the OS has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def parse_cpus(text: str) -> frozenset[int]:
    """CPUs from a list like '5', '4-7' or '2,3,8-9' (taskset -c's syntax); ValueError says what is wrong."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"{text!r} is not a CPU list like 5, 4-7 or 2,3,8-9")
        lo, hi = int(first), int(last) if dash else int(first)
        if hi < lo:
            raise ValueError(f"{part.strip()!r} is an empty CPU range")
        cpus.update(range(lo, hi + 1))
    return frozenset(cpus)


def format_cpus(cpus: frozenset[int] | set[int]) -> str:
    """The shortest list parse_cpus reads back: runs of consecutive CPUs as ranges ('0-3,8')."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in runs)


def pin_process(cpus: frozenset[int]) -> None:
    """Restrict every thread of this process to cpus (Linux: each thread of /proc/self/task; threads started later
    inherit it from the thread that starts them)."""
    task_dir = Path("/proc/self/task")
    threads = [int(p.name) for p in task_dir.iterdir()] if task_dir.is_dir() else [0]
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:  # the thread ended meanwhile
            continue
