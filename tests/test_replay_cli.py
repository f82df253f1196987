"""`bench replay` end to end on tiny case sets: results, gate, user implementations, and every bad input."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cases.caseset import case_path, manifest_entry, write_manifest
from cases.errors import BenchError
from cases.format import write_case
from kernels.reference import postprocess_reference
from kernels.synthetic import make_inputs
from replay.loading import default_cases_dir
from replay.results import load_results
from rlebench.cli import main

SMALL = {"queries": 20, "classes": 8, "input_size": 64, "frame_sizes": [(48, 64)], "num_confident": 4}

USER_MODULE = '''
"""Implementations a user might plug in with --impl module:function (test doubles)."""
import numpy as np
from kernels.contract import RleMask
from kernels.reference import postprocess_reference, select_detections, upsampled_mask_logits
from kernels.rle import decode, encode


def same(inputs):
    return postprocess_reference(inputs)


def raises(inputs):
    raise RuntimeError("boom in user code")


def wrong(inputs):
    return "not a list"


def flip_one_pixel(inputs):
    out = postprocess_reference(inputs)
    if len(out[0]) == 0:
        return out
    q = int(select_detections(inputs)[0].query[0])
    logits = upsampled_mask_logits(inputs.masks[0, q], inputs.preprocess[0]).cpu().numpy()
    ys, xs = np.nonzero(np.abs(logits) > 0.5)  # far from 0: a real bug, not a rounding tie
    mask = decode(out[0].masks[0])
    ox, oy = inputs.preprocess[0].static_crop_offset
    mask[ys[0] + oy, xs[0] + ox] ^= True
    out[0].masks[0] = encode(mask)
    return out


CALLS = []


def interrupt_on_fourth_call(inputs):
    CALLS.append(1)
    if len(CALLS) == 4:
        raise KeyboardInterrupt
    return postprocess_reference(inputs)


class Phased:
    """enqueue/finish protocol: replay times the phases apart."""

    def __call__(self, inputs):
        return self.finish(self.enqueue(inputs))

    def enqueue(self, inputs):
        return inputs

    def finish(self, handle):
        return postprocess_reference(handle)
'''


def _write_set(directory: Path, seed: int, count: int) -> Path:
    directory.mkdir(parents=True)
    entries = []
    for index in range(count):
        inputs = make_inputs(seed + index, **SMALL)
        expected = postprocess_reference(inputs)
        path = case_path(directory, index)
        write_case(path, inputs, expected, {"source": "test", "impl": "reference"})
        entries.append(manifest_entry(path, inputs, expected))
    write_manifest(directory, {"source": "test", "cases": entries})
    return directory


@pytest.fixture(scope="module")
def case_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_set(tmp_path_factory.mktemp("sets") / "tiny", 4242, 3)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "rb_user_impls.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "rb_user_impls"


def _replay(results_dir: Path, *args: str) -> int:
    return main(
        [
            "replay",
            "--repeats",
            "2",
            "--warmup-repeats",
            "1",
            "--no-progress",
            "--device",
            "cpu",
            "--results-dir",
            str(results_dir),
            *args,
        ]
    )


def _only_results(results_dir: Path) -> dict:
    files = sorted(results_dir.rglob("*.json"))
    assert len(files) == 1, files
    assert files[0].with_suffix(".md").is_file()
    return load_results(files[0])


def test_replay_warns_when_the_host_speed_moved(
    case_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probes 1.6x apart: the terminal says so, and the Markdown summary too; probes close together: silence."""
    import replay.runner as runner

    for probes, warned in (([40_000, 41_000, 64_000], True), ([40_000, 41_000, 42_000], False)):
        monkeypatch.setattr(runner, "host_probe_ns", iter(probes).__next__)
        out_dir = tmp_path / f"results_{warned}"
        assert _replay(out_dir, "--cases-dir", str(case_set), "--impl", "reference", "--no-plots") == 0
        printed = capsys.readouterr().out
        assert ("warning: the host's speed moved by 1.60x during the run" in printed) is warned
        (markdown,) = out_dir.rglob("*.md")
        assert ("The host's speed moved by 1.60x" in markdown.read_text()) is warned


