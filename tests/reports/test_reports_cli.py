"""The report Markdown and the plot / compare / report sub-commands (through their own argparse registration)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cases.errors import BenchError
from replay import reports_cli
from replay.report import render_report, reproduce_commands


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench")
    reports_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.handler(args)


def _write(path: Path, results: dict) -> Path:
    path.write_text(json.dumps(results))
    return path


@pytest.mark.parametrize("gpu", [None, "NVIDIA H100 80GB HBM3"])
def test_report_sections_and_tables(tmp_path, make_results, gpu) -> None:
    results = make_results(gpu=gpu, verdicts={"triton": "mismatch"})
    results["case_sets"][0]["implementations"]["triton"]["correctness"]["known_differences"] = ["antialiased resize"]
    results["case_sets"][0]["implementations"]["triton"]["correctness"]["parity"] = {
        "per_case": {},
        "summary": {
            "box_iou_min": 0.99,
            "score_max_ulp": 2,
            "mask_iou_min": 0.9876,
            "near_zero_pixels": 3,
            "real_pixels": 5,
        },
    }
    plot = tmp_path / "plots" / "speedup.png"
    text = render_report(results, results_path="r.json", report_path=tmp_path / "report.md", plots=[plot])
    for heading in ("## Environment", "## Reproduce", "## Latency per case set", "## Parity", "## Plots"):
        assert heading in text
    assert ("NVIDIA H100 80GB HBM3 (driver 570.00)" if gpu else "CPU-only run") in text
    assert "### nano-312 (6 cases)" in text and "### hd-720p (6 cases)" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| `triton` |")]
    assert len(table_rows) == 2 and all(row.count("|") == 9 for row in table_rows)
    parity = [line for line in text.splitlines() if line.startswith("| nano-312 | `triton` |")]
    assert parity == [
        "| nano-312 | `triton` | mismatch | 0 / 0 / 30 / 0 | 0.9900 | 2 | 0.9876 | 3 / 5 | antialiased resize |"
    ]
    assert "![speedup](plots/speedup.png)" in text  # relative to the report's directory
    assert "[speedup (SVG)](plots/speedup.svg)" in text


def test_report_device_column_only_with_device_times(make_results) -> None:
    results = make_results(case_sets=("one",))
    assert "device p50" not in render_report(results)
    stats = results["case_sets"][0]["implementations"]["triton"]["stats"]
    stats["device"] = dict(stats["host"], p50=12_345.0)
    text = render_report(results)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert "| device p50 |" in text
    assert "| 12.3 us |" in rows[1] and all(row.count("|") == 10 for row in rows[:2])


def test_report_host_probe_row(make_results) -> None:
    """The host-speed probe as an environment row, with the warning where the host's speed moved; none in files
    from before the probe."""
    results = make_results(case_sets=("one",))
    assert "host speed probe" not in render_report(results)
    results["host_probe"] = [{"at": "start", "p50_ns": 40_000}, {"at": "cases/one", "p50_ns": 41_000}]
    (row,) = [line for line in render_report(results).splitlines() if line.startswith("| host speed probe |")]
    assert row == "| host speed probe | start 40 us, one 41 us. |"
    results["host_probe"].append({"at": "end", "p50_ns": 62_000})
    assert "moved by 1.55x" in render_report(results)


def test_reproduce_commands(make_results) -> None:
    results = make_results()
    results["environment"]["command_line"] = ["/venv/bin/bench", "replay", "--cases-dir", "my cases", "--repeats", "5"]
    lines = reproduce_commands(results, "bench_results/x.json")
    assert lines[0] == "git checkout 0123456789abcdef0123456789abcdef01234567"
    assert "pip install torch==2.13.0" in lines[1]
    assert lines[2] == "bench replay --cases-dir 'my cases' --repeats 5"
    assert lines[3] == "bench report bench_results/x.json"
    results["environment"]["command_line"] = []  # unknown command: rebuilt from the config
    rebuilt = reproduce_commands(results)[2]
    assert rebuilt.startswith("bench replay --cases-dir cases/samples/nano-312 --cases-dir cases/samples/hd-720p")
    assert "--impl reference,triton --repeats 5 --warmup-repeats 1 --device cpu" in rebuilt


def test_report_command_writes_markdown_and_plots(tmp_path, make_results, capsys) -> None:
    path = _write(tmp_path / "0001_run.json", make_results(impls=("reference",), case_sets=("one",), cases=2))
    assert _run(["report", str(path)]) == 0
    report = tmp_path / "0001_run_report.md"
    assert report.is_file() and str(report) in capsys.readouterr().out
    plots_dir = tmp_path / "0001_run_plots"
    assert sorted(p.name for p in plots_dir.iterdir()) == sorted(
        f"{n}.{e}"
        for n in ("latency_distribution", "latency_vs_work", "speedup", "latency_over_run")
        for e in ("png", "svg")
    )
    text = report.read_text()
    for png in plots_dir.glob("*.png"):
        assert f"](0001_run_plots/{png.name})" in text
    assert not list(tmp_path.glob(".tmp-*"))


def test_report_without_plots(tmp_path, make_results) -> None:
    path = _write(tmp_path / "r.json", make_results(case_sets=("one",), cases=2))
    out = tmp_path / "sub" / "pr.md"
    assert _run(["report", str(path), "--no-plots", "--out", str(out)]) == 0
    assert "## Plots" not in out.read_text()
    assert not (tmp_path / "r_plots").exists()


def test_plot_command_several_files(tmp_path, make_results) -> None:
    a = _write(tmp_path / "a.json", make_results(seed=1, case_sets=("one",), cases=2, impls=("reference",)))
    b = _write(tmp_path / "b.json", make_results(seed=2, case_sets=("one",), cases=2, impls=("reference",)))
    assert _run(["plot", str(a), str(b), "--out", str(tmp_path / "out")]) == 0
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert "a_speedup.png" in names and "b_latency_over_run.svg" in names and len(names) == 16


@pytest.mark.parametrize(("slowdown", "code"), [(0.5, 0), (0.6, 1)])
def test_compare_command_exit_code(tmp_path, make_results, capsys, slowdown: float, code: int) -> None:
    base = _write(tmp_path / "base.json", make_results(seed=1))
    cand = _write(tmp_path / "cand.json", make_results(seed=2, slowdown={"triton": slowdown}))
    out = tmp_path / "cmp.md"
    assert _run(["compare", str(base), str(cand), "--fail-on", "p50:5%", "--out", str(out)]) == code
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    assert ("Gate: FAILED" if code else "Gate: passed") in printed


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(schema_version=0), "older than version"),
        (lambda r: r.update(format="something-else"), "is not an rlebench results file"),
        (lambda r: r["case_sets"][0].update(manifest_hash="sha256:x"), "share no case set"),
    ],
    ids=["old-schema", "not-results", "other-case-set"],
)
def test_compare_command_bad_input_is_one_line(tmp_path, make_results, mutate, message: str) -> None:
    base = _write(tmp_path / "base.json", make_results(seed=1, case_sets=("one",)))
    bad = make_results(seed=2, case_sets=("one",))
    mutate(bad)
    cand = _write(tmp_path / "cand.json", bad)
    with pytest.raises(BenchError, match=message) as info:
        _run(["compare", str(base), str(cand)])
    assert "\n" not in str(info.value)


def test_compare_command_rejects_bad_alpha(tmp_path, make_results) -> None:
    base = _write(tmp_path / "base.json", make_results(seed=1, case_sets=("one",)))
    with pytest.raises(BenchError, match="--alpha"):
        _run(["compare", str(base), str(base), "--alpha", "2"])
