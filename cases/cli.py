"""`bench info CASES_DIR`: inspect a case set (counts, shapes, detections, sizes, provenance).

It loads every case with full validation, so it doubles as a checker: bad case files are listed and
the exit code is 1 when there are any (2, from the dispatcher, when the set cannot be read at all).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from cases.caseset import MANIFEST_NAME, CaseSet, case_set_digest, load_case_set
from cases.format import Case

__all__ = ["register", "summarize", "run_info"]

_PROVENANCE_KEYS = ("source", "model", "backend", "impl", "device", "versions")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `info` sub-command to the `bench` parser."""
    parser = subparsers.add_parser(
        "info",
        help="show what a case set holds (and check every case file)",
        description="Validate every case file of CASES_DIR and summarise the set: counts, shapes, dtypes, "
        "frame sizes, detections per case, bytes on disk and provenance. Exit code 1 if any case file is bad.",
    )
    parser.add_argument("cases_dir", metavar="CASES_DIR", type=Path, help="directory with case_*.safetensors")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list every case file")
    parser.set_defaults(handler=run_info)


def _distinct(values: list[Any]) -> list[Any]:
    """Distinct values in first-seen order (values may be unhashable lists/dicts)."""
    seen: list[str] = []
    out = []
    for value in values:
        key = json.dumps(value, sort_keys=True, default=str)
        if key not in seen:
            seen.append(key)
            out.append(value)
    return out


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _threshold_text(case: Case) -> str:
    threshold = case.inputs.threshold
    if isinstance(threshold, torch.Tensor):
        return f"per-class [K={threshold.numel()}]"
    return f"{threshold:g}"


def _case_row(case: Case) -> dict:
    inputs = case.inputs
    b, q, c = (int(v) for v in inputs.logits.shape)
    return {
        "file": case.path.name,
        "bytes": case.path.stat().st_size,
        "batch": b,
        "queries": q,
        "classes": c,
        "mask": list(inputs.masks.shape[-2:]),
        "dtype": _dtype_name(inputs.masks.dtype),
        "frame_sizes": [list(meta.original_size) for meta in inputs.preprocess],
        "detections": [len(det) for det in case.expected],
        "threshold": _threshold_text(case),
        "class_mapping": None if inputs.class_mapping is None else int(inputs.class_mapping.numel()),
        "max_detections": inputs.max_detections,
        "letterbox": any(any(p > 0 for p in meta.pad) for meta in inputs.preprocess),
        "static_crop": any(meta.size_after_preprocessing != meta.original_size for meta in inputs.preprocess),
    }


def _provenance(case_set: CaseSet) -> dict:
    """Manifest fields first; where the manifest has none, the distinct values recorded in the cases."""
    out = {}
    for key in _PROVENANCE_KEYS:
        if key in case_set.manifest:
            out[key] = case_set.manifest[key]
            continue
        values = _distinct([case.provenance[key] for case in case_set.cases if key in case.provenance])
        if values:
            out[key] = values[0] if len(values) == 1 else values
    return out


def summarize(case_set: CaseSet) -> dict:
    """A JSON-ready summary of a loaded case set (what `bench info --json` prints)."""
    rows = [_case_row(case) for case in case_set.cases]
    per_case = [sum(row["detections"]) for row in rows]
    frames = Counter(f"{w}x{h}" for row in rows for h, w in row["frame_sizes"])
    directory = case_set.directory
    summary: dict[str, Any] = {
        "directory": str(directory),
        "manifest": bool(case_set.manifest),
        "digest": case_set_digest(directory),
        "cases": len(rows),
        "bad": [{"file": str(path), "error": message} for path, message in case_set.bad],
        "total_bytes": sum(row["bytes"] for row in rows),
        "batch": _distinct([row["batch"] for row in rows]),
        "queries": _distinct([row["queries"] for row in rows]),
        "classes": _distinct([row["classes"] for row in rows]),
        "mask": _distinct([row["mask"] for row in rows]),
        "dtype": _distinct([row["dtype"] for row in rows]),
        "threshold": _distinct([row["threshold"] for row in rows]),
        "class_mapping": _distinct([row["class_mapping"] for row in rows]),
        "max_detections": _distinct([row["max_detections"] for row in rows]),
        "letterbox": any(row["letterbox"] for row in rows),
        "static_crop": any(row["static_crop"] for row in rows),
        "frame_sizes_wxh": dict(frames),
        "detections_per_case": {
            "min": min(per_case, default=0),
            "mean": sum(per_case) / len(per_case) if per_case else 0.0,
            "max": max(per_case, default=0),
            "total": sum(per_case),
        },
        "provenance": _provenance(case_set),
        "per_case": rows,
    }
    return summary


def _join(values: list[Any]) -> str:
    return ", ".join("none" if v is None else "x".join(map(str, v)) if isinstance(v, list) else str(v) for v in values)


def _format_text(summary: dict, verbose: bool) -> str:
    det = summary["detections_per_case"]
    lines = [
        f"case set   {summary['directory']}",
        f"manifest   {'yes' if summary['manifest'] else f'none ({MANIFEST_NAME} missing)'}",
        f"digest     sha256:{summary['digest']}",
        f"cases      {summary['cases']} good, {len(summary['bad'])} bad, {summary['total_bytes'] / 1e6:.2f} MB",
        f"batch      {_join(summary['batch'])}",
        f"queries    {_join(summary['queries'])}",
        f"classes    {_join(summary['classes'])} logits per query",
        f"masks      {_join(summary['mask'])} ({_join(summary['dtype'])})",
        f"threshold  {_join(summary['threshold'])}",
        f"mapping    {_join(['length ' + str(m) if m is not None else None for m in summary['class_mapping']])}",
        f"max dets   {_join(summary['max_detections'])}",
        f"preprocess letterbox={'yes' if summary['letterbox'] else 'no'}, "
        f"static crop={'yes' if summary['static_crop'] else 'no'}",
        "frames     " + ", ".join(f"{size} ({n})" for size, n in summary["frame_sizes_wxh"].items()) + " (WxH, count)",
        f"detections per case: min {det['min']}, mean {det['mean']:.1f}, max {det['max']}, total {det['total']}",
    ]
    provenance = summary["provenance"]
    if provenance:
        lines.append("provenance")
        for key, value in provenance.items():
            text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
            lines.append(f"  {key:<9}{text}")
    if verbose:
        lines.append("files")
        for row in summary["per_case"]:
            sizes = " ".join(f"{w}x{h}" for h, w in row["frame_sizes"])
            lines.append(
                f"  {row['file']}  {row['bytes'] / 1e6:.2f} MB  B={row['batch']}  frames {sizes}  "
                f"detections {row['detections']}"
            )
    for bad in summary["bad"]:
        lines.append(f"BAD {bad['error']}")
    return "\n".join(lines)


def run_info(args: argparse.Namespace) -> int:
    """Handler of `bench info`: 0 when every case file is good, 1 when some are bad (CaseError otherwise)."""
    case_set = load_case_set(args.cases_dir, skip_bad=True)
    summary = summarize(case_set)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_format_text(summary, args.verbose))
    if case_set.bad:
        print(f"bench info: {len(case_set.bad)} bad case file(s) in {case_set.directory}", file=sys.stderr)
        return 1
    return 0
