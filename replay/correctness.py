"""The correctness gate: every replayed output against the case's expected detections, plus a parity report.

Verdicts per call: "identical" (classes, boxes, score bits and RLE bytes all equal), "equivalent" (same
detections in the same order with the same classes and boxes; only scores a few float32 ulp apart and/or mask
pixels where the reference's upsampled logit is within 1e-4 of 0, i.e. rounding ties: passes, with a note),
"mismatch" (anything else: fails), "error" (the implementation raised or returned the wrong structure: fails).

When a call is not identical a parity report says how far apart the outputs are (detections matched by class
and box IoU, count mismatches, class disagreements, box IoU, |score delta|, mask IoU, byte-identical RLE count,
and each differing mask pixel classified as near-zero logit or real) and names the known differences of
Roboflow's classic path (DESIGN.md): antialiased resize, unstable tie order, float16 arithmetic. Those are
named so nobody hunts a bug that is the capture's path, but they still fail the gate: the output differs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kernels.contract import ImageDetections, RleMask
from replay.parity import (
    KNOWN_ANTIALIAS,
    KNOWN_FLOAT16,
    KNOWN_TIE_ORDER,
    NEAR_ZERO_LOGIT,
    SCORE_ULP_TOLERANCE,
    CaseContext,
    parity_report,
)

__all__ = [
    "KNOWN_ANTIALIAS",
    "KNOWN_FLOAT16",
    "KNOWN_TIE_ORDER",
    "NEAR_ZERO_LOGIT",
    "SCORE_ULP_TOLERANCE",
    "CallCheck",
    "CaseContext",
    "CorrectnessTally",
    "compare_call",
    "is_identical",
    "structure_error",
]

_VERDICT_RANK = {"unchecked": -1, "identical": 0, "equivalent": 1, "mismatch": 2, "error": 3}
_MAX_MESSAGES = 20


@dataclass
class CallCheck:
    """The outcome of checking one call's output."""

    verdict: str
    message: str | None = None
    notes: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    parity: dict[str, Any] | None = None


def structure_error(outputs: object, expected: list[ImageDetections]) -> str | None:
    """Why outputs is not a list of per-image host detections like expected, or None when it is."""
    if not isinstance(outputs, (list, tuple)):
        return f"returned {type(outputs).__name__}, expected a list of ImageDetections"
    if len(outputs) != len(expected):
        return f"returned {len(outputs)} image result(s) for a batch of {len(expected)}"
    for b, (out, _exp) in enumerate(zip(outputs, expected, strict=True)):
        for name in ("xyxy", "confidence", "class_id", "masks"):
            if not hasattr(out, name):
                return f"image {b}: result has no {name!r} (expected ImageDetections)"
        for name, ndim in (("xyxy", 2), ("confidence", 1), ("class_id", 1)):
            value = getattr(out, name)
            if isinstance(value, torch.Tensor):
                return f"image {b}: {name} is a torch tensor on {value.device}; outputs must be host numpy arrays"
            if not isinstance(value, np.ndarray) or value.ndim != ndim:
                return f"image {b}: {name} must be a {ndim}-D numpy array, got {type(value).__name__}"
        n = out.class_id.shape[0]
        if out.xyxy.shape != (n, 4) or out.confidence.shape != (n,):
            return f"image {b}: xyxy {out.xyxy.shape} / confidence {out.confidence.shape} disagree with {n} classes"
        for name, dtype in (("xyxy", np.int32), ("confidence", np.float32), ("class_id", np.int32)):
            if getattr(out, name).dtype != dtype:
                return (
                    f"image {b}: {name} must be {np.dtype(dtype).name} (the contract), got {getattr(out, name).dtype}"
                )
        if not isinstance(out.masks, (list, tuple)) or len(out.masks) != n:
            return f"image {b}: {n} detections but masks is not a list of {n} RLE masks"
        for k, mask in enumerate(out.masks):
            if not isinstance(getattr(mask, "counts", None), bytes) or len(tuple(getattr(mask, "size", ()))) != 2:
                return f"image {b}: mask {k} is not an RleMask with bytes counts and a (H, W) size"
    return None


def _same_masks(a: list[RleMask], b: list[RleMask]) -> bool:
    return len(a) == len(b) and all(
        tuple(x.size) == tuple(y.size) and x.counts == y.counts for x, y in zip(a, b, strict=True)
    )


