"""Parity report: how far a replayed output is from the expected one when they are not byte-identical.

Detections are matched per image by class and box IoU (greedy, IoU >= 0.5); the report counts count
mismatches, class disagreements and order differences, gives box IoU, |score delta| (and float32 ulps) and mask
IoU, counts byte-identical RLE strings, and classifies every differing mask pixel by the reference's upsampled
logit there: within NEAR_ZERO_LOGIT of 0 (a rounding tie) or not (a real difference). It also gathers the
evidence for the known differences of Roboflow's classic path (DESIGN.md): pixels explained by an antialiased
resize, order differences inside groups of equal scores, score/box differences within float16 precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kernels.contract import ImageDetections, PostprocessInputs, RleMask, mask_crop
from kernels.reference import Selection, select_detections, upsampled_mask_logits
from kernels.rle import decode

__all__ = [
    "KNOWN_ANTIALIAS",
    "KNOWN_FLOAT16",
    "KNOWN_TIE_ORDER",
    "MATCH_IOU",
    "NEAR_ZERO_LOGIT",
    "SCORE_ULP_TOLERANCE",
    "CaseContext",
    "parity_report",
]

NEAR_ZERO_LOGIT = 1e-4  # a pixel whose reference logit is this close to 0 may flip with rounding alone
SCORE_ULP_TOLERANCE = 4  # float32 ulps a score may differ by (sigmoid/exp implementations differ in last bits)
MATCH_IOU = 0.5
KNOWN_ANTIALIAS = "antialiased resize"
KNOWN_TIE_ORDER = "unstable tie order"
KNOWN_FLOAT16 = "float16 arithmetic"


class CaseContext:
    """Reference quantities of one case (selection, upsampled logits), computed lazily and cached."""

    def __init__(self, inputs: PostprocessInputs) -> None:
        self.inputs = inputs
        self._selections: list[Selection] | None = None
        self._logits: dict[tuple[int, int], np.ndarray] = {}
        self._antialias: dict[tuple[int, int], np.ndarray] = {}

    @property
    def float16(self) -> bool:
        return self.inputs.logits.dtype == torch.float16 or self.inputs.boxes.dtype == torch.float16

    def selection(self, b: int) -> Selection:
        if self._selections is None:
            self._selections = select_detections(self.inputs)
        return self._selections[b]

    def query_of(self, b: int, position: int, class_id: int, score: float) -> int | None:
        """The query of expected detection `position`: same position when it agrees, else closest score."""
        sel = self.selection(b)
        classes = sel.class_id.cpu().numpy()
        scores = sel.score.cpu().numpy()
        queries = sel.query.cpu().numpy()
        if position < classes.size and classes[position] == class_id and scores[position] == np.float32(score):
            return int(queries[position])
        same = np.flatnonzero(classes == class_id)
        if same.size == 0:
            return None
        best = same[np.argmin(np.abs(scores[same].astype(np.float64) - float(score)))]
        return int(queries[best])

    def logit_canvas(self, b: int, query: int) -> np.ndarray:
        """Reference upsampled logits on the full frame [H, W]; -inf outside the static crop (always 0 there)."""
        key = (b, query)
        if key not in self._logits:
            meta = self.inputs.preprocess[b]
            inner = upsampled_mask_logits(self.inputs.masks[b, query], meta).cpu().numpy()
            self._logits[key] = _place(inner, meta.original_size, meta.static_crop_offset, -np.inf, np.float32)
        return self._logits[key]

    def antialias_canvas(self, b: int, query: int) -> np.ndarray:
        """The mask the classic path's antialiased bilinear resize would give, full frame [H, W] bool."""
        key = (b, query)
        if key not in self._antialias:
            meta = self.inputs.preprocess[b]
            logits = self.inputs.masks[b, query]
            r0, r1, c0, c1 = mask_crop(meta, (int(logits.shape[-2]), int(logits.shape[-1])))
            cropped = logits.float()[r0:r1, c0:c1][None, None]
            resized = F.interpolate(
                cropped, size=meta.size_after_preprocessing, mode="bilinear", align_corners=False, antialias=True
            )[0, 0]
            inner = (resized > 0).cpu().numpy()
            self._antialias[key] = _place(inner, meta.original_size, meta.static_crop_offset, False, bool)
        return self._antialias[key]


