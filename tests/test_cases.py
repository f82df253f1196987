"""Case files and case sets: exact round trips, one clear CaseError per corruption, atomic writes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cases.caseset import (
    MANIFEST_NAME,
    case_path,
    case_set_digest,
    list_case_files,
    load_case_set,
    manifest_entry,
    read_manifest,
    write_manifest,
)
from cases.errors import CaseError
from cases.format import FORMAT_TAG, SCHEMA_VERSION, read_case, write_case
from kernels.contract import ImageDetections, PostprocessInputs
from kernels.reference import postprocess_reference
from kernels.rle import counts_to_string
from kernels.synthetic import make_inputs

SAMPLES = Path(__file__).resolve().parents[1] / "cases" / "samples"
PROVENANCE = {"source": "synthetic", "impl": "reference", "device": "cpu", "versions": {"torch": torch.__version__}}


def small_inputs(
    seed: int,
    *,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
    mapping: bool = False,
    per_class: bool = False,
    empty: bool = False,
    letterbox: bool = False,
) -> PostprocessInputs:
    """Tiny RF-DETR-like inputs (12 queries, 8 classes, 16x16 masks) so the suite stays fast."""
    return make_inputs(
        seed,
        batch=batch,
        queries=12,
        classes=8,
        input_size=64,
        frame_sizes=[(48, 80), (37, 29)],
        letterbox=letterbox,
        static_crop=letterbox,
        class_mapping=mapping,
        per_class_threshold=per_class,
        threshold=1.0 if empty else 0.5,  # sigmoid never exceeds 1.0: no detections at all
        dtype=dtype,
        num_confident=4,
    )


def write_small(path: Path, seed: int, **kwargs: object) -> tuple[PostprocessInputs, list[ImageDetections]]:
    inputs = small_inputs(seed, **kwargs)  # type: ignore[arg-type]
    expected = postprocess_reference(inputs)
    write_case(path, inputs, expected, PROVENANCE)
    return inputs, expected


def assert_same_tensor(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(a, b)


def assert_same_detections(a: list[ImageDetections], b: list[ImageDetections]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for name in ("xyxy", "confidence", "class_id"):
            u, v = getattr(x, name), getattr(y, name)
            assert u.dtype == v.dtype and u.shape == v.shape
            assert np.array_equal(u, v)
        assert x.masks == y.masks  # RleMask equality: size and counts bytes


# ------------------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("mapping", [False, True])
@pytest.mark.parametrize("per_class", [False, True])
def test_round_trip(tmp_path: Path, seed: int, dtype: torch.dtype, batch: int, mapping: bool, per_class: bool) -> None:
    path = case_path(tmp_path, 3)
    inputs, expected = write_small(
        path, seed + batch, batch=batch, dtype=dtype, mapping=mapping, per_class=per_class, letterbox=mapping
    )
    case = read_case(path)
    assert case.path == path
    got = case.inputs
    for name in ("boxes", "logits", "masks"):
        assert_same_tensor(getattr(got, name), getattr(inputs, name))
    if per_class:
        assert isinstance(got.threshold, torch.Tensor)
        assert_same_tensor(got.threshold, inputs.threshold)  # type: ignore[arg-type]
    else:
        # a Python float is stored as float32; the post-processing compares in float32, so this is lossless
        assert got.threshold == float(np.float32(inputs.threshold))  # type: ignore[arg-type]
    if mapping:
        assert got.class_mapping is not None and inputs.class_mapping is not None
        assert_same_tensor(got.class_mapping, inputs.class_mapping)
    else:
        assert got.class_mapping is None
    assert got.num_classes == inputs.num_classes
    assert got.max_detections == inputs.max_detections
    assert got.preprocess == inputs.preprocess
    assert_same_detections(case.expected, expected)
    assert case.provenance == PROVENANCE
    assert case.metadata["format"] == FORMAT_TAG
    assert case.metadata["schema_version"] == SCHEMA_VERSION
    # what was read reproduces what was recorded
    assert_same_detections(postprocess_reference(got), expected)


@pytest.mark.parametrize("batch", [1, 2])
def test_round_trip_empty_detections(tmp_path: Path, seed: int, batch: int) -> None:
    path = tmp_path / "case_000000.safetensors"
    _, expected = write_small(path, seed, batch=batch, empty=True)
    assert all(len(det) == 0 for det in expected)
    case = read_case(path)
    assert_same_detections(case.expected, expected)
    assert case.expected[0].xyxy.shape == (0, 4)


@pytest.mark.parametrize("max_detections", [0, 2])
def test_round_trip_max_detections(tmp_path: Path, seed: int, max_detections: int) -> None:
    inputs = small_inputs(seed)
    inputs.max_detections = max_detections
    expected = postprocess_reference(inputs)
    path = tmp_path / "case_000000.safetensors"
    write_case(path, inputs, expected, {})
    case = read_case(path)
    assert case.inputs.max_detections == max_detections
    assert case.metadata["max_detections"] == str(max_detections)
    assert_same_detections(case.expected, expected)


def test_no_max_detections_is_stored_as_none(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "case_000000.safetensors"
    write_small(path, seed)
    assert read_case(path).metadata["max_detections"] == "none"


def test_writes_are_byte_deterministic_and_standard(tmp_path: Path, seed: int) -> None:
    """Equal cases give equal files (sorted keys), and the safetensors library reads them unchanged."""
    first, second = tmp_path / "case_000000.safetensors", tmp_path / "case_000001.safetensors"
    inputs, expected = write_small(first, seed, batch=2, mapping=True, per_class=True, dtype=torch.float16)
    write_case(second, inputs, expected, dict(reversed(list(PROVENANCE.items()))))
    assert first.read_bytes() == second.read_bytes()
    loaded = load_file(str(first))
    assert_same_tensor(loaded["masks"], inputs.masks)
    assert_same_tensor(loaded["class_mapping"], inputs.class_mapping)  # type: ignore[arg-type]
    assert loaded["expected/1/rle_offsets"].shape == (len(expected[1]) + 1,)
    header_len = int.from_bytes(first.read_bytes()[:8], "little")
    assert header_len % 8 == 0


def test_write_accepts_views(tmp_path: Path, seed: int) -> None:
    """Non-contiguous tensors and slices of one buffer (as a model's outputs often are) are stored by value."""
    inputs = small_inputs(seed)
    packed = torch.cat([inputs.boxes, inputs.logits], dim=-1)
    inputs.boxes, inputs.logits = packed[..., :4], packed[..., 4:]
    inputs.masks = inputs.masks.transpose(2, 3).contiguous().transpose(2, 3)
    assert not inputs.masks.is_contiguous()
    expected = postprocess_reference(inputs)
    path = tmp_path / "case_000000.safetensors"
    write_case(path, inputs, expected, {})
    case = read_case(path)
    assert_same_tensor(case.inputs.boxes, inputs.boxes.contiguous())
    assert_same_tensor(case.inputs.masks, inputs.masks.contiguous())


# ------------------------------------------------------------------------------------------ corruption


def rewrite(path: Path, edit: Callable[[dict[str, torch.Tensor], dict[str, str]], None]) -> None:
    """Re-save a valid case after editing its tensors/metadata in place (a file another tool wrote badly)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    edit(tensors, metadata)
    save_file(tensors, str(path), metadata=metadata)


def truncate(keep: Callable[[int], int]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: keep(len(data))])

    return apply


def set_meta(key: str, value: str | None) -> Callable[[Path], None]:
    def edit(tensors: dict, metadata: dict) -> None:
        if value is None:
            del metadata[key]
        else:
            metadata[key] = value

    return lambda path: rewrite(path, edit)


def edit_tensors(fn: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    return lambda path: rewrite(path, lambda tensors, metadata: fn(tensors))


def edit_preprocess(fn: Callable[[list], object]) -> Callable[[Path], None]:
    def edit(tensors: dict, metadata: dict) -> None:
        entries = json.loads(metadata["preprocess"])
        metadata["preprocess"] = json.dumps(fn(entries))

    return lambda path: rewrite(path, edit)


def _set(key: str, make: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> Callable[[dict], None]:
    def apply(tensors: dict) -> None:
        tensors[key] = make(tensors)

    return apply


def _drop(key: str) -> Callable[[dict], None]:
    return lambda tensors: tensors.pop(key)


def _offsets(fn: Callable[[torch.Tensor], None]) -> Callable[[dict], None]:
    """Edit image 0's rle_offsets in place (on a copy)."""

    def apply(tensors: dict) -> None:
        offsets = tensors["expected/0/rle_offsets"].clone()
        fn(offsets)
        tensors["expected/0/rle_offsets"] = offsets

    return apply


def _bad_counts_string(tensors: dict) -> None:
    counts = tensors["expected/0/rle_counts"].clone()
    counts[-1] = ord("~")  # 126 - 48 = 78: not a COCO counts character
    tensors["expected/0/rle_counts"] = counts


def _last_string(make: Callable[[int], bytes]) -> Callable[[dict], None]:
    """Replace image 0's last counts string by make(H * W) (the first image is 48x80), fixing the offsets."""

    def apply(tensors: dict) -> None:
        counts, offsets = tensors["expected/0/rle_counts"], tensors["expected/0/rle_offsets"].clone()
        text = make(48 * 80)
        start = int(offsets[-2])
        tensors["expected/0/rle_counts"] = torch.cat([counts[:start], torch.tensor(list(text), dtype=torch.uint8)])
        offsets[-1] = start + len(text)
        tensors["expected/0/rle_offsets"] = offsets

    return apply


def _non_canonical(pixels: int) -> bytes:
    """The runs [pixels - 5, 5] with the 5 written in two 5-bit groups ('U0') instead of one ('5')."""
    text = counts_to_string(np.array([pixels - 5, 5]))
    assert text.endswith(b"5")
    return text[:-1] + b"U0"


def _meta_dict(fn: Callable[[dict], None]) -> Callable[[list], list]:
    def apply(entries: list) -> list:
        fn(entries[0])
        return entries

    return apply


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty file": (truncate(lambda n: 0), "not a safetensors file (only 0 bytes"),
    "truncated in the header length": (truncate(lambda n: 5), "not a safetensors file (only 5 bytes"),
    "truncated in the header": (truncate(lambda n: 40), "header length"),
    "truncated in the data": (truncate(lambda n: n // 2), "truncated: tensor data needs"),
    "truncated by one byte": (truncate(lambda n: n - 1), "truncated: tensor data needs"),
    "garbage": (lambda p: p.write_bytes(b"this is a PNG, honest" * 3), "not a safetensors file"),
    "json header but not safetensors": (
        lambda p: p.write_bytes((7).to_bytes(8, "little") + b"[1,2,3]"),
        "header is not a JSON object",
    ),
    "wrong format tag": (set_meta("format", "something.else"), "format tag 'something.else'"),
    "no metadata at all": (lambda p: save_file({"x": torch.zeros(2)}, str(p)), "no __metadata__"),
    "wrong schema": (set_meta("schema_version", "2"), "schema_version 2, this rlebench reads 1"),
    "missing metadata": (set_meta("num_classes", None), "missing metadata num_classes"),
    "unknown metadata": (set_meta("colour", "blue"), "unknown metadata colour"),
    "num_classes not a number": (set_meta("num_classes", "many"), "num_classes='many' is not an integer"),
    "bad max_detections": (set_meta("max_detections", "-3"), "max_detections=-3 must be >= 0"),
    "bad preprocess JSON": (set_meta("preprocess", "[{oops"), "metadata preprocess is not valid JSON"),
    "preprocess not a list": (set_meta("preprocess", '{"a": 1}'), "metadata preprocess must be a JSON list"),
    "preprocess wrong length": (edit_preprocess(lambda e: e + e), "preprocess has 2 entries for a batch of 1"),
    "preprocess missing key": (
        edit_preprocess(_meta_dict(lambda m: m.pop("scale"))),
        "preprocess[0] lacks keys ['scale'] / has unknown keys []",
    ),
    "preprocess invalid meta": (
        edit_preprocess(_meta_dict(lambda m: m.update(original_size=[0, 80]))),
        "preprocess[0] is invalid: original_size must be positive",
    ),
    "preprocess crop outside image": (
        edit_preprocess(_meta_dict(lambda m: m.update(static_crop_offset=[5, 0]))),
        "does not fit the original image",
    ),
    "bad provenance JSON": (set_meta("provenance", "{'single': 'quotes'}"), "metadata provenance is not valid JSON"),
    "provenance not an object": (set_meta("provenance", "[1]"), "provenance must be a JSON object"),
    "missing tensor": (edit_tensors(_drop("expected/0/rle_offsets")), "missing tensor 'expected/0/rle_offsets'"),
    "missing input tensor": (edit_tensors(_drop("masks")), "missing tensor 'masks'"),
    "unknown tensor": (
        edit_tensors(_set("expected/1/xyxy", lambda t: t["expected/0/xyxy"].clone())),
        "unknown tensor 'expected/1/xyxy' (batch size is 1)",
    ),
    "shape mismatch in logits": (
        edit_tensors(_set("logits", lambda t: t["logits"][:, :-1].clone())),
        "logits has shape (1, 11, 8), expected [B=1, Q=12, C]",
    ),
    "shape mismatch in masks": (
        edit_tensors(_set("masks", lambda t: t["masks"][0].clone())),
        "masks has shape (12, 16, 16), expected [B=1, Q=12, h, w]",
    ),
    "boxes not 4 wide": (edit_tensors(_set("boxes", lambda t: t["boxes"][..., :3].clone())), "boxes has shape"),
    "wrong dtype": (
        edit_tensors(_set("boxes", lambda t: t["boxes"].double())),
        "boxes has dtype float64, expected float16 or float32",
    ),
    "threshold matrix": (edit_tensors(_set("threshold", lambda t: torch.zeros(2, 2))), "threshold has shape (2, 2)"),
    "mapping wrong dtype": (
        edit_tensors(_set("class_mapping", lambda t: torch.zeros(3, dtype=torch.int32))),
        "class_mapping has dtype int32, expected int64",
    ),
    "expected count mismatch": (
        edit_tensors(_set("expected/0/confidence", lambda t: t["expected/0/confidence"][:-1].clone())),
        "expected/0/confidence has shape",
    ),
    "offsets not N+1": (
        edit_tensors(_set("expected/0/rle_offsets", lambda t: t["expected/0/rle_offsets"][:-1].clone())),
        "expected/0/rle_offsets has shape",
    ),
    "offsets past counts": (edit_tensors(_offsets(lambda o: o.__setitem__(-1, o[-1] + 1))), "rle_offsets ends at"),
    "offsets not from 0": (edit_tensors(_offsets(lambda o: o.__setitem__(0, 1))), "rle_offsets starts at 1, not 0"),
    "offsets decreasing": (edit_tensors(_offsets(lambda o: o.__setitem__([1, -1], o[[-1, 1]]))), "decreases"),
    "invalid counts character": (edit_tensors(_bad_counts_string), "invalid COCO counts string"),
    "runs do not cover the image": (
        edit_tensors(_last_string(lambda n: counts_to_string(np.array([n - 7, 6])))),
        "runs cover 3839 pixels, the 48x80 image has 3840",
    ),
    "zero-length run": (
        edit_tensors(_last_string(lambda n: counts_to_string(np.array([n - 5, 0, 5])))),
        "empty or negative runs",
    ),
    "non-canonical counts string": (edit_tensors(_last_string(_non_canonical)), "not in canonical (pycocotools) form"),
    "box outside the image": (
        edit_tensors(_set("expected/0/xyxy", lambda t: t["expected/0/xyxy"] + 10_000)),
        "boxes outside the 80x48 image",
    ),
    "confidence above 1": (
        edit_tensors(_set("expected/0/confidence", lambda t: t["expected/0/confidence"] + 2)),
        "confidence has values outside [0, 1]",
    ),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_case_gives_clear_error(tmp_path: Path, seed: int, kind: str) -> None:
    corrupt, message = CORRUPTIONS[kind]
    path = tmp_path / "case_000000.safetensors"
    _, expected = write_small(path, seed)
    assert len(expected[0]) >= 2, "the corruptions below need a few detections"
    corrupt(path)
    with pytest.raises(CaseError) as info:
        read_case(path)
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    assert message in text, text
    assert "\n" not in text


def test_missing_case_file(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match="no such file"):
        read_case(tmp_path / "case_000000.safetensors")


def test_case_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match="not a file"):
        read_case(tmp_path)


# ------------------------------------------------------------------------------------------ atomic writes


def test_failed_validation_writes_nothing(tmp_path: Path, seed: int) -> None:
    inputs = small_inputs(seed)
    expected = postprocess_reference(inputs)
    path = tmp_path / "case_000000.safetensors"
    with pytest.raises(CaseError, match="provenance is not JSON-serialisable"):
        write_case(path, inputs, expected, {"when": object()})
    with pytest.raises(CaseError, match="expected has 2 entries for a batch of 1"):
        write_case(path, inputs, expected * 2, {})
    bad_masks = [ImageDetections(expected[0].xyxy, expected[0].confidence, expected[0].class_id, [])]
    with pytest.raises(CaseError, match="masks"):
        write_case(path, inputs, bad_masks, {})
    inputs.preprocess = inputs.preprocess * 2
    with pytest.raises(CaseError, match="invalid inputs: preprocess has 2 entries"):
        write_case(path, inputs, expected, {})
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_leaves_old_file_and_no_temp(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "case_000000.safetensors"
    write_small(path, seed)
    before = path.read_bytes()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CaseError, match=r"cannot write \(No space left on device\)"):
        write_small(path, seed + 1)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_interrupted_write_leaves_no_temp(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_small(tmp_path / "case_000000.safetensors", seed)
    assert list(tmp_path.iterdir()) == []


def test_write_into_missing_directory(tmp_path: Path, seed: int) -> None:
    with pytest.raises(CaseError, match="does not exist"):
        write_small(tmp_path / "nope" / "case_000000.safetensors", seed)


# ------------------------------------------------------------------------------------------ case sets


def make_set(directory: Path, seed: int, count: int = 3, manifest: bool = True) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    entries, paths = [], []
    for i in range(count):
        path = case_path(directory, i)
        inputs, expected = write_small(path, seed + i, batch=1 + i % 2)
        entries.append(manifest_entry(path, inputs, expected, frame_index=i))
        paths.append(path)
    if manifest:
        write_manifest(directory, {"source": "synthetic", "cases": entries})
    return paths


def test_case_path_and_listing(tmp_path: Path) -> None:
    assert case_path(tmp_path, 0).name == "case_000000.safetensors"
    assert case_path(tmp_path, 1234567).name == "case_1234567.safetensors"
    for name in ["case_000010.safetensors", "case_000002.safetensors", "case_1000000.safetensors", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / ".case_000003.safetensors.ab12.tmp").write_bytes(b"")
    (tmp_path / "case_000004.safetensors").mkdir()
    assert [p.name for p in list_case_files(tmp_path)] == [
        "case_000002.safetensors",
        "case_000010.safetensors",
        "case_1000000.safetensors",
    ]


def test_load_case_set(tmp_path: Path, seed: int) -> None:
    paths = make_set(tmp_path, seed)
    case_set = load_case_set(tmp_path)
    assert [case.path for case in case_set.cases] == paths
    assert case_set.bad == []
    assert case_set.manifest["format"] == "rlebench.caseset"
    assert case_set.manifest["count"] == 3
    assert [case.inputs.batch_size for case in case_set.cases] == [1, 2, 1]
    assert len(load_case_set(tmp_path, max_cases=2).cases) == 2


def test_load_without_manifest(tmp_path: Path, seed: int) -> None:
    make_set(tmp_path, seed, count=2, manifest=False)
    case_set = load_case_set(tmp_path)
    assert case_set.manifest == {}
    assert len(case_set.cases) == 2


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "case directory does not exist"),
        (lambda d: d.write_text("x"), "not a directory"),
        (lambda d: d.mkdir(), "no case files"),
        (lambda d: (d.mkdir(), (d / MANIFEST_NAME).write_text("{}")), "no case files"),
    ],
    ids=["missing", "file", "empty", "manifest only"],
)
def test_load_bad_directory(tmp_path: Path, setup: Callable[[Path], object], message: str) -> None:
    directory = tmp_path / "set"
    setup(directory)
    with pytest.raises(CaseError, match=message) as info:
        load_case_set(directory)
    assert str(directory) in str(info.value)


def test_bad_case_raises_or_is_skipped(tmp_path: Path, seed: int) -> None:
    paths = make_set(tmp_path, seed)
    truncate(lambda n: n // 3)(paths[1])
    with pytest.raises(CaseError, match="truncated") as info:
        load_case_set(tmp_path)
    assert str(paths[1]) in str(info.value)
    case_set = load_case_set(tmp_path, skip_bad=True)
    assert [case.path for case in case_set.cases] == [paths[0], paths[2]]
    assert [path for path, _ in case_set.bad] == [paths[1]]
    assert "truncated" in case_set.bad[0][1]


def test_manifest_must_match_files(tmp_path: Path, seed: int) -> None:
    paths = make_set(tmp_path, seed)
    paths[2].unlink()
    with pytest.raises(CaseError, match=r"case_000002\.safetensors: listed in manifest\.json but missing"):
        load_case_set(tmp_path)
    assert [p.name for p, _ in load_case_set(tmp_path, skip_bad=True).bad] == ["case_000002.safetensors"]
    write_small(case_path(tmp_path, 2), seed + 2, batch=1)
    write_small(case_path(tmp_path, 7), seed)
    with pytest.raises(CaseError, match=r"case_000007\.safetensors: not listed in manifest\.json"):
        load_case_set(tmp_path)


def test_manifest_detections_must_match(tmp_path: Path, seed: int) -> None:
    make_set(tmp_path, seed)
    manifest = read_manifest(tmp_path)
    manifest["cases"][0]["detections"] = [99]
    write_manifest(tmp_path, manifest)
    with pytest.raises(CaseError, match=r"case_000000.safetensors: detections \[\d+\], manifest.json says \[99\]"):
        load_case_set(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"format": "x"}', "format 'x', expected 'rlebench.caseset'"),
        ('{"format": "rlebench.caseset", "schema_version": "9"}', "schema_version 9, this rlebench reads 1"),
        ('{"format": "rlebench.caseset", "schema_version": "1", "count": 0}', "'cases' must be a list"),
        ('{"format": "rlebench.caseset", "schema_version": "1", "count": 2, "cases": []}', "count 2 does not match"),
        (
            '{"format": "rlebench.caseset", "schema_version": "1", "count": 1, "cases": [{"file": "../x"}]}',
            "cases\\[0\\] needs a 'file'",
        ),
    ],
)
def test_bad_manifest(tmp_path: Path, seed: int, text: str, message: str) -> None:
    make_set(tmp_path, seed, count=1)
    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(CaseError, match=message) as info:
        load_case_set(tmp_path)
    assert str(tmp_path / MANIFEST_NAME) in str(info.value)


