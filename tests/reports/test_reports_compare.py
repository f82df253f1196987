"""Run-to-run comparison: the gate fires on a significant regression past its threshold, and only then."""

from __future__ import annotations

import json

import pytest

from cases.errors import BenchError
from replay.compare import Threshold, compare_results, parse_threshold
from replay.results import load_results


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p50:5%", Threshold("p50", 0.05)),
        ("p99:10", Threshold("p99", 0.10)),
        ("mean:2.5%", Threshold("mean", 0.025)),
        ("device.p90:7%", Threshold("p90", 0.07, "device")),
        ("host_post.max:50%", Threshold("max", 0.5, "host_post")),
        ("correctness", "correctness"),
    ],
)
def test_parse_threshold(text: str, expected) -> None:
    assert parse_threshold(text) == expected


@pytest.mark.parametrize("text", ["p50", "p50:", "p42:5%", "p50:-5%", "gpu.p50:5%", "p50:five"])
def test_parse_threshold_rejects_with_one_line(text: str) -> None:
    with pytest.raises(BenchError, match="--fail-on") as info:
        parse_threshold(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_unchanged_run_passes(make_results, seed: int) -> None:
    base = make_results(seed=1)
    candidate = make_results(seed=seed)
    comparison = compare_results(base, candidate, [parse_threshold("p50:5%"), parse_threshold("p90:10%")])
    assert comparison.exit_code == 0, comparison.markdown()
    assert comparison.failures == []
    assert {row.status for row in comparison.rows} <= {"ok"}
    assert len(comparison.rows) == 2 * 2 * 2  # case sets x implementations x metrics
    assert all(abs(row.delta) < 0.05 for row in comparison.rows)


@pytest.mark.parametrize("metric", ["p50", "mean", "p90"])
def test_injected_20_percent_regression_fails(make_results, metric: str) -> None:
    base = make_results(seed=1)
    candidate = make_results(seed=2, slowdown={"triton": 0.6})  # 0.5 -> 0.6 of the reference: 20% slower
    comparison = compare_results(base, candidate, [parse_threshold(f"{metric}:5%")])
    assert comparison.exit_code == 1
    regressions = [r for r in comparison.rows if r.status == "regression"]
    assert {(r.implementation, r.metric) for r in regressions} == {("triton", metric)}
    assert len(regressions) == 2  # both case sets
    for row in regressions:
        assert row.delta == pytest.approx(0.2, abs=0.05)  # 20% injected, 3% lognormal noise per call
        assert row.significant and row.p_value < 0.05
        assert row.ci95[0] > 0.05
    assert len(comparison.failures) == 2
    assert all("triton" in line and "past the 5% threshold" in line for line in comparison.failures)
    assert "**REGRESSION**" in comparison.markdown()
    assert "Gate: FAILED" in comparison.markdown()


def test_regression_below_threshold_passes(make_results) -> None:
    base = make_results(seed=1)
    candidate = make_results(seed=2, slowdown={"triton": 0.6})
    comparison = compare_results(base, candidate, [parse_threshold("p50:30%")])
    assert comparison.exit_code == 0
    assert any(r.significant and r.delta > 0.1 for r in comparison.rows)


def test_improvement_never_fails(make_results) -> None:
    base = make_results(seed=1)
    candidate = make_results(seed=2, slowdown={"triton": 0.3})
    comparison = compare_results(base, candidate)
    assert comparison.exit_code == 0
    assert {r.status for r in comparison.rows if r.implementation == "triton"} == {"improvement"}


@pytest.mark.parametrize("repeats", [1, 2, 3])
def test_too_few_repetitions_cannot_be_significant(make_results, repeats: int) -> None:
    base = make_results(seed=1, repeats=repeats)
    candidate = make_results(seed=2, repeats=repeats, slowdown={"triton": 0.6})
    comparison = compare_results(base, candidate)
    assert comparison.exit_code == 0  # 3 vs 3 passes: p >= 0.08 at best, so the gate cannot fire on it
    assert any("--repeats 4 or more" in w for w in comparison.warnings)


def test_different_case_sets_give_a_clear_line(make_results) -> None:
    base = make_results(seed=1)
    candidate = make_results(seed=1, manifest_prefix="sha256:changed-")
    with pytest.raises(BenchError, match="share no case set") as info:
        compare_results(base, candidate)
    assert "\n" not in str(info.value)


def test_partly_different_case_sets_warn(make_results) -> None:
    base = make_results(seed=1, case_sets=("a", "b"))
    candidate = make_results(seed=2, case_sets=("a", "c"))
    comparison = compare_results(base, candidate)
    assert {r.case_set for r in comparison.rows} == {"a"}
    assert any("case set b is only in the base run" in w for w in comparison.warnings)
    assert any("case set c is only in the candidate run" in w for w in comparison.warnings)


def test_environment_differences_warn(make_results) -> None:
    base = make_results(seed=1, gpu="NVIDIA H100 80GB HBM3")
    candidate = make_results(seed=2, gpu="NVIDIA A100-SXM4-40GB")
    candidate["environment"]["gpu"]["driver"] = "550.1"
    candidate["environment"]["torch"] = "2.11.0"
    warnings = compare_results(base, candidate).warnings
    assert any(w.startswith("different GPUs") for w in warnings)
    assert any(w.startswith("different GPU drivers") for w in warnings)
    assert any(w.startswith("different torch versions") for w in warnings)
    cpu = make_results(seed=3)
    assert any("one run used a GPU" in w for w in compare_results(base, cpu).warnings)


def test_host_speed_probe_warnings(make_results) -> None:
    """Probes of the two runs 1.5x apart, or one run's own probes 1.6x apart: said; files without probes, or
    probes within 1.25x: silence."""
    base, candidate = make_results(seed=1), make_results(seed=2)
    assert not [w for w in compare_results(base, candidate).warnings if "host" in w]
    base["host_probe"] = [{"at": "start", "p50_ns": 40_000}, {"at": "end", "p50_ns": 42_000}]
    candidate["host_probe"] = [{"at": "start", "p50_ns": 44_000}, {"at": "end", "p50_ns": 45_000}]
    assert not [w for w in compare_results(base, candidate).warnings if "host" in w]
    candidate["host_probe"] = [{"at": "start", "p50_ns": 60_000}, {"at": "end", "p50_ns": 64_000}]
    (warning,) = [w for w in compare_results(base, candidate).warnings if "host" in w]
    assert warning.startswith("the host ran at another speed: host speed probe p50 41 us (base) against 62 us")
    base["host_probe"].append({"at": "cases/x", "p50_ns": 64_000})
    warnings = [w for w in compare_results(base, candidate).warnings if "host" in w]
    assert warnings[0] == "the host's speed moved by 1.60x during the base run (host speed probe)"
    assert len(warnings) == 2 and warnings[1].startswith("the host ran at another speed")  # medians 42 and 62 us


def test_other_implementation_settings_warn(make_results) -> None:
    """An implementation whose recorded settings differ between the runs (e.g. triton's host steps in C, then in
    Python) is named; settings missing on a side (older files, or none recorded) say nothing."""
    base, candidate = make_results(seed=1), make_results(seed=2)
    for run, steps in ((base, "c"), (candidate, "python")):
        for case_set in run["case_sets"]:
            case_set["implementations"]["triton"]["settings"] = {"host_steps": steps}
    (warning,) = [w for w in compare_results(base, candidate).warnings if "settings" in w]
    assert warning == "triton ran with other settings: base {'host_steps': 'c'}, candidate {'host_steps': 'python'}"
    for case_set in candidate["case_sets"]:
        del case_set["implementations"]["triton"]["settings"]
    assert not [w for w in compare_results(base, candidate).warnings if "settings" in w]


def test_implementation_only_on_one_side_warns(make_results) -> None:
    base = make_results(seed=1, impls=("reference",))
    candidate = make_results(seed=2)
    comparison = compare_results(base, candidate)
    assert {r.implementation for r in comparison.rows} == {"reference"}
    assert any("triton is only in the candidate run" in w for w in comparison.warnings)


@pytest.mark.parametrize("gate", [False, True])
def test_correctness_regression(make_results, gate: bool) -> None:
    base = make_results(seed=1)
    candidate = make_results(seed=2, verdicts={"triton": "mismatch"})
    fail_on = [parse_threshold("p50:5%")] + (["correctness"] if gate else [])
    comparison = compare_results(base, candidate, fail_on)
    lines = comparison.failures if gate else comparison.warnings
    assert any("correctness went from identical to mismatch" in line for line in lines)
    assert comparison.exit_code == (1 if gate else 0)


def test_older_schema_gives_a_clear_line(tmp_path, make_results) -> None:
    old = make_results()
    old["schema_version"] = 0
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    with pytest.raises(BenchError, match="older than version") as info:
        load_results(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_markdown_table_shape(make_results) -> None:
    text = compare_results(make_results(seed=1), make_results(seed=2)).markdown()
    header = next(line for line in text.splitlines() if line.startswith("| case set"))
    rows = [line for line in text.splitlines() if line.startswith("| nano-312") or line.startswith("| hd-720p")]
    assert len(rows) == 4
    assert all(row.count("|") == header.count("|") for row in rows)
    for column in ("base", "candidate", "delta", "95% CI", "| p |", "significant"):
        assert column in header
