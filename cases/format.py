"""Read and write one rlebench case file (one recorded post-processing call), as cases/FORMAT.md defines.

The writer is atomic and runs the reader's validation first, so every file written can be read; the
reader checks everything (container, tags, keys, dtypes, shapes, metadata, RLE strings) and raises
CaseError "<path>: <problem>" so a user sees which file is bad and why, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from cases.atomic import WriteError, atomic_write
from cases.errors import CaseError
from kernels.contract import ImageDetections, PostprocessInputs, PreprocessMeta, RleMask
from kernels.rle import counts_to_string, string_to_counts

__all__ = [
    "FORMAT_TAG",
    "SCHEMA_VERSION",
    "NO_MAX_DETECTIONS",
    "Case",
    "write_case",
    "read_case",
    "atomic_write_bytes",
]

FORMAT_TAG = "rlebench.case"
SCHEMA_VERSION = "1"
NO_MAX_DETECTIONS = "none"

_INPUT_KEYS = ("boxes", "logits", "masks", "threshold")
_OPTIONAL_KEYS = ("class_mapping",)
_EXPECTED_FIELDS = ("xyxy", "confidence", "class_id", "rle_counts", "rle_offsets")
_METADATA_KEYS = ("format", "schema_version", "num_classes", "max_detections", "preprocess", "provenance")
_FLOAT_INPUT_DTYPES = (torch.float16, torch.float32)
_PREPROCESS_KEYS = frozenset(
    PreprocessMeta(original_size=(1, 1), inference_size=(1, 1), size_after_preprocessing=(1, 1)).to_json()
)


class _Invalid(Exception):
    """A validation problem, without the file name (the caller adds it)."""


@dataclass
class Case:
    """One case read from disk: CPU inputs, the expected detections, and the recorded provenance.

    metadata is the file's raw `__metadata__` (string -> string), kept for tools that show it.
    """

    path: Path
    inputs: PostprocessInputs
    expected: list[ImageDetections]
    provenance: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)


def _expected_key(b: int, name: str) -> str:
    return f"expected/{b}/{name}"


# ----------------------------------------------------------------------------------------------- writing


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write data to path atomically (cases.atomic); failures become a CaseError naming the file."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CaseError(f"{path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise CaseError(f"{path}: is a directory")
    try:
        atomic_write(path, data)
    except WriteError as err:
        raise CaseError(f"{path}: cannot write ({err.reason})") from None


def _host(t: torch.Tensor) -> torch.Tensor:
    """A CPU, contiguous tensor that owns its memory (safetensors refuses shared or strided storage)."""
    return t.detach().to("cpu").contiguous().clone()


def _encode_tensors(inputs: PostprocessInputs, expected: list[ImageDetections]) -> dict[str, torch.Tensor]:
    tensors = {"boxes": _host(inputs.boxes), "logits": _host(inputs.logits), "masks": _host(inputs.masks)}
    threshold = inputs.threshold
    if isinstance(threshold, torch.Tensor):
        tensors["threshold"] = _host(threshold)
    else:
        tensors["threshold"] = torch.tensor(float(threshold), dtype=torch.float32)
    if inputs.class_mapping is not None:
        tensors["class_mapping"] = _host(inputs.class_mapping)
    for b, det in enumerate(expected):
        original_size = tuple(inputs.preprocess[b].original_size) if b < len(inputs.preprocess) else None
        masks = list(det.masks)
        if len(masks) != len(det):
            raise _Invalid(f"expected[{b}] has {len(det)} detections but {len(masks)} masks")
        for i, rle in enumerate(masks):
            if tuple(rle.size) != original_size:
                raise _Invalid(f"expected[{b}] mask {i} has size {tuple(rle.size)}, the image is {original_size}")
        strings = [bytes(rle.counts) for rle in masks]
        offsets = np.zeros(len(strings) + 1, np.int64)
        offsets[1:] = np.cumsum([len(s) for s in strings], dtype=np.int64)
        tensors[_expected_key(b, "xyxy")] = torch.from_numpy(np.array(det.xyxy, copy=True))
        tensors[_expected_key(b, "confidence")] = torch.from_numpy(np.array(det.confidence, copy=True))
        tensors[_expected_key(b, "class_id")] = torch.from_numpy(np.array(det.class_id, copy=True))
        tensors[_expected_key(b, "rle_counts")] = torch.from_numpy(np.frombuffer(b"".join(strings), np.uint8).copy())
        tensors[_expected_key(b, "rle_offsets")] = torch.from_numpy(offsets)
    return tensors


_SAFETENSORS_DTYPES = {
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int16: "I16",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.bool: "BOOL",
}


def _serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The safetensors bytes of tensors + metadata with keys in sorted order, so equal cases give equal files.

    (safetensors.torch.save orders `__metadata__` by a randomised hash map, so its output varies run to run.)
    Layout: u64 little-endian header length, JSON header padded with spaces to 8 bytes, tensor data.
    """
    if sys.byteorder != "little":
        raise RuntimeError("case files are little-endian; this writer needs a little-endian host")
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    chunks = []
    offset = 0
    for key in sorted(tensors):
        tensor = tensors[key].contiguous()
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[key] = {
            "dtype": _SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def _encode_metadata(inputs: PostprocessInputs, provenance: dict) -> dict[str, str]:
    try:
        provenance_json = json.dumps(provenance, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise _Invalid(f"provenance is not JSON-serialisable: {err}") from None
    return {
        "format": FORMAT_TAG,
        "schema_version": SCHEMA_VERSION,
        "num_classes": str(int(inputs.num_classes)),
        "max_detections": NO_MAX_DETECTIONS if inputs.max_detections is None else str(int(inputs.max_detections)),
        "preprocess": json.dumps([meta.to_json() for meta in inputs.preprocess]),
        "provenance": provenance_json,
    }


def write_case(
    path: str | os.PathLike, inputs: PostprocessInputs, expected: list[ImageDetections], provenance: dict
) -> None:
    """Write one case atomically: tensors moved to the CPU, validated exactly as read_case would, then saved.

    Raises CaseError naming the path when the inputs, expected outputs or provenance are not storable.
    """
    path = Path(path)
    if not isinstance(provenance, dict):
        raise CaseError(f"{path}: provenance must be a dict, got {type(provenance).__name__}")
    try:
        inputs.validate()
    except ValueError as err:
        raise CaseError(f"{path}: invalid inputs: {err}") from None
    try:
        if len(expected) != inputs.batch_size:
            raise _Invalid(f"expected has {len(expected)} entries for a batch of {inputs.batch_size}")
        tensors = _encode_tensors(inputs, expected)
        metadata = _encode_metadata(inputs, provenance)
        _decode(tensors, metadata)
    except _Invalid as err:
        raise CaseError(f"{path}: cannot write case: {err}") from None
    atomic_write_bytes(path, _serialize(tensors, metadata))


# ----------------------------------------------------------------------------------------------- reading


def _check_container(path: Path) -> None:
    """Check the safetensors framing ourselves, so truncation and garbage get a precise message."""
    size = path.stat().st_size
    if size < 8:
        raise _Invalid(f"not a safetensors file (only {size} bytes, truncated or empty)")
    with open(path, "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if header_len > size - 8:
            raise _Invalid(
                f"not a safetensors file or truncated (header length {header_len} exceeds the file size {size})"
            )
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Invalid("not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise _Invalid("not a safetensors file (its header is not a JSON object)")
    data_end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(v, int) for v in offsets)):
            raise _Invalid(f"not a safetensors file (header entry {key!r} has no valid data_offsets)")
        data_end = max(data_end, offsets[1])
    available = size - 8 - header_len
    if data_end > available:
        raise _Invalid(f"truncated: tensor data needs {data_end} bytes, the file has {available}")


def _load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    _check_container(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata()
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except SafetensorError as err:
        raise _Invalid(f"not a valid safetensors file ({err})") from None
    return tensors, metadata


def _parse_int(metadata: dict[str, str], key: str) -> int:
    text = metadata[key]
    try:
        value = int(text)
    except ValueError:
        raise _Invalid(f"metadata {key}={text!r} is not an integer") from None
    if value < 0:
        raise _Invalid(f"metadata {key}={value} must be >= 0")
    return value


def _parse_json(metadata: dict[str, str], key: str, kind: type) -> Any:
    try:
        value = json.loads(metadata[key])
    except json.JSONDecodeError as err:
        raise _Invalid(f"metadata {key} is not valid JSON ({err.msg} at char {err.pos})") from None
    if not isinstance(value, kind):
        raise _Invalid(f"metadata {key} must be a JSON {'list' if kind is list else 'object'}")
    return value


def _check_metadata(metadata: dict[str, str] | None) -> None:
    if not metadata:
        raise _Invalid("no __metadata__: not an rlebench case file")
    tag = metadata.get("format")
    if tag != FORMAT_TAG:
        raise _Invalid(f"format tag {tag!r}, expected {FORMAT_TAG!r}: not an rlebench case file")
    version = metadata.get("schema_version")
    if version is None:
        raise _Invalid("metadata has no schema_version")
    if version != SCHEMA_VERSION:
        raise _Invalid(f"schema_version {version}, this rlebench reads {SCHEMA_VERSION}")
    missing = [key for key in _METADATA_KEYS if key not in metadata]
    if missing:
        raise _Invalid(f"missing metadata {', '.join(missing)}")
    unknown = sorted(set(metadata) - set(_METADATA_KEYS))
    if unknown:
        raise _Invalid(f"unknown metadata {', '.join(unknown)}")


def _parse_preprocess(metadata: dict[str, str], batch: int) -> list[PreprocessMeta]:
    entries = _parse_json(metadata, "preprocess", list)
    if len(entries) != batch:
        raise _Invalid(f"metadata preprocess has {len(entries)} entries for a batch of {batch}")
    metas = []
    for b, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _Invalid(f"metadata preprocess[{b}] must be a JSON object, got {type(entry).__name__}")
        missing, unknown = sorted(_PREPROCESS_KEYS - set(entry)), sorted(set(entry) - _PREPROCESS_KEYS)
        if missing or unknown:
            raise _Invalid(f"metadata preprocess[{b}] lacks keys {missing} / has unknown keys {unknown}")
        try:
            metas.append(PreprocessMeta.from_json(entry))
        except (KeyError, TypeError, ValueError) as err:
            raise _Invalid(f"metadata preprocess[{b}] is invalid: {err}") from None
    return metas


def _require(tensors: dict[str, torch.Tensor], key: str, dtypes: tuple[torch.dtype, ...]) -> torch.Tensor:
    if key not in tensors:
        raise _Invalid(f"missing tensor {key!r}")
    tensor = tensors[key]
    if tensor.dtype not in dtypes:
        names = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise _Invalid(f"{key} has dtype {str(tensor.dtype).removeprefix('torch.')}, expected {names}")
    return tensor


def _check_shape(key: str, tensor: torch.Tensor, expected: tuple[int | None, ...], described: str) -> None:
    shape = tuple(tensor.shape)
    if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected, strict=True)):
        raise _Invalid(f"{key} has shape {shape}, expected {described}")


def _parse_inputs(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> PostprocessInputs:
    boxes = _require(tensors, "boxes", _FLOAT_INPUT_DTYPES)
    if boxes.dim() != 3 or boxes.shape[2] != 4:
        raise _Invalid(f"boxes has shape {tuple(boxes.shape)}, expected [B, Q, 4]")
    batch, queries = int(boxes.shape[0]), int(boxes.shape[1])
    if batch < 1:
        raise _Invalid("boxes has batch size 0")
    logits = _require(tensors, "logits", _FLOAT_INPUT_DTYPES)
    _check_shape("logits", logits, (batch, queries, None), f"[B={batch}, Q={queries}, C]")
    masks = _require(tensors, "masks", _FLOAT_INPUT_DTYPES)
    _check_shape("masks", masks, (batch, queries, None, None), f"[B={batch}, Q={queries}, h, w]")
    if masks.shape[2] < 1 or masks.shape[3] < 1:
        raise _Invalid(f"masks has an empty mask grid {tuple(masks.shape[2:])}")
    threshold_tensor = _require(tensors, "threshold", (torch.float32,))
    if threshold_tensor.dim() == 0:
        threshold: float | torch.Tensor = float(threshold_tensor.item())
    elif threshold_tensor.dim() == 1 and threshold_tensor.shape[0] >= 1:
        threshold = threshold_tensor
    else:
        raise _Invalid(f"threshold has shape {tuple(threshold_tensor.shape)}, expected [] or [K] with K >= 1")
    class_mapping = None
    if "class_mapping" in tensors:
        class_mapping = _require(tensors, "class_mapping", (torch.int64,))
        _check_shape("class_mapping", class_mapping, (None,), "[M]")
        if bool((class_mapping < -1).any()):
            raise _Invalid("class_mapping has values below -1")
    max_text = metadata["max_detections"]
    max_detections = None if max_text == NO_MAX_DETECTIONS else _parse_int(metadata, "max_detections")
    inputs = PostprocessInputs(
        boxes=boxes,
        logits=logits,
        masks=masks,
        threshold=threshold,
        num_classes=_parse_int(metadata, "num_classes"),
        preprocess=_parse_preprocess(metadata, batch),
        class_mapping=class_mapping,
        max_detections=max_detections,
    )
    try:
        inputs.validate()
    except ValueError as err:
        raise _Invalid(f"invalid inputs: {err}") from None
    return inputs


def _parse_strings(b: int, counts: torch.Tensor, offsets: torch.Tensor, size: tuple[int, int]) -> list[RleMask]:
    key = _expected_key(b, "rle_offsets")
    offs = offsets.numpy()
    data = counts.numpy().tobytes()
    if offs[0] != 0:
        raise _Invalid(f"{key} starts at {int(offs[0])}, not 0")
    if (np.diff(offs) < 0).any():
        raise _Invalid(f"{key} decreases")
    if offs[-1] != len(data):
        raise _Invalid(f"{key} ends at {int(offs[-1])}, rle_counts has {len(data)} bytes")
    height, width = size
    masks = []
    for i in range(len(offs) - 1):
        text = data[offs[i] : offs[i + 1]]
        where = f"expected/{b} mask {i}"
        try:
            runs = string_to_counts(text)
        except ValueError as err:
            raise _Invalid(f"{where}: invalid COCO counts string ({err})") from None
        if runs.size == 0 or (runs < 0).any() or (runs[1:] == 0).any():
            raise _Invalid(f"{where}: counts string has empty or negative runs")
        if int(runs.sum()) != height * width:
            covered = int(runs.sum())
            raise _Invalid(f"{where}: runs cover {covered} pixels, the {height}x{width} image has {height * width}")
        if counts_to_string(runs) != text:
            raise _Invalid(f"{where}: counts string is not in canonical (pycocotools) form")
        masks.append(RleMask(size=(height, width), counts=text))
    return masks


def _parse_expected(tensors: dict[str, torch.Tensor], inputs: PostprocessInputs) -> list[ImageDetections]:
    queries = int(inputs.boxes.shape[1])
    expected = []
    for b, meta in enumerate(inputs.preprocess):
        xyxy = _require(tensors, _expected_key(b, "xyxy"), (torch.int32,))
        confidence = _require(tensors, _expected_key(b, "confidence"), (torch.float32,))
        class_id = _require(tensors, _expected_key(b, "class_id"), (torch.int32,))
        counts = _require(tensors, _expected_key(b, "rle_counts"), (torch.uint8,))
        offsets = _require(tensors, _expected_key(b, "rle_offsets"), (torch.int64,))
        _check_shape(_expected_key(b, "xyxy"), xyxy, (None, 4), "[N, 4]")
        n = int(xyxy.shape[0])
        _check_shape(_expected_key(b, "confidence"), confidence, (n,), f"[N={n}]")
        _check_shape(_expected_key(b, "class_id"), class_id, (n,), f"[N={n}]")
        _check_shape(_expected_key(b, "rle_counts"), counts, (None,), "[L]")
        _check_shape(_expected_key(b, "rle_offsets"), offsets, (n + 1,), f"[N+1={n + 1}]")
        if n > queries:
            raise _Invalid(f"expected/{b} has {n} detections, more than Q={queries}")
        if inputs.max_detections is not None and n > inputs.max_detections:
            raise _Invalid(f"expected/{b} has {n} detections, more than max_detections={inputs.max_detections}")
        height, width = meta.original_size
        box = xyxy.numpy()
        if (box < 0).any() or (box[:, 0::2] > width).any() or (box[:, 1::2] > height).any():
            raise _Invalid(f"expected/{b}/xyxy has boxes outside the {width}x{height} image")
        conf = confidence.numpy()
        if not (np.isfinite(conf).all() and (conf >= 0).all() and (conf <= 1).all()):
            raise _Invalid(f"expected/{b}/confidence has values outside [0, 1]")
        if (class_id.numpy() < 0).any():
            raise _Invalid(f"expected/{b}/class_id has negative class ids")
        masks = _parse_strings(b, counts, offsets, (height, width))
        expected.append(ImageDetections(xyxy=box, confidence=conf, class_id=class_id.numpy(), masks=masks))
    return expected


def _decode(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None
) -> tuple[PostprocessInputs, list[ImageDetections], dict]:
    """Validate a case's tensors and metadata and build its objects; raises _Invalid on the first problem."""
    _check_metadata(metadata)
    assert metadata is not None
    inputs = _parse_inputs(tensors, metadata)
    batch = inputs.batch_size
    allowed = set(_INPUT_KEYS) | set(_OPTIONAL_KEYS)
    allowed |= {_expected_key(b, name) for b in range(batch) for name in _EXPECTED_FIELDS}
    unknown = sorted(set(tensors) - allowed)
    if unknown:
        shown = ", ".join(repr(k) for k in unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        raise _Invalid(f"unknown tensor {shown} (batch size is {batch})")
    expected = _parse_expected(tensors, inputs)
    provenance = _parse_json(metadata, "provenance", dict)
    return inputs, expected, provenance


def read_case(path: str | os.PathLike) -> Case:
    """Read and fully validate one case file; raises CaseError "<path>: <problem>" on any defect."""
    path = Path(path)
    if not path.exists():
        raise CaseError(f"{path}: no such file")
    if not path.is_file():
        raise CaseError(f"{path}: not a file")
    try:
        tensors, metadata = _load(path)
        inputs, expected, provenance = _decode(tensors, metadata)
    except _Invalid as err:
        raise CaseError(f"{path}: {err}") from None
    except OSError as err:
        raise CaseError(f"{path}: cannot read ({err.strerror or err})") from None
    return Case(path=path, inputs=inputs, expected=expected, provenance=provenance, metadata=dict(metadata or {}))