def _place(inner: np.ndarray, size: tuple[int, int], offset: tuple[int, int], fill: object, dtype: type) -> np.ndarray:
    canvas = np.full(size, fill, dtype=dtype)
    ox, oy = offset
    canvas[oy : oy + inner.shape[0], ox : ox + inner.shape[1]] = inner
    return canvas


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of integer xyxy boxes; two identical degenerate boxes have IoU 1."""
    a = a.astype(np.float64)[:, None, :]
    b = b.astype(np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    same = np.all(a == b, axis=-1)
    return np.where(same, 1.0, iou)


def _greedy_pairs(score: np.ndarray, allowed: np.ndarray, tiebreak: np.ndarray) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by descending score (then ascending tiebreak) among allowed pairs."""
    rows, cols = np.nonzero(allowed)
    order = np.lexsort((tiebreak[rows, cols], -score[rows, cols]))
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


def _ulp16(value: float) -> float:
    """Spacing of float16 numbers at |value| (subnormal spacing below 2**-14)."""
    value = abs(value)
    if value < 2.0**-14:
        return 2.0**-24
    return 2.0 ** (np.floor(np.log2(value)) - 10)


class _Accumulator:
    """Sums over matched detections of one call, turned into the parity report at the end."""

    def __init__(self) -> None:
        self.box_iou: list[float] = []
        self.score_delta: list[float] = []
        self.score_ulp: list[int] = []
        self.mask_iou: list[float] = []
        self.box_delta: list[int] = []
        self.counts = dict.fromkeys(
            (
                "images",
                "expected_detections",
                "actual_detections",
                "count_mismatches",
                "matched",
                "missing",
                "extra",
                "class_disagreements",
                "order_differences",
                "order_differences_in_ties",
                "unmatched_ties",
                "boxes_identical",
                "rle_identical",
                "mask_size_mismatches",
                "differing_pixels",
                "near_zero_pixels",
                "real_pixels",
                "antialias_explained_pixels",
                "unclassified_pixels",
                "float16_explained",
                "float16_unexplained",
            ),
            0,
        )


def _compare_image(b: int, exp: ImageDetections, out: ImageDetections, ctx: CaseContext, acc: _Accumulator) -> None:
    c = acc.counts
    ne, na = len(exp), int(out.class_id.shape[0])
    c["images"] += 1
    c["expected_detections"] += ne
    c["actual_detections"] += na
    c["count_mismatches"] += int(ne != na)
    exp_conf = exp.confidence.astype(np.float32)
    out_conf = np.asarray(out.confidence).astype(np.float32)
    iou = _box_iou(exp.xyxy, np.asarray(out.xyxy)) if ne and na else np.zeros((ne, na))
    same_class = exp.class_id.astype(np.int64)[:, None] == np.asarray(out.class_id).astype(np.int64)[None, :]
    score_gap = np.abs(exp_conf.astype(np.float64)[:, None] - out_conf.astype(np.float64)[None, :])
    position_gap = np.abs(np.arange(ne)[:, None] - np.arange(na)[None, :]).astype(np.float64)
    pairs = _greedy_pairs(iou, same_class & (iou >= MATCH_IOU), score_gap * 1e6 + position_gap)
    matched_e = {i for i, _ in pairs}
    matched_a = {j for _, j in pairs}
    free_e = np.array([i not in matched_e for i in range(ne)], dtype=bool)
    free_a = np.array([j not in matched_a for j in range(na)], dtype=bool)
    disagree = _greedy_pairs(iou, (~same_class) & (iou >= MATCH_IOU) & free_e[:, None] & free_a[None, :], position_gap)
    c["class_disagreements"] += len(disagree)
    c["matched"] += len(pairs)
    c["missing"] += ne - len(pairs)
    c["extra"] += na - len(pairs)
    # An unstable sort at the top-Q or max_detections cut keeps a different member of a tie group.
    # (Pairs with the same box but another class are class disagreements, not ties.)
    disagree_e = {i for i, _ in disagree}
    disagree_a = {j for _, j in disagree}
    unmatched_e = {float(exp_conf[i]) for i in range(ne) if free_e[i] and i not in disagree_e}
    c["unmatched_ties"] += sum(
        1 for j in range(na) if free_a[j] and j not in disagree_a and float(out_conf[j]) in unmatched_e
    )

    meta = ctx.inputs.preprocess[b]
    height, width = meta.original_size
    box_tol16 = max(1, int(np.ceil(2 * _ulp16(float(max(height, width))))))
    for i, j in pairs:
        acc.box_iou.append(float(iou[i, j]))
        delta = int(np.abs(exp.xyxy[i].astype(np.int64) - np.asarray(out.xyxy[j]).astype(np.int64)).max())
        acc.box_delta.append(delta)
        c["boxes_identical"] += int(delta == 0)
        se, sa = exp_conf[i], out_conf[j]
        acc.score_delta.append(abs(float(se) - float(sa)))
        ulp = abs(int(se.view(np.int32)) - int(sa.view(np.int32)))
        acc.score_ulp.append(ulp)
        if i != j:
            c["order_differences"] += 1
            c["order_differences_in_ties"] += int(j < ne and exp_conf[j] == exp_conf[i])
        if ctx.float16 and (delta > 0 or ulp > SCORE_ULP_TOLERANCE):
            fits = delta <= box_tol16 and abs(float(se) - float(sa)) <= 2 * _ulp16(float(se))
            c["float16_explained"] += int(fits)
            c["float16_unexplained"] += int(not fits)
        _compare_masks(b, i, exp, exp.masks[i], out.masks[j], ctx, acc)