def _float_bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def is_identical(expected: list[ImageDetections], outputs: list[ImageDetections]) -> bool:
    """Exact equality: classes, boxes, score bits (float32) and RLE bytes + sizes of every image."""
    for exp, out in zip(expected, outputs, strict=True):
        if not (
            np.array_equal(exp.class_id, out.class_id)
            and np.array_equal(exp.xyxy, out.xyxy)
            and _float_bits_equal(exp.confidence.astype(np.float32), np.asarray(out.confidence))
            and _same_masks(exp.masks, list(out.masks))
        ):
            return False
    return True


def output_digest(outputs: list[ImageDetections]) -> str:
    """A hash of an output, so repeated identical outputs of one case are analysed once."""
    h = hashlib.blake2b(digest_size=16)
    for out in outputs:
        for arr in (out.xyxy, out.confidence, out.class_id):
            h.update(str(arr.dtype).encode() + str(arr.shape).encode() + np.ascontiguousarray(arr).tobytes())
        for mask in out.masks:
            h.update(repr(tuple(mask.size)).encode() + b"|" + mask.counts + b"|")
    return h.hexdigest()


def compare_call(expected: list[ImageDetections], outputs: object, ctx: CaseContext) -> CallCheck:
    """Check one call's outputs against the expected detections of its case (see the module docstring)."""
    problem = structure_error(outputs, expected)
    if problem is not None:
        return CallCheck("error", message=problem)
    assert isinstance(outputs, (list, tuple))
    if is_identical(expected, list(outputs)):
        return CallCheck("identical")
    return _verdict(parity_report(expected, list(outputs), ctx), ctx)


def _verdict(report: dict[str, Any], ctx: CaseContext) -> CallCheck:
    """Turn a parity report into a verdict, notes and the known differences that explain it."""
    problems: list[str] = []
    explained: dict[str, bool] = {}
    unmatched = report["missing"] + report["extra"]
    if unmatched or report["count_mismatches"]:
        problems.append(
            f"{report['expected_detections']} expected vs {report['actual_detections']} detections "
            f"({report['missing']} missing, {report['extra']} extra, "
            f"{report['class_disagreements']} class disagreements)"
        )
        explained[problems[-1]] = (
            report["class_disagreements"] == 0
            and report["missing"] == report["extra"]
            and report["unmatched_ties"] == report["extra"]
        )
    if report["order_differences"]:
        problems.append(f"{report['order_differences']} detection(s) in a different order")
        explained[problems[-1]] = report["order_differences_in_ties"] == report["order_differences"]
    box_diffs = report["matched"] - report["boxes_identical"]
    score_off = report["score_max_ulp"] > SCORE_ULP_TOLERANCE
    if box_diffs or score_off:
        problems.append(
            f"{box_diffs} box(es) differ (max {report['max_box_delta_px']} px), max score delta "
            f"{report['score_abs_delta_max']:.3g} ({report['score_max_ulp']} ulp)"
        )
        explained[problems[-1]] = ctx.float16 and report["float16_unexplained"] == 0
    if report["mask_size_mismatches"]:
        problems.append(f"{report['mask_size_mismatches']} mask(s) with a wrong size or undecodable counts")
        explained[problems[-1]] = False
    if report["real_pixels"]:
        problems.append(
            f"{report['real_pixels']} mask pixel(s) differ where the reference logit is not near 0 "
            f"(mask IoU min {report['mask_iou_min']:.6f})"
        )
        explained[problems[-1]] = report["antialias_explained_pixels"] == report["real_pixels"]

    known: list[str] = []
    if report["antialias_explained_pixels"]:
        known.append(KNOWN_ANTIALIAS)
    if report["order_differences_in_ties"] or report["unmatched_ties"]:
        known.append(KNOWN_TIE_ORDER)
    if report["float16_explained"]:
        known.append(KNOWN_FLOAT16)
    report["known_differences"] = known
    report["unexplained"] = [p for p in problems if not explained[p]]
    report["problems"] = problems

    notes = []
    if report["score_max_ulp"]:
        notes.append(f"scores differ by up to {report['score_max_ulp']} float32 ulp")
    if report["near_zero_pixels"]:
        notes.append(
            f"{report['near_zero_pixels']} mask pixel(s) differ where the reference logit is within "
            f"{NEAR_ZERO_LOGIT:g} of 0 (rounding ties)"
        )
    if not problems:
        return CallCheck("equivalent", notes=notes, parity=report)
    if known and not report["unexplained"]:
        notes.append("all differences are known differences of Roboflow's classic path: " + ", ".join(known))
    return CallCheck("mismatch", message="; ".join(problems), notes=notes, known=known, parity=report)


