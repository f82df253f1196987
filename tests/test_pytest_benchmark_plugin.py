"""The pytest-benchmark plugin, run as a user would: `pytest --rlebench-cases-dir DIR --benchmark-only`.

Each test starts pytest in a subprocess in an empty directory (so only the plugin's own benchmark and a tiny
local test are collected) on one sample case with the reference implementation and a few rounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "cases" / "samples" / "nano-312"
LOCAL_TESTS = """
def test_plain():
    assert True

def test_tiny_benchmark(benchmark):
    benchmark(sum, [1, 2, 3])
"""


def _plugin_args() -> list[str]:
    """`-p replay.pytest_plugin` unless the installed project already registers it (pytest11 entry point)."""
    names = {ep.value for ep in entry_points(group="pytest11")}
    return [] if "replay.pytest_plugin" in names else ["-p", "replay.pytest_plugin"]


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_local.py").write_text(LOCAL_TESTS)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *_plugin_args(), *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _bench_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--rlebench-cases-dir",
        str(SAMPLE),
        "--rlebench-max-cases",
        "1",
        "--rlebench-rounds",
        "3",
        "--rlebench-warmup-rounds",
        "1",
        "--rlebench-device",
        "cpu",
        "--benchmark-storage",
        f"file://{tmp_path / 'storage'}",
        *extra,
    ]


def test_inert_without_cases_dir(tmp_path) -> None:
    out = tmp_path / "bench.json"
    proc = _pytest(tmp_path, f"--benchmark-json={out}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    assert "rlebench" not in proc.stdout
    data = json.loads(out.read_text())
    assert [b["name"] for b in data["benchmarks"]] == ["test_tiny_benchmark"]
    assert "rlebench" not in data["machine_info"]


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="needs the sample case set")
def test_benchmarks_sample_cases_and_compares(tmp_path) -> None:
    out = tmp_path / "bench.json"
    first = _pytest(
        tmp_path, *_bench_args(tmp_path, "--benchmark-only", "--benchmark-autosave", f"--benchmark-json={out}")
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "test_rlebench_replay[reference-nano-312]" in first.stdout
    data = json.loads(out.read_text())
    bench = {b["name"]: b for b in data["benchmarks"]}["test_rlebench_replay[reference-nano-312]"]
    assert bench["group"] == "nano-312"
    assert bench["stats"]["rounds"] == 3
    info = bench["extra_info"]
    assert info["implementation"] == "reference" and info["num_cases"] == 1 and info["device"] == "cpu"
    assert info["correctness"]["verdict"] == "identical"
    assert info["correctness"]["calls"] == 4  # 1 warm-up + 3 timed rounds, every one checked
    assert info["p50_s"] <= info["p90_s"] <= info["p99_s"] <= bench["stats"]["max"]
    machine = data["machine_info"]["rlebench"]
    assert machine["torch"] and machine["device"] == "cpu" and machine["gpu"] is None
    assert list((tmp_path / "storage").rglob("*.json")), "--benchmark-autosave stored nothing"

    # pytest-benchmark's own comparison against the stored run works on these benchmarks
    second = _pytest(
        tmp_path,
        *_bench_args(tmp_path, "--benchmark-only", "--benchmark-compare", "--benchmark-compare-fail=min:1000%"),
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0001" in second.stdout  # the stored run it compared with


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="needs the sample case set")
def test_unknown_implementation_fails_with_one_line(tmp_path) -> None:
    proc = _pytest(tmp_path, *_bench_args(tmp_path, "--rlebench-impl", "nope", "--benchmark-only"))
    assert proc.returncode == 1
    assert "rlebench: unknown implementation 'nope'" in proc.stdout
    assert "Traceback" not in proc.stdout and "During handling" not in proc.stdout
