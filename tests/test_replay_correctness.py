"""The correctness gate and parity report on hand-made differences from the reference output."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kernels.contract import ImageDetections, PostprocessInputs, mask_crop
from kernels.reference import postprocess_reference, select_detections, upsampled_mask_logits
from kernels.rle import decode, encode
from kernels.synthetic import make_inputs
from replay.correctness import (
    KNOWN_ANTIALIAS,
    KNOWN_FLOAT16,
    KNOWN_TIE_ORDER,
    CallCheck,
    CaseContext,
    CorrectnessTally,
    compare_call,
)

SMALL = {"queries": 20, "classes": 8, "input_size": 64, "num_confident": 4}


def _case(seed: int, frame: tuple[int, int] = (48, 64), **kw: object) -> tuple[PostprocessInputs, list, int]:
    """Small inputs whose first detection's mask logits hold a block of exact zeros."""
    for offset in range(50):
        inputs = make_inputs(seed + offset, frame_sizes=[frame], **{**SMALL, **kw})
        sel = select_detections(inputs)[0]
        if len(sel.query) >= 2:
            break
    q = int(sel.query[0])
    inputs.masks[0, q, 4:12, 4:12] = 0.0  # upsampled inside this block: exactly 0.0 (bilinear of zeros)
    return inputs, postprocess_reference(inputs), q


def _canvas_logits(inputs: PostprocessInputs, q: int) -> np.ndarray:
    meta = inputs.preprocess[0]
    up = upsampled_mask_logits(inputs.masks[0, q], meta).numpy()
    canvas = np.full(meta.original_size, -np.inf, np.float32)
    ox, oy = meta.static_crop_offset
    canvas[oy : oy + up.shape[0], ox : ox + up.shape[1]] = up
    return canvas


def _with_mask(expected: list[ImageDetections], k: int, mask: np.ndarray) -> list[ImageDetections]:
    out = copy.deepcopy(expected)
    out[0].masks[k] = encode(mask)
    return out


def _check(expected: list, outputs: object, inputs: PostprocessInputs) -> CallCheck:
    return compare_call(expected, outputs, CaseContext(inputs))


def test_identical(seed: int) -> None:
    inputs, expected, _ = _case(seed)
    result = _check(expected, copy.deepcopy(expected), inputs)
    assert result.verdict == "identical" and result.parity is None


def test_pixel_at_exact_zero_logit_is_equivalent_with_note(seed: int) -> None:
    inputs, expected, q = _case(seed)
    logits = _canvas_logits(inputs, q)
    ys, xs = np.nonzero(logits == 0.0)
    assert ys.size > 0
    mask = decode(expected[0].masks[0])
    assert not mask[ys[0], xs[0]]
    mask[ys[0], xs[0]] = True  # an implementation that keeps value >= 0 instead of > 0
    result = _check(expected, _with_mask(expected, 0, mask), inputs)
    assert result.verdict == "equivalent"
    assert result.parity["near_zero_pixels"] == 1 and result.parity["real_pixels"] == 0
    assert any("within 0.0001 of 0" in note for note in result.notes)


@pytest.mark.parametrize("value", [True, False])
def test_one_flipped_pixel_fails(seed: int, value: bool) -> None:
    inputs, expected, q = _case(seed)
    logits = _canvas_logits(inputs, q)
    ys, xs = np.nonzero((logits > 0.5) if not value else (logits < -0.5))
    mask = decode(expected[0].masks[0])
    mask[ys[0], xs[0]] = value
    result = _check(expected, _with_mask(expected, 0, mask), inputs)
    assert result.verdict == "mismatch"
    assert result.parity["real_pixels"] == 1 and result.parity["differing_pixels"] == 1
    assert result.parity["rle_identical"] == len(expected[0]) - 1
    assert 0.0 < result.parity["mask_iou_min"] < 1.0
    assert "1 mask pixel(s) differ where the reference logit is not near 0" in result.message


@pytest.mark.parametrize(
    ("ulps", "verdict"), [(1, "equivalent"), (4, "equivalent"), (5, "mismatch"), (1000, "mismatch")]
)
def test_score_ulps(seed: int, ulps: int, verdict: str) -> None:
    inputs, expected, _ = _case(seed)
    out = copy.deepcopy(expected)
    out[0].confidence = (out[0].confidence.view(np.int32) - ulps).view(np.float32)
    result = _check(expected, out, inputs)
    assert result.verdict == verdict
    assert result.parity["score_max_ulp"] == ulps


@pytest.mark.parametrize("change", ["box", "class", "drop", "extra", "order"])
def test_detection_level_differences_fail(seed: int, change: str) -> None:
    inputs, expected, _ = _case(seed)
    out = copy.deepcopy(expected)
    det = out[0]
    if change == "box":
        det.xyxy[0, 2] += 1
    elif change == "class":
        det.class_id[0] = (det.class_id[0] + 1) % 7
    elif change == "drop":
        det.xyxy, det.confidence, det.class_id, det.masks = (
            det.xyxy[1:],
            det.confidence[1:],
            det.class_id[1:],
            det.masks[1:],
        )
    elif change == "extra":
        det.xyxy = np.concatenate([det.xyxy, det.xyxy[:1]])
        det.confidence = np.concatenate([det.confidence, det.confidence[:1] * np.float32(0.5)])
        det.class_id = np.concatenate([det.class_id, (det.class_id[:1] + 1) % 7])
        det.masks = [*det.masks, det.masks[0]]
    else:
        order = [1, 0, *range(2, len(det))]
        det.xyxy, det.confidence, det.class_id = det.xyxy[order], det.confidence[order], det.class_id[order]
        det.masks = [det.masks[i] for i in order]
    result = _check(expected, out, inputs)
    assert result.verdict == "mismatch"
    p = result.parity
    if change == "box":
        assert p["max_box_delta_px"] == 1 and p["boxes_identical"] == len(det) - 1
    elif change == "class":
        assert p["missing"] == 1 and p["extra"] == 1 and p["class_disagreements"] == 1
    elif change == "drop":
        assert p["count_mismatches"] == 1 and p["missing"] == 1 and p["extra"] == 0
    elif change == "extra":
        assert p["extra"] == 1 and p["actual_detections"] == p["expected_detections"] + 1
    else:
        assert p["order_differences"] == 2 and p["matched"] == len(det)
    assert KNOWN_TIE_ORDER not in result.known  # distinct scores: not a tie