class CorrectnessTally:
    """Every checked call of one implementation on one case set, summarised for the results file."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.counts = {"identical": 0, "equivalent": 0, "mismatch": 0, "error": 0}
        self.messages: list[dict[str, Any]] = []
        self.notes: dict[str, None] = {}
        self.known: dict[str, None] = {}
        self.per_case: dict[int, dict[str, Any]] = {}
        self._cache: dict[tuple[int, str], CallCheck] = {}

    def check(
        self, case_index: int, repetition: int, expected: list[ImageDetections], outputs: object, ctx: CaseContext
    ) -> CallCheck:
        """Check one call (cached per case and output digest) and count its verdict."""
        if structure_error(outputs, expected) is None:
            key = (case_index, output_digest(list(outputs)))  # type: ignore[arg-type]
            result = self._cache.get(key)
            if result is None:
                result = self._cache[key] = compare_call(expected, outputs, ctx)
        else:
            result = compare_call(expected, outputs, ctx)
        self.record(case_index, repetition, result)
        return result

    def record(self, case_index: int, repetition: int, result: CallCheck) -> None:
        """Count a verdict (also used for calls that raised, as verdict 'error')."""
        self.counts[result.verdict] += 1
        if result.message and len(self.messages) < _MAX_MESSAGES:
            entry = {"case_index": case_index, "repetition": repetition, "verdict": result.verdict}
            entry["message"] = result.message
            if entry not in self.messages:
                self.messages.append(entry)
        for note in result.notes:
            self.notes.setdefault(note, None)
        for name in result.known:
            self.known.setdefault(name, None)
        if result.parity is not None:
            previous = self.per_case.get(case_index)
            if previous is None or _VERDICT_RANK[result.verdict] > _VERDICT_RANK[previous["verdict"]]:
                self.per_case[case_index] = {"verdict": result.verdict, **result.parity}

    @property
    def verdict(self) -> str:
        if self.counts["error"]:
            return "error"  # an implementation that raised fails even with --no-check
        if not self.enabled:
            return "unchecked"
        seen = [v for v, n in self.counts.items() if n]
        return max(seen, key=_VERDICT_RANK.__getitem__) if seen else "unchecked"

    @property
    def passed(self) -> bool:
        return self.verdict in ("identical", "equivalent", "unchecked")

    def summary(self) -> dict[str, Any]:
        """The `correctness` object of the results schema."""
        return {
            "checked": self.enabled,
            "verdict": self.verdict,
            "calls": sum(self.counts.values()),
            "identical": self.counts["identical"],
            "equivalent": self.counts["equivalent"],
            "mismatch": self.counts["mismatch"],
            "errors": self.counts["error"],
            "error_messages": list(self.messages),
            "notes": list(self.notes)[:_MAX_MESSAGES],
            "known_differences": list(self.known),
            "parity": {"per_case": {str(k): v for k, v in sorted(self.per_case.items())}, "summary": self._aggregate()},
        }

    def _aggregate(self) -> dict[str, Any] | None:
        """Totals over the per-case parity reports (match-weighted means)."""
        reports = list(self.per_case.values())
        if not reports:
            return None
        total: dict[str, Any] = {}
        for key, value in reports[0].items():
            if isinstance(value, int) and not isinstance(value, bool):
                total[key] = sum(int(r[key]) for r in reports)
        weights = [r["matched"] for r in reports]

        def weighted(key: str) -> float | None:
            pairs = [(r[key], w) for r, w in zip(reports, weights, strict=True) if r[key] is not None and w]
            return sum(v * w for v, w in pairs) / sum(w for _, w in pairs) if pairs else None

        def extreme(key: str, fn: Any) -> float | None:
            values = [r[key] for r in reports if r[key] is not None]
            return fn(values) if values else None

        total.update(
            cases=len(reports),
            box_iou_mean=weighted("box_iou_mean"),
            box_iou_min=extreme("box_iou_min", min),
            score_abs_delta_mean=weighted("score_abs_delta_mean"),
            score_abs_delta_max=extreme("score_abs_delta_max", max),
            score_max_ulp=extreme("score_max_ulp", max),
            max_box_delta_px=extreme("max_box_delta_px", max),
            mask_iou_mean=weighted("mask_iou_mean"),
            mask_iou_min=extreme("mask_iou_min", min),
        )
        return total
