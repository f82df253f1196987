"""`bench info`: the summary of the shipped sample sets, and one-line errors with exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cases.caseset import MANIFEST_NAME, read_manifest
from rlebench.cli import main

SAMPLES = Path(__file__).resolve().parents[1] / "cases" / "samples"


def run_info(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["info", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_info_text_on_nano_312(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_info(capsys, str(SAMPLES / "nano-312"))
    assert code == 0, err
    assert err == ""
    manifest = read_manifest(SAMPLES / "nano-312")
    per_case = [sum(entry["detections"]) for entry in manifest["cases"]]
    assert f"cases      {manifest['count']} good, 0 bad" in out
    assert "queries    100" in out
    assert "classes    91 logits per query" in out
    assert "masks      78x78 (float32)" in out
    assert "letterbox=no" in out
    assert f"min {min(per_case)}," in out and f"max {max(per_case)}," in out
    assert "source   synthetic" in out
    assert "impl     reference" in out
    assert "case_000000.safetensors" not in out  # only with -v


def test_info_verbose_lists_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_info(capsys, str(SAMPLES / "nano-letterbox"), "-v")
    assert code == 0
    assert "letterbox=yes, static crop=yes" in out
    assert "masks      78x78 (float16)" in out
    assert "threshold  per-class" in out
    for entry in read_manifest(SAMPLES / "nano-letterbox")["cases"]:
        line = next(line for line in out.splitlines() if entry["file"] in line)
        assert "B=2" in line and f"detections {entry['detections']}" in line


@pytest.mark.parametrize("name", ["nano-312", "nano-letterbox"])
def test_info_json(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, _ = run_info(capsys, str(SAMPLES / name), "--json")
    assert code == 0
    summary = json.loads(out)
    manifest = read_manifest(SAMPLES / name)
    assert summary["cases"] == manifest["count"]
    assert summary["bad"] == []
    assert summary["queries"] == [100 if name == "nano-312" else 50]
    assert summary["mask"] == [[78, 78]]
    assert [row["detections"] for row in summary["per_case"]] == [e["detections"] for e in manifest["cases"]]
    sizes = sum((SAMPLES / name / e["file"]).stat().st_size for e in manifest["cases"])
    assert summary["total_bytes"] == sizes
    assert summary["provenance"]["source"] == "synthetic"
    assert len(summary["digest"]) == 64


def test_info_missing_dir_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    code, out, err = run_info(capsys, str(missing))
    assert code == 2
    assert out == ""
    assert err == f"bench: error: {missing}: case directory does not exist\n"


def test_info_missing_dir_subprocess_has_no_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    proc = subprocess.run(
        [sys.executable, "-m", "rlebench", "info", str(missing)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"bench: error: {missing}: case directory does not exist"]


def test_info_reports_bad_case_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    copy = tmp_path / "set"
    shutil.copytree(SAMPLES / "nano-letterbox", copy)
    bad = copy / "case_000001.safetensors"
    bad.write_bytes(bad.read_bytes()[:1000])
    code, out, err = run_info(capsys, str(copy))
    assert code == 1
    assert "cases      1 good, 1 bad" in out
    assert f"BAD {bad}: " in out
    assert err.strip() == f"bench info: 1 bad case file(s) in {copy}"


def test_info_without_manifest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    copy = tmp_path / "set"
    shutil.copytree(SAMPLES / "nano-letterbox", copy)
    (copy / MANIFEST_NAME).unlink()
    code, out, _ = run_info(capsys, str(copy))
    assert code == 0
    assert "manifest   none (manifest.json missing)" in out
    assert "source   synthetic" in out  # from the cases' own provenance


def test_info_bad_manifest_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    copy = tmp_path / "set"
    shutil.copytree(SAMPLES / "nano-letterbox", copy)
    (copy / MANIFEST_NAME).write_text("{broken")
    code, out, err = run_info(capsys, str(copy))
    assert code == 2
    assert out == ""
    assert err.startswith(f"bench: error: {copy / MANIFEST_NAME}: not valid JSON")
    assert len(err.splitlines()) == 1