def _compare_masks(
    b: int, i: int, exp: ImageDetections, me: RleMask, ma: RleMask, ctx: CaseContext, acc: _Accumulator
) -> None:
    c = acc.counts
    if tuple(me.size) != tuple(ma.size):
        c["mask_size_mismatches"] += 1
        acc.mask_iou.append(0.0)
        return
    if me.counts == ma.counts:
        c["rle_identical"] += 1
        acc.mask_iou.append(1.0)
        return
    try:
        em, am = decode(me), decode(RleMask(size=tuple(ma.size), counts=ma.counts))
    except ValueError:
        c["mask_size_mismatches"] += 1  # undecodable counts: as wrong as a wrong size
        acc.mask_iou.append(0.0)
        return
    union = int(np.count_nonzero(em | am))
    acc.mask_iou.append(float(np.count_nonzero(em & am)) / union if union else 1.0)
    ys, xs = np.nonzero(em != am)
    c["differing_pixels"] += int(ys.size)
    query = ctx.query_of(b, i, int(exp.class_id[i]), float(exp.confidence[i]))
    if query is None:
        c["unclassified_pixels"] += int(ys.size)
        c["real_pixels"] += int(ys.size)
        return
    values = ctx.logit_canvas(b, query)[ys, xs]
    near = np.abs(values) <= NEAR_ZERO_LOGIT  # NaN compares False: not a rounding tie
    c["near_zero_pixels"] += int(near.sum())
    c["real_pixels"] += int((~near).sum())
    if (~near).any():
        ref_bit = values > 0
        anti = ctx.antialias_canvas(b, query)[ys, xs]
        e_bit, a_bit = em[ys, xs], am[ys, xs]
        explained = ((e_bit == anti) & (a_bit == ref_bit)) | ((a_bit == anti) & (e_bit == ref_bit))
        c["antialias_explained_pixels"] += int((explained & ~near).sum())


def _stat(values: list[float], fn: str) -> float | None:
    return None if not values else float(getattr(np, fn)(values))


def parity_report(expected: list[ImageDetections], outputs: list[ImageDetections], ctx: CaseContext) -> dict[str, Any]:
    """Counts and distances between expected and (structurally valid) outputs of one call; see the module doc."""
    acc = _Accumulator()
    for b, (exp, out) in enumerate(zip(expected, outputs, strict=True)):
        _compare_image(b, exp, out, ctx, acc)
    report: dict[str, Any] = dict(acc.counts)
    report.update(
        box_iou_mean=_stat(acc.box_iou, "mean"),
        box_iou_min=_stat(acc.box_iou, "min"),
        max_box_delta_px=int(max(acc.box_delta, default=0)),
        score_abs_delta_mean=_stat(acc.score_delta, "mean"),
        score_abs_delta_max=_stat(acc.score_delta, "max"),
        score_max_ulp=int(max(acc.score_ulp, default=0)),
        mask_iou_mean=_stat(acc.mask_iou, "mean"),
        mask_iou_min=_stat(acc.mask_iou, "min"),
    )
    return report
