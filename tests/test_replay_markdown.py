"""Markdown and terminal tables of a results dict."""

from __future__ import annotations

import pytest

from replay.markdown import (
    by_previous_table,
    compact_table,
    format_ns,
    host_probe_lines,
    results_markdown,
    speedup_cell,
)
from replay.probe import SPREAD_WARNING, host_probe_ns, probe_spread
from replay.results import new_results
from replay.stats import summarize


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (512, "512 ns"), (1_500, "1.5 us"), (25_300, "25.3 us"), (2_000_000, "2 ms"), (3.2e9, "3.2 s")],
)
def test_format_ns(value: float | None, text: str) -> None:
    assert format_ns(value) == text


def test_speedup_cell() -> None:
    assert speedup_cell(None) == "baseline"
    assert speedup_cell({"ratio_of_medians": None}) == "-"
    cell = speedup_cell({"ratio_of_medians": 1.234, "ci95": [1.2, 1.3], "significant": True})
    assert cell == "1.23x [1.20, 1.30]*"


def _impl(samples: list[int], verdict: str, speedup: dict | None) -> dict:
    return {
        "stats": {"host": summarize(samples), "device": None, "host_post": None},
        "speedup": speedup,
        "floor_multiple": None,
        "device_source": None,
        "correctness": {
            "verdict": verdict,
            "calls": 4,
            "identical": 4 if verdict == "identical" else 0,
            "equivalent": 0,
            "errors": 0 if samples else 4,
            "known_differences": [],
            "notes": [],
            "error_messages": [] if samples else [{"case_index": 1, "verdict": "error", "message": "raised X"}] * 2,
        },
    }


@pytest.mark.parametrize("status", ["complete", "interrupted"])
def test_tables_have_consistent_columns(status: str) -> None:
    results = new_results("pr 12", "cpu-x")
    results["status"] = status
    results["environment"] = {"cpu_model": "Test CPU", "torch": "2.13", "gpu": None}
    results["config"] = {"device": "cpu", "cold": False, "gc": False, "warmup_repeats": 1, "timed_passes": 3}
    speedup = {"ratio_of_medians": 2.0, "ci95": [1.9, 2.1], "significant": True, "geomean_per_case": 1.95}
    results["case_sets"] = [
        {
            "directory": "cases/demo",
            "num_cases": 2,
            "bad": [],
            "implementations": {
                "reference": _impl([2000, 2100, 1900], "identical", None),
                "fast": _impl([1000, 1050, 990], "identical", speedup),
                "broken": _impl([], "error", {"ratio_of_medians": None}),
            },
        }
    ]
    md = results_markdown(results)
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in table}) == 1  # every row has the header's column count
    assert "| fast | 3 |" in md and "2.00x [1.90, 2.10]*" in md and "1.95x" in md
    assert "case(s) 1: error: raised X" in md
    assert ("interrupted" in md) == (status == "interrupted")
    assert "no difference can reach p < 0.05" not in md  # config lists no implementations: no comparison
    results["config"]["implementations"] = ["reference", "fast", "broken"]
    assert "use --repeats 5 or more" in results_markdown(results)
    results["config"]["timed_passes"] = 4
    assert "no difference can reach" not in results_markdown(results)
    compact = compact_table(results).splitlines()
    assert len(compact) == 4 and compact[0].startswith("case set")


@pytest.mark.parametrize(
    ("value", "text"), [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 << 20, "3 MiB")]
)
def test_format_bytes(value: int | None, text: str) -> None:
    from replay.markdown import format_bytes

    assert format_bytes(value) == text


def test_by_previous_table() -> None:
    """One row per implementation, a column per implementation called before and one for a chunk's start; none
    for a single implementation or for results made before the field existed."""
    groups = {"reference": {"count": 3, "p50": 2e6}, "fast": {"count": 2, "p50": 1.9e6}}
    case_set = {
        "implementations": {
            "reference": {"host_by_previous": groups},
            "fast": {"host_by_previous": {"reference": {"count": 4, "p50": 80e3}, "": {"count": 1, "p50": 60e3}}},
        }
    }
    lines = by_previous_table(case_set)
    assert lines[1] == "| host p50 (calls) after | `reference` | `fast` | a chunk's start |"
    assert lines[3] == "| reference | 2 ms (3) | 1.9 ms (2) | - |"
    assert lines[4] == "| fast | 80 us (4) | - | 60 us (1) |"
    assert by_previous_table({"implementations": {"fast": case_set["implementations"]["fast"]}}) == []
    del case_set["implementations"]["fast"]["host_by_previous"]
    assert by_previous_table(case_set) == []


def test_host_probe_lines() -> None:
    """The probe's p50 at each point, named by the case set's directory; a warning past SPREAD_WARNING only."""
    assert host_probe_lines([]) == []
    steady = [
        {"at": "start", "p50_ns": 40_000},
        {"at": "cases/gpu-4k", "p50_ns": 44_000},
        {"at": "end", "p50_ns": 41_000},
    ]
    (line,) = host_probe_lines(steady)
    assert line == "Host speed probe (fixed Python work, p50): start 40 us, gpu-4k 44 us, end 41 us."
    moved = [*steady, {"at": "cases/gpu-720p", "p50_ns": 60_000}]
    (line,) = host_probe_lines(moved)
    assert "gpu-720p 60 us" in line and "moved by 1.50x during the run" in line
    assert probe_spread(moved) == 1.5 and probe_spread(steady[:1]) is None
    assert 1.0 < SPREAD_WARNING < 1.5


def test_host_probe_times_fixed_work() -> None:
    assert host_probe_ns(reps=3) > 0