def test_write_manifest_is_atomic_and_complete(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"cases": [{"file": "case_000000.safetensors"}], "fps": 12.5})
    manifest = read_manifest(tmp_path)
    assert manifest["format"] == "rlebench.caseset" and manifest["schema_version"] == "1"
    assert manifest["count"] == 1 and manifest["fps"] == 12.5
    with pytest.raises(CaseError, match="not JSON-serialisable"):
        write_manifest(tmp_path, {"cases": [], "fps": float("nan")})
    with pytest.raises(CaseError, match="listed twice"):
        write_manifest(tmp_path, {"cases": [{"file": "case_000000.safetensors"}] * 2})
    assert read_manifest(tmp_path) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]


def test_digest_tracks_manifest_and_files(tmp_path: Path, seed: int) -> None:
    paths = make_set(tmp_path, seed, count=2)
    first = case_set_digest(tmp_path)
    assert first == case_set_digest(tmp_path) == load_case_set(tmp_path).digest()
    assert len(first) == 64
    manifest = read_manifest(tmp_path)
    write_manifest(tmp_path, {**manifest, "fps": 30})
    second = case_set_digest(tmp_path)
    assert second != first
    paths[1].write_bytes(paths[1].read_bytes() + b" ")
    assert case_set_digest(tmp_path) != second


# ------------------------------------------------------------------------------------------ shipped samples


@pytest.mark.parametrize("name", ["nano-312", "nano-letterbox"])
def test_sample_sets_are_valid_and_reproduce(name: str) -> None:
    case_set = load_case_set(SAMPLES / name)
    assert len(case_set.cases) >= 2
    assert case_set.manifest["source"] == "synthetic"
    for case in case_set.cases:
        assert case.provenance["source"] == "synthetic"
        assert all(len(det) > 0 for det in case.expected)
        assert_same_detections(postprocess_reference(case.inputs), case.expected)


def test_samples_stay_small() -> None:
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total < 10 * 1024 * 1024


def test_atomic_write_is_umask_readable_and_never_overwrites_when_asked(tmp_path: Path) -> None:
    from cases.atomic import AlreadyExists, atomic_write

    target = atomic_write(tmp_path / "a.txt", "one")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(AlreadyExists):
        atomic_write(target, "two", replace=False)
    assert target.read_text() == "one"

    def failing_writer(path: Path) -> None:
        path.write_text("partial")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "b.txt", failing_writer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
