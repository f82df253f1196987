"""The torch reference against an independent dense computation written here from DESIGN.md steps 1-8.

The oracle uses numpy for selection, mapping, thresholds and boxes, F.interpolate for the upsample of
the cropped mask (DESIGN.md defines the upsample as exactly what it computes), numpy for the canvas
and pycocotools.mask.encode for the RLE bytes. Inputs are random and built to hit every option:
letterbox padding (including pads whose mask-grid crop rounds half to even), static crop, non-square
intermediate size, class mappings with -1, short and empty mappings, scalar and per-class thresholds,
several classes per query, exact ties, NaN logits, a threshold equal to a score, max_detections,
empty results, float16, frames smaller than the mask grid, B = 1 and B > 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pycocotools.mask as coco_mask
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels.contract import ImageDetections, PostprocessInputs, PreprocessMeta
from kernels.reference import postprocess_reference, select_detections, upsampled_mask_logits

# ------------------------------------------------------------------------------------------ the oracle


@dataclass
class DenseImage:
    """One image's detections as the oracle computes them."""

    query: np.ndarray
    class_id: np.ndarray
    score: np.ndarray
    xyxy: np.ndarray
    counts: list[bytes]


def pair_scores(logits: torch.Tensor) -> np.ndarray:
    """Step 1: the correctly rounded float32 sigmoid of every pair, [B, Q, C], via numpy float64."""
    x = logits.double().numpy()
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def dense_select(inputs: PostprocessInputs, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 2-5 in numpy for image b: (query, output class, score) in output order."""
    _, queries, classes = inputs.logits.shape
    scores = pair_scores(inputs.logits)[b].reshape(-1)
    flat = np.arange(scores.size)
    is_nan = np.isnan(scores)
    # lexsort: last key is primary. Numbers before NaN, then score descending, then flat index ascending.
    order = np.lexsort((flat, -np.where(is_nan, 0.0, scores), is_nan))[:queries]
    query, model_class, score = order // classes, order % classes, scores[order]

    if inputs.class_mapping is not None:
        mapping = inputs.class_mapping.numpy()
        keep = model_class < mapping.size
        out_class = np.full(order.size, -1, np.int64)
        out_class[keep] = mapping[model_class[keep]]
        keep &= out_class >= 0
    else:
        keep = model_class < inputs.num_classes
        out_class = model_class.astype(np.int64)

    threshold = inputs.threshold
    if isinstance(threshold, torch.Tensor) and threshold.dim() == 1:
        per_class = threshold.numpy()
        assert out_class[keep].max(initial=-1) < per_class.size, "generator keeps per-class thresholds complete"
        limit = per_class[np.where(keep, out_class, 0)]
    else:
        limit = np.float32(float(threshold))
    keep &= score > limit  # NaN compares False: never kept
    rows = np.flatnonzero(keep)
    if inputs.max_detections is not None:
        rows = rows[: inputs.max_detections]
    return query[rows], out_class[rows], score[rows].astype(np.float32)


def dense_boxes(boxes: np.ndarray, meta: PreprocessMeta) -> np.ndarray:
    """Step 6 in numpy float32, one rounding per operation, in the written order."""
    f = np.float32
    cx, cy, w, h = (boxes[:, i].astype(f) for i in range(4))
    xyxy = np.stack([cx - f(0.5) * w, cy - f(0.5) * h, cx + f(0.5) * w, cy + f(0.5) * h], axis=1)
    dh, dw = meta.nonsquare_intermediate_size or meta.inference_size
    height, width = meta.original_size
    xyxy = xyxy * np.array([dw, dh, dw, dh], f)
    xyxy = xyxy - np.array([meta.pad[0], meta.pad[1]] * 2, f)
    xyxy = xyxy / np.array([meta.scale[0], meta.scale[1]] * 2, f)
    xyxy = xyxy + np.array([meta.static_crop_offset[0], meta.static_crop_offset[1]] * 2, f)
    xyxy = np.minimum(np.maximum(xyxy, f(0)), np.array([width, height, width, height], f))
    return np.rint(xyxy).astype(np.int32)  # rint rounds half to even


def dense_crop(meta: PreprocessMeta, mask_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Step 7's crop: round(pad * mask_size / size) per side (Python round: half to even)."""
    mh, mw = mask_hw
    dh, dw = meta.nonsquare_intermediate_size or meta.inference_size
    left, top, right, bottom = meta.pad
    return round(top * mh / dh), mh - round(bottom * mh / dh), round(left * mw / dw), mw - round(right * mw / dw)


def dense_upsample(mask: torch.Tensor, meta: PreprocessMeta) -> torch.Tensor:
    r0, r1, c0, c1 = dense_crop(meta, (int(mask.shape[-2]), int(mask.shape[-1])))
    cropped = mask.float()[r0:r1, c0:c1].contiguous()
    return F.interpolate(
        cropped[None, None], size=meta.size_after_preprocessing, mode="bilinear", align_corners=False, antialias=False
    )[0, 0]


def dense_canvas(mask: torch.Tensor, meta: PreprocessMeta) -> np.ndarray:
    """Step 7: value > 0 (NaN is 0) placed at the static crop offset on an H x W canvas."""
    inner = dense_upsample(mask, meta).numpy() > 0
    height, width = meta.original_size
    ox, oy = meta.static_crop_offset
    canvas = np.zeros((height, width), bool)
    canvas[oy : oy + inner.shape[0], ox : ox + inner.shape[1]] = inner
    return canvas


def dense_postprocess(inputs: PostprocessInputs) -> list[DenseImage]:
    out = []
    boxes = inputs.boxes.float().numpy()
    for b, meta in enumerate(inputs.preprocess):
        query, class_id, score = dense_select(inputs, b)
        counts = [
            coco_mask.encode(np.asfortranarray(dense_canvas(inputs.masks[b, q], meta).astype(np.uint8)))["counts"]
            for q in query
        ]
        out.append(DenseImage(query, class_id, score, dense_boxes(boxes[b, query], meta), counts))
    return out


def assert_matches_oracle(inputs: PostprocessInputs) -> list[ImageDetections]:
    got = postprocess_reference(inputs)
    want = dense_postprocess(inputs)
    assert len(got) == len(want) == inputs.batch_size
    for b, (g, w) in enumerate(zip(got, want, strict=True)):
        where = f"image {b}"
        assert g.class_id.dtype == np.int32 and g.xyxy.dtype == np.int32 and g.confidence.dtype == np.float32
        assert np.array_equal(g.class_id, w.class_id.astype(np.int32)), where
        assert np.array_equal(g.xyxy, w.xyxy), where
        # exact: the same float32 sigmoid bits (see pair_scores), selected without further arithmetic
        assert np.array_equal(g.confidence, w.score), where
        assert [m.counts for m in g.masks] == w.counts, where
        assert all(m.size == inputs.preprocess[b].original_size for m in g.masks), where
    return got


# ------------------------------------------------------------------------------------------ random inputs


def _preprocess(rng: np.random.Generator, opts: dict, size: int) -> PreprocessMeta:
    """A random frame's metadata; frames whose letterbox padding would cover the whole mask grid are redrawn."""
    while True:
        meta = _draw_preprocess(rng, opts, size)
        r0, r1, c0, c1 = dense_crop(meta, (size // 4, size // 4))
        if r1 > r0 and c1 > c0:
            return meta


def _draw_preprocess(rng: np.random.Generator, opts: dict, size: int) -> PreprocessMeta:
    """Metadata for a random frame, computed as RF-DETR pipelines do for the chosen options."""
    lo, hi = opts.get("frame_range", (12, 70))
    height, width = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
    x0, y0, x1, y1 = 0, 0, width, height
    if opts.get("static_crop"):
        x0, y0 = int(rng.integers(0, width // 3 + 1)), int(rng.integers(0, height // 3 + 1))
        x1 = int(rng.integers(x0 + max(width // 2, 1), width + 1))
        y1 = int(rng.integers(y0 + max(height // 2, 1), height + 1))
    crop_h, crop_w = y1 - y0, x1 - x0
    inference = (size, size)
    pad = (0.0, 0.0, 0.0, 0.0)
    nonsquare = None
    if opts.get("nonsquare"):
        nonsquare = (size, int(size * rng.choice([1.25, 1.5, 1.75])))
        scale = (nonsquare[1] / crop_w, size / crop_h)
    elif opts.get("letterbox"):
        factor = min(size / crop_w, size / crop_h)
        new_w, new_h = max(round(crop_w * factor), 1), max(round(crop_h * factor), 1)
        left, top = (size - new_w) // 2, (size - new_h) // 2
        pad = (float(left), float(top), float(size - new_w - left), float(size - new_h - top))
        scale = (factor, factor)
    else:
        scale = (size / crop_w, size / crop_h)
    if opts.get("half_pads"):
        # pad * mask / size = pad / 4 (mask = size / 4): 2, 6 and 10 land on .5, the crop rounds half to even
        pad = tuple(float(rng.choice([0, 2, 6, 10, 3.5, 1.9])) for _ in range(4))
    return PreprocessMeta(
        original_size=(height, width),
        inference_size=inference,
        size_after_preprocessing=(crop_h, crop_w),
        pad=pad,  # type: ignore[arg-type]
        scale=scale,
        static_crop_offset=(x0, y0),
        nonsquare_intermediate_size=nonsquare,
    )


def random_inputs(seed: int, batch: int, **opts: object) -> PostprocessInputs:
    """Random RF-DETR-shaped inputs for the named options (see SCENARIOS)."""
    rng = np.random.default_rng(seed)
    queries, classes = int(opts.get("queries", 10)), int(opts.get("classes", 6))
    size = int(opts.get("size", 32))
    mask = size // 4
    boxes = np.empty((batch, queries, 4), np.float32)
    boxes[..., :2] = rng.uniform(-0.1, 1.1, (batch, queries, 2))  # some boxes leave the image: clamping
    boxes[..., 2:] = rng.uniform(0.0, 0.8, (batch, queries, 2))
    logits = rng.normal(-1.0, 3.0, (batch, queries, classes)).astype(np.float32)
    masks = rng.normal(-0.5, 2.0, (batch, queries, mask, mask)).astype(np.float32)
    if opts.get("multi_class"):
        logits[:, : queries // 2, :] = rng.uniform(1.0, 4.0, (batch, queries // 2, classes))
    if opts.get("ties"):
        logits[:, :3, :2] = 2.5  # equal scores across queries and classes
        logits[:, -2:, -3:] = 30.0  # sigmoid saturates to exactly 1.0: more ties
        flat = logits.reshape(batch, -1)
        flat[:, 5::7] = flat[:, 4:5]  # scattered copies of one value
    if opts.get("nan"):
        logits.reshape(-1)[rng.choice(logits.size, size=max(logits.size // 6, 1), replace=False)] = np.nan
        logits[:, 0, 0] = np.nan
        masks.reshape(-1)[rng.choice(masks.size, size=masks.size // 20, replace=False)] = np.nan

    mapping = None
    kind = opts.get("mapping")
    if kind is None:
        num_outputs = int(opts.get("num_classes", classes - 1))
    else:
        length = {"full": classes, "short": max(classes - 3, 1), "long": classes + 2, "empty": 0}[str(kind)]
        values = rng.integers(0, 4, size=length)
        values[rng.random(length) < 0.3] = -1
        mapping = torch.from_numpy(values.astype(np.int64))
        num_outputs = int(values.max(initial=-1)) + 1
    threshold: float | torch.Tensor = float(rng.uniform(0.1, 0.9))
    if opts.get("per_class"):
        extra = int(rng.integers(0, 3))
        threshold = torch.from_numpy(rng.uniform(0.1, 0.9, max(num_outputs, 1) + extra).astype(np.float32))
    if opts.get("empty"):
        threshold = 1.0  # sigmoid never exceeds 1.0
    dtype = torch.float16 if opts.get("fp16") else torch.float32
    logits_t = torch.from_numpy(logits).to(dtype)
    if opts.get("threshold_at_score"):
        # the threshold equals a pair's score exactly: that pair must be dropped (score > threshold)
        scores = pair_scores(logits_t)
        finite = scores[np.isfinite(scores)]
        threshold = float(np.sort(finite)[-max(queries // 2, 1)])
    inputs = PostprocessInputs(
        boxes=torch.from_numpy(boxes).to(dtype),
        logits=logits_t,
        masks=torch.from_numpy(masks).to(dtype),
        threshold=threshold,
        num_classes=int(opts.get("num_classes", classes - 1)),
        preprocess=[_preprocess(rng, opts, size) for _ in range(batch)],
        class_mapping=mapping,
        max_detections=opts.get("max_detections"),  # type: ignore[arg-type]
    )
    inputs.validate()
    return inputs


SCENARIOS: dict[str, dict] = {
    "stretch": {},
    "letterbox": {"letterbox": True},
    "static_crop": {"static_crop": True},
    "letterbox_static_crop": {"letterbox": True, "static_crop": True},
    "nonsquare": {"nonsquare": True},
    "nonsquare_static_crop": {"nonsquare": True, "static_crop": True},
    "half_pads": {"half_pads": True, "size": 64},
    "mapping_full": {"mapping": "full"},
    "mapping_short": {"mapping": "short"},
    "mapping_long": {"mapping": "long"},
    "mapping_empty": {"mapping": "empty"},
    "num_classes_all": {"num_classes": 6},
    "num_classes_zero": {"num_classes": 0},
    "per_class": {"per_class": True},
    "per_class_mapping": {"per_class": True, "mapping": "short"},
    "multi_class": {"multi_class": True},
    "ties": {"ties": True},
    "nan": {"nan": True},
    "threshold_at_score": {"threshold_at_score": True, "num_classes": 6},
    "max_detections_0": {"max_detections": 0},
    "max_detections_2": {"max_detections": 2, "multi_class": True},
    "empty": {"empty": True},
    "fp16": {"fp16": True, "letterbox": True},
    "downsample": {"frame_range": (3, 8)},
    "everything_fp16": {
        "fp16": True,
        "letterbox": True,
        "static_crop": True,
        "mapping": "short",
        "per_class": True,
        "ties": True,
        "nan": True,
        "multi_class": True,
        "max_detections": 5,
    },
}


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_reference_matches_dense_oracle(scenario: str, batch: int, seed: int) -> None:
    for k in range(3):
        inputs = random_inputs(seed + 101 * k + batch, batch, **SCENARIOS[scenario])
        got = assert_matches_oracle(inputs)
        if scenario == "empty" or scenario.startswith("max_detections_0") or scenario == "num_classes_zero":
            assert all(len(det) == 0 for det in got)
        if scenario == "max_detections_2":
            assert all(len(det) == 2 for det in got)


def test_scenarios_are_not_vacuous(seed: int) -> None:
    """The option-specific scenarios really produce detections (so the comparisons above see data)."""
    for name, opts in SCENARIOS.items():
        if name in ("empty", "max_detections_0", "num_classes_zero", "mapping_empty"):
            continue
        total = sum(
            len(det.query)
            for k in range(3)
            for det in dense_postprocess(random_inputs(seed + 101 * k + 3, 3, **opts))  # same inputs as above
        )
        assert total > 0, name


def test_ties_keep_flat_index_order(seed: int) -> None:
    inputs = random_inputs(seed, 1, ties=True, num_classes=6)
    query, class_id, score = dense_select(inputs, 0)
    ones = score == 1.0
    assert ones.sum() >= 2
    flat = query * inputs.logits.shape[2] + class_id
    assert np.all(np.diff(flat[ones]) > 0)
    assert_matches_oracle(inputs)


def test_threshold_equal_to_score_is_dropped(seed: int) -> None:
    inputs = random_inputs(seed, 1, threshold_at_score=True)
    got = assert_matches_oracle(inputs)
    assert np.all(got[0].confidence > np.float32(inputs.threshold))  # type: ignore[arg-type]


def test_scores_are_float32_sigmoid(seed: int) -> None:
    """Confidences are the float64 sigmoid rounded once to float32: within half a float32 ulp of it
    (plus a hair for libm's float64 exp, far below a float32 ulp)."""
    inputs = random_inputs(seed, 2, multi_class=True, fp16=True)
    for b, (det, sel) in enumerate(zip(postprocess_reference(inputs), select_detections(inputs), strict=True)):
        assert len(det) > 0
        # without a class mapping the output class is the model class
        logit = inputs.logits[b, sel.query, sel.class_id].double().numpy()
        exact = 1.0 / (1.0 + np.exp(-logit))
        ulp = np.spacing(np.abs(det.confidence)).astype(np.float64)
        assert np.all(np.abs(det.confidence.astype(np.float64) - exact) <= 0.5 * ulp * (1 + 1e-9))


@pytest.mark.parametrize("opts", [{}, {"letterbox": True, "static_crop": True}, {"nonsquare": True, "half_pads": True}])
def test_upsampled_mask_logits_matches_crop_and_interpolate(seed: int, opts: dict) -> None:
    inputs = random_inputs(seed, 2, **opts)
    for b, meta in enumerate(inputs.preprocess):
        for q in range(3):
            got = upsampled_mask_logits(inputs.masks[b, q], meta)
            want = dense_upsample(inputs.masks[b, q], meta)
            assert got.dtype == torch.float32 and got.shape == want.shape == meta.size_after_preprocessing
            assert torch.equal(got, want)


def test_select_detections_matches_numpy(seed: int) -> None:
    inputs = random_inputs(seed, 3, **SCENARIOS["everything_fp16"])
    for b, sel in enumerate(select_detections(inputs)):
        query, class_id, score = dense_select(inputs, b)
        assert np.array_equal(sel.query.numpy(), query)
        assert np.array_equal(sel.class_id.numpy(), class_id)
        assert np.array_equal(sel.score.numpy(), score)


def test_synthetic_inputs_match_oracle(seed: int) -> None:
    """The realistic generator's inputs too (blob masks, letterbox + static crop + mapping, B=2)."""
    from kernels.synthetic import make_inputs

    inputs = make_inputs(
        seed,
        batch=2,
        queries=20,
        classes=12,
        input_size=64,
        frame_sizes=[(45, 80), (90, 41)],
        letterbox=True,
        static_crop=True,
        class_mapping=True,
        per_class_threshold=True,
        num_confident=6,
    )
    assert_matches_oracle(inputs)


@st.composite
def option_sets(draw: st.DrawFn) -> tuple[int, int, dict]:
    opts: dict = {
        "queries": draw(st.integers(1, 8)),
        "classes": draw(st.integers(1, 6)),
        "size": draw(st.sampled_from([16, 32, 48])),
        "frame_range": (2, draw(st.integers(3, 40))),
    }
    for flag in ("static_crop", "per_class", "ties", "nan", "multi_class", "fp16"):
        opts[flag] = draw(st.booleans())
    # half pads crop up to 2 mask pixels per side: they need a mask grid of 8 or more (size >= 32)
    layouts = ["stretch", "letterbox", "nonsquare"] + (["half_pads"] if opts["size"] >= 32 else [])
    layout = draw(st.sampled_from(layouts))
    if layout != "stretch":
        opts[layout] = True
    opts["mapping"] = draw(st.sampled_from([None, "full", "short", "long", "empty"]))
    opts["max_detections"] = draw(st.sampled_from([None, 0, 1, 3]))
    if opts["mapping"] is None:
        opts["num_classes"] = draw(st.integers(0, opts["classes"]))
    return draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 3)), opts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option_sets())
def test_reference_matches_oracle_property(case: tuple[int, int, dict]) -> None:
    seed, batch, opts = case
    assert_matches_oracle(random_inputs(seed, batch, **opts))


def test_equal_logits_get_equal_scores() -> None:
    queries, classes = 4, 10
    candidates = torch.from_numpy(np.random.default_rng(0).normal(0.0, 4.0, 4000).astype(np.float32))
    split = [float(v) for v in candidates if len(set(torch.sigmoid(v.repeat(queries * classes)).tolist())) > 1]
    logit = split[0] if split else 0.3  # where this CPU's float32 sigmoid is position-dependent, use such a logit
    logits = torch.full((1, queries, classes), -20.0)
    logits[0, 0, 0] = logits[0, -1, -1] = logit
    meta = PreprocessMeta(original_size=(8, 8), inference_size=(8, 8), size_after_preprocessing=(8, 8))
    inputs = PostprocessInputs(
        boxes=torch.full((1, queries, 4), 0.5),
        logits=logits,
        masks=torch.zeros(1, queries, 2, 2),
        threshold=0.0,
        num_classes=classes,
        preprocess=[meta],
    )
    selection = select_detections(inputs)[0]
    assert selection.query[:2].tolist() == [0, queries - 1]  # ties by flat index ascending
    assert selection.score[0] == selection.score[1]
