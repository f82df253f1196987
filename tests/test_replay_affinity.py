"""replay/affinity.py: CPU lists read and written as taskset -c does, and pinning every thread of the process."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replay.affinity import available_cpus, format_cpus, parse_cpus, pin_process


@pytest.fixture
def restore_affinity():
    """The process's threads get back the CPUs they had (a test that pins must not slow the rest of the suite)."""
    before = available_cpus()
    yield before
    pin_process(before)


@pytest.mark.parametrize(
    ("text", "cpus"), [("5", {5}), ("4-7", {4, 5, 6, 7}), ("2,3,8-9", {2, 3, 8, 9}), (" 0 , 2-2 ", {0, 2})]
)
def test_cpu_lists(text: str, cpus: set[int]) -> None:
    assert parse_cpus(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "1,,2", "-1", "3-", "7-4", "1.5"])
def test_bad_cpu_lists_say_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match=r"CPU list|empty CPU range"):
        parse_cpus(text)


@given(st.frozensets(st.integers(0, 300), min_size=1))
def test_format_is_read_back(cpus: frozenset[int]) -> None:
    text = format_cpus(cpus)
    assert parse_cpus(text) == cpus and len(text) <= len(",".join(map(str, sorted(cpus))))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux: threads listed under /proc/self/task")
def test_pin_process_pins_every_thread(restore_affinity: frozenset[int]) -> None:
    """A thread started before the pinning is pinned too, and one started after it inherits it."""
    cpu = min(restore_affinity)
    release = threading.Event()
    ids: list[int] = []

    def idle() -> None:
        ids.append(threading.get_native_id())
        release.wait(10)

    early = threading.Thread(target=idle)
    early.start()
    while not ids:
        pass
    pin_process(frozenset({cpu}))
    late = threading.Thread(target=idle)
    late.start()
    while len(ids) < 2:
        pass
    try:
        assert [os.sched_getaffinity(tid) for tid in (0, *ids)] == [{cpu}] * 3
    finally:
        release.set()
        early.join()
        late.join()