def test_tie_order_is_recognised(seed: int) -> None:
    inputs, expected, _ = _case(seed)
    exp = copy.deepcopy(expected)
    exp[0].confidence[1] = exp[0].confidence[0]  # a tie between the first two detections
    out = copy.deepcopy(exp)
    order = [1, 0, *range(2, len(out[0]))]
    d = out[0]
    d.xyxy, d.confidence, d.class_id, d.masks = (
        d.xyxy[order],
        d.confidence[order],
        d.class_id[order],
        [d.masks[i] for i in order],
    )
    result = _check(exp, out, inputs)
    assert result.verdict == "mismatch"
    assert result.known == [KNOWN_TIE_ORDER] and result.parity["unexplained"] == []
    assert any("known differences of Roboflow's classic path: unstable tie order" in n for n in result.notes)


@pytest.mark.parametrize("frame", [(10, 12), (10, 40)])  # downsampling in both or one axis
def test_antialiased_resize_is_recognised(seed: int, frame: tuple[int, int]) -> None:
    inputs, expected, _ = _case(seed, frame=frame)
    meta = inputs.preprocess[0]
    classic = copy.deepcopy(expected)  # what the classic path captures: antialiased bilinear resize
    changed = 0
    for k, q in enumerate(select_detections(inputs)[0].query.tolist()):
        r0, r1, c0, c1 = mask_crop(meta, tuple(inputs.masks.shape[-2:]))
        resized = F.interpolate(
            inputs.masks[0, q, r0:r1, c0:c1][None, None].float(),
            size=meta.size_after_preprocessing,
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0, 0]
        classic[0].masks[k] = encode((resized > 0).numpy())
        changed += classic[0].masks[k].counts != expected[0].masks[k].counts
    assert changed > 0
    result = _check(classic, expected, inputs)  # our output replayed against a classic-path capture
    assert result.verdict == "mismatch"
    assert KNOWN_ANTIALIAS in result.known and result.parity["unexplained"] == []
    assert result.parity["antialias_explained_pixels"] == result.parity["real_pixels"] > 0


def test_float16_differences_are_recognised(seed: int) -> None:
    inputs, expected, _ = _case(seed, dtype=torch.float16)
    out = copy.deepcopy(expected)
    out[0].confidence = out[0].confidence + np.float32(2.0**-12)  # below one float16 ulp at scores >= 0.5
    out[0].xyxy[0, 0] += 1
    result = _check(expected, out, inputs)
    assert result.verdict == "mismatch" and KNOWN_FLOAT16 in result.known
    assert result.parity["unexplained"] == []
    out[0].xyxy[1, 0] += 50  # far beyond float16 rounding: a real difference as well
    result = _check(expected, out, inputs)
    assert result.verdict == "mismatch" and len(result.parity["unexplained"]) == 1


@pytest.mark.parametrize("kind", ["dict", "length", "tensor", "dtype", "no-masks", "mask-count", "mask-type"])
def test_wrong_structure_is_an_error(seed: int, kind: str) -> None:
    inputs, expected, _ = _case(seed)
    out: object = copy.deepcopy(expected)
    if kind == "dict":
        out = {"detections": expected}
    elif kind == "length":
        out = [*expected, *expected]
    elif kind == "tensor":
        out[0].xyxy = torch.from_numpy(out[0].xyxy)
    elif kind == "dtype":
        out[0].confidence = out[0].confidence.astype(np.float64)
    elif kind == "no-masks":
        del out[0].masks
    elif kind == "mask-count":
        out[0].masks = out[0].masks[:-1]
    else:
        out[0].masks[0] = {"size": [1, 1], "counts": "x"}
    result = _check(expected, out, inputs)
    assert result.verdict == "error" and result.message


def test_tally_counts_caches_and_summarises(seed: int) -> None:
    inputs, expected, q = _case(seed)
    ctx = CaseContext(inputs)
    tally = CorrectnessTally()
    tally.check(0, 0, expected, copy.deepcopy(expected), ctx)
    assert tally.verdict == "identical" and tally.passed
    logits = _canvas_logits(inputs, q)
    ys, xs = np.nonzero(logits > 0.5)
    mask = decode(expected[0].masks[0])
    mask[ys[0], xs[0]] = False
    bad = _with_mask(expected, 0, mask)
    for rep in range(3):
        tally.check(0, rep, expected, bad, ctx)
    summary = tally.summary()
    assert tally.verdict == "mismatch" and not tally.passed
    assert (summary["calls"], summary["identical"], summary["mismatch"]) == (4, 1, 3)
    assert summary["parity"]["per_case"]["0"]["real_pixels"] == 1
    assert summary["parity"]["summary"]["real_pixels"] == 1  # one distinct output, analysed once
    assert len(summary["error_messages"]) == 3
