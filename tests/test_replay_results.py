"""Results files: schema validation, atomic never-overwriting writes, loader errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cases.errors import BenchError
from replay.results import RESULTS_SCHEMA_VERSION, load_results, new_results, write_results


def _results(label: str = "demo run") -> dict:
    results = new_results(label, "Test Machine/01")
    results["case_sets"] = [
        {
            "directory": "cases/x",
            "implementations": {
                "reference": {
                    "samples": {
                        "case_index": [0, 1],
                        "repetition": [0, 0],
                        "warmup": [False, False],
                        "host_ns": [5, 6],
                    },
                    "stats": {"host": None},
                    "correctness": {"verdict": "identical"},
                }
            },
        }
    ]
    return results


def test_write_and_load_roundtrip(tmp_path: Path) -> None:
    json_path, md_path = write_results(_results(), tmp_path, markdown="| a |\n")
    assert json_path.parent == tmp_path / "test-machine-01"
    assert json_path.name.startswith("0001_demo-run_") and json_path.suffix == ".json"
    assert md_path is not None and md_path.read_text() == "| a |\n" and md_path.stem == json_path.stem
    loaded = load_results(json_path)
    assert loaded["schema_version"] == RESULTS_SCHEMA_VERSION
    assert loaded["case_sets"][0]["implementations"]["reference"]["samples"]["host_ns"] == [5, 6]
    assert not [p for p in json_path.parent.iterdir() if p.name.endswith(".tmp")]


def test_never_overwrites(tmp_path: Path) -> None:
    paths = [write_results(_results(), tmp_path, markdown="x")[0] for _ in range(3)]
    assert len(set(paths)) == 3
    assert [p.name[:4] for p in paths] == ["0001", "0002", "0003"]
    # A file that already holds the next number (whatever its name) is left alone; numbering moves past it.
    squatter = paths[0].parent / "0004_other_x.json"
    squatter.write_text("keep me")
    fifth = write_results(_results(), tmp_path)[0]
    assert fifth.name.startswith("0005_") and squatter.read_text() == "keep me"
    for p in paths:
        assert load_results(p)["label"] == "demo run"


@pytest.mark.parametrize("version", [0, RESULTS_SCHEMA_VERSION - 1])
def test_older_schema_is_a_clear_error(tmp_path: Path, version: int) -> None:
    data = _results()
    data["schema_version"] = version
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match=rf"{path}.*schema version {version}, older.*re-run"):
        load_results(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"format": "something-else"}), "not an rlebench results file"),
        (json.dumps({**_results(), "schema_version": RESULTS_SCHEMA_VERSION + 1}), "newer"),
        (json.dumps({k: v for k, v in _results().items() if k != "environment"}), "missing environment"),
    ],
)
def test_bad_results_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(BenchError, match=message):
        load_results(path)


def test_missing_file_and_unequal_samples(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="does not exist"):
        load_results(tmp_path / "nope.json")
    data = _results()
    data["case_sets"][0]["implementations"]["reference"]["samples"]["repetition"] = [0]
    with pytest.raises(BenchError, match="unequal lengths"):
        write_results(data, tmp_path)
    assert not any(tmp_path.rglob("*.json"))


def test_works_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("cases.atomic.os.link", no_links)
    first, md = write_results(_results(), tmp_path, markdown="m")
    second, _ = write_results(_results(), tmp_path)
    assert first != second and load_results(first)["label"] == load_results(second)["label"] == "demo run"
    assert md is not None and md.read_text() == "m"
    assert not [p for p in first.parent.iterdir() if p.name.endswith(".tmp")]