def test_replay_writes_results_with_statistics(
    case_set: Path, tmp_path: Path, user_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "results"
    code = _replay(
        out_dir, "--cases-dir", str(case_set), "--impl", f"reference,{user_module}:same,{user_module}:Phased"
    )
    assert code == 0
    results = _only_results(out_dir)
    (entry,) = results["case_sets"]
    assert entry["num_cases"] == 3 and entry["manifest_hash"].startswith("sha256:")
    assert list(entry["implementations"]) == ["reference", f"{user_module}:same", f"{user_module}:Phased"]
    for spec, impl in entry["implementations"].items():
        samples = impl["samples"]
        assert len(samples["host_ns"]) == 3 * 3  # (1 warm-up + 2 timed passes) x 3 cases
        assert sum(samples["warmup"]) == 3
        assert sorted(samples["case_index"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert impl["stats"]["host"]["count"] == 6 and impl["stats"]["host"]["p99_reliable"] is False
        assert all(v is not None for v in impl["per_case_median_ns"]["host"])
        assert impl["correctness"]["verdict"] == "identical" and impl["correctness"]["calls"] == 9
        assert len(samples["previous"]) == 9 and set(samples["previous"]) <= {None, *entry["implementations"]}
        by_previous = impl["host_by_previous"]
        assert sum(g["count"] for g in by_previous.values()) == 6
        assert set(by_previous) <= {"", *entry["implementations"]}
        if spec == "reference":
            assert impl["speedup"] is None
        else:
            sp = impl["speedup"]
            assert sp["ci95"][0] <= sp["ratio_of_medians"] <= sp["ci95"][1]
            assert sp["geomean_per_case"] > 0 and 0.0 <= sp["mann_whitney_p"] <= 1.0
    phased = entry["implementations"][f"{user_module}:Phased"]
    assert phased["phased"] and phased["stats"]["host_post"]["count"] == 6
    assert entry["implementations"]["reference"]["settings"] is None  # (an implementation's own `settings`)
    assert results["environment"]["cpu_model"] and results["environment"]["torch"] == torch.__version__
    assert results["config"]["timed_passes"] == 2 and results["gate_passed"] is True
    probes = results["host_probe"]  # replay/probe.py: at the start, before each case set, at the end
    assert [p["at"] for p in probes] == ["start", str(case_set), "end"] and all(p["p50_ns"] > 0 for p in probes)
    code = results["config"]["code"]
    assert list(code) == ["reference", f"{user_module}:same", f"{user_module}:Phased"]
    assert code["reference"]["name"] == "kernels.reference.ReferenceImplementation"
    assert code[f"{user_module}:same"]["name"] == f"{user_module}.same"
    assert all(c["digest"].startswith("sha256:") and c["files"] > 0 for c in code.values())
    assert code[f"{user_module}:same"]["digest"] != code["reference"]["digest"]  # the user's directory, not ours
    printed = capsys.readouterr().out
    assert "speed-up [95% CI]" in printed and "identical (9/9 calls pass)" in printed
    (markdown,) = out_dir.rglob("*.md")
    row = next(line for line in markdown.read_text().splitlines() if line.startswith("| host p50 (calls) after"))
    assert row.count("`") == 2 * 3 and row.endswith("| a chunk's start |")


def test_flipped_pixel_fails_the_gate(case_set: Path, tmp_path: Path, user_module: str) -> None:
    code = _replay(tmp_path / "r", "--cases-dir", str(case_set), "--impl", f"reference,{user_module}:flip_one_pixel")
    assert code == 1
    impl = _only_results(tmp_path / "r")["case_sets"][0]["implementations"][f"{user_module}:flip_one_pixel"]
    assert impl["correctness"]["verdict"] == "mismatch"
    assert impl["correctness"]["parity"]["summary"]["real_pixels"] >= 1
    # --no-check: timing only, exit 0
    assert (
        _replay(tmp_path / "r2", "--cases-dir", str(case_set), "--impl", f"{user_module}:flip_one_pixel", "--no-check")
        == 0
    )
    assert (
        _only_results(tmp_path / "r2")["case_sets"][0]["implementations"][f"{user_module}:flip_one_pixel"][
            "correctness"
        ]["verdict"]
        == "unchecked"
    )


@pytest.mark.parametrize("bad_impl", ["raises", "wrong"])
def test_failing_implementation_is_reported_per_case_and_run_continues(
    case_set: Path, tmp_path: Path, user_module: str, bad_impl: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = f"{user_module}:{bad_impl}"
    code = _replay(tmp_path / "r", "--cases-dir", str(case_set), "--impl", f"reference,{spec}")
    assert code == 1
    entry = _only_results(tmp_path / "r")["case_sets"][0]["implementations"]
    assert entry["reference"]["correctness"]["verdict"] == "identical"
    assert entry["reference"]["stats"]["host"]["count"] == 6
    assert entry[spec]["correctness"]["verdict"] == "error"
    assert entry[spec]["correctness"]["errors"] == 9
    err = capsys.readouterr().err
    assert f"bench: {spec}: case " in err
    assert ("RuntimeError: boom in user code" if bad_impl == "raises" else "returned str") in err


def test_interrupted_run_still_writes_completed_work(
    case_set: Path, tmp_path: Path, user_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = f"{user_module}:interrupt_on_fourth_call"
    assert _replay(tmp_path / "r", "--cases-dir", str(case_set), "--impl", spec) == 130
    results = _only_results(tmp_path / "r")
    assert results["status"] == "interrupted" and results["gate_passed"] is False
    impl = results["case_sets"][0]["implementations"][spec]
    assert len(impl["samples"]["host_ns"]) == 3 and impl["correctness"]["identical"] == 3
    assert "interrupted" in capsys.readouterr().err


def _corrupt(directory: Path, kind: str) -> None:
    path = case_path(directory, 1)
    if kind == "garbage":
        path.write_bytes(b"\x00not a safetensors file")
    else:
        save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "someone.else", "schema_version": "9"})


@pytest.mark.parametrize("kind", ["garbage", "foreign"])
def test_corrupt_case_stops_or_is_skipped(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _write_set(tmp_path / "set", 77, 3)
    _corrupt(directory, kind)
    assert _replay(tmp_path / "r", "--cases-dir", str(directory), "--impl", "reference") == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and "case_000001.safetensors" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
    assert _replay(tmp_path / "r", "--cases-dir", str(directory), "--impl", "reference", "--skip-bad") == 0
    entry = _only_results(tmp_path / "r")["case_sets"][0]
    assert entry["num_cases"] == 2 and len(entry["bad"]) == 1 and "case_000001" in entry["bad"][0]["path"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cases-dir", "{missing}"], "does not exist"),
        (["--cases-dir", "{empty}"], "no case files"),
        (["--cases-dir", "{set}", "--impl", "no_such_impl"], "unknown implementation 'no_such_impl'"),
        (["--cases-dir", "{set}", "--impl", "no_such_module_xyz:fn"], "cannot import module"),
    ],
)
def test_bad_input_is_one_clear_line(
    case_set: Path, tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"missing": str(tmp_path / "nope"), "empty": str(tmp_path / "empty"), "set": str(case_set)}
    code = _replay(tmp_path / "r", *[a.format(**paths) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu(case_set: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--cases-dir", str(case_set), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_several_case_sets_options_and_no_overwrite(case_set: Path, tmp_path: Path) -> None:
    other = _write_set(tmp_path / "other", 99, 2)
    out_dir = tmp_path / "r"
    args = ["--cases-dir", str(case_set), "--cases-dir", str(other), "--impl", "reference", "--max-cases", "2"]
    options = ["--cold", "--gc", "--target-ci", "50", "--max-time", "2", "--label", "a b", "--device-events", "inline"]
    assert _replay(out_dir, *args, *options) == 0
    assert _replay(out_dir, *args) == 0
    files = sorted(out_dir.rglob("*.json"))
    assert [f.name[:5] for f in files] == ["0001_", "0002_"]
    first = load_results(files[0])
    assert [cs["num_cases"] for cs in first["case_sets"]] == [2, 2]
    assert first["config"]["cold"] and first["config"]["gc"] and first["config"]["target_ci"] == 0.5
    assert first["config"]["timed_passes"] >= 2 and "_a-b_" in files[0].name
    second = json.loads(files[1].read_text())
    assert second["label"] == "replay"
    assert (first["config"]["device_events"], second["config"]["device_events"]) == ("inline", "separate")


def test_default_cases_dir_is_newest_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchError, match="no captured case set"):
        default_cases_dir(tmp_path / "cases")
    for name, stamp in (("old", 1_000_000_000), ("new", 2_000_000_000), ("mid", 1_500_000_000)):
        (tmp_path / "cases" / name).mkdir(parents=True)
        manifest = tmp_path / "cases" / name / "manifest.json"
        manifest.write_text("{}")
        os.utime(manifest, (stamp, stamp))
    (tmp_path / "cases" / "no-manifest").mkdir()
    monkeypatch.chdir(tmp_path)
    assert default_cases_dir() == Path("cases") / "new"


def test_cpu_affinity_pins_the_replay_and_is_recorded(case_set: Path, tmp_path: Path) -> None:
    """--cpu-affinity pins the process before the replay starts; the results record it in the config, and the
    environment records the CPUs the process may run on either way. An unavailable CPU is a flag error."""
    from replay.affinity import available_cpus, format_cpus, pin_process

    before = available_cpus()
    cpu = min(before)
    try:
        args = ["--cases-dir", str(case_set), "--impl", "reference"]
        assert _replay(tmp_path / "r", *args) == 0
        assert _replay(tmp_path / "r", *args, "--cpu-affinity", str(cpu)) == 0
        assert available_cpus() == {cpu}
    finally:
        pin_process(before)
    free, pinned = (load_results(f) for f in sorted((tmp_path / "r").rglob("*.json")))
    assert free["config"]["cpu_affinity"] is None and free["environment"]["cpu_affinity"] == format_cpus(before)
    assert pinned["config"]["cpu_affinity"] == str(cpu) and pinned["environment"]["cpu_affinity"] == str(cpu)
    with pytest.raises(SystemExit) as exit_info:
        _replay(tmp_path / "r", "--cases-dir", str(case_set), "--cpu-affinity", str(max(before) + 1))
    assert exit_info.value.code == 2
