"""The torch reference post-processing (DESIGN.md steps 1-8), on CPU or CUDA.

Deliberately simple: per-detection dense bilinear upsample with torch, a full-size canvas, run
boundaries found with torch on the inputs' device, counts compressed on the CPU. Every other
implementation, the capture and the tests are checked against this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from kernels.contract import ImageDetections, PostprocessInputs, PreprocessMeta, RleMask, mask_crop
from kernels.rle import counts_to_string

__all__ = [
    "Selection",
    "select_detections",
    "boxes_to_image_xyxy",
    "upsampled_mask_logits",
    "canvas_mask",
    "postprocess_reference",
    "ReferenceImplementation",
]


@dataclass
class Selection:
    """Detections of one image after steps 1-5, in output order (tensors on the inputs' device)."""

    query: torch.Tensor  # int64 [N]
    class_id: torch.Tensor  # int64 [N], output class after mapping
    score: torch.Tensor  # float32 [N]


def _pair_scores(logits: torch.Tensor) -> torch.Tensor:
    """Step 1: the float32 score of every (query, class) pair, flattened per image: [B, Q*C].

    sigmoid is evaluated in float64 and rounded once to float32, i.e. the correctly rounded float32
    sigmoid (barring double rounding, ~1e-9 of values). torch's float32 sigmoid is not usable here: on
    the CPU its vectorised body and scalar tail differ by an ulp for the same logit, so equal logits
    could get unequal scores and ties would not fall back to the flat index; and its bits differ
    between CPU and CUDA. Every implementation computes this same value.
    """
    return torch.sigmoid(logits.double()).float().reshape(logits.shape[0], -1)


def select_detections(inputs: PostprocessInputs) -> list[Selection]:
    """Steps 1-5: score, order (score desc, flat index asc, NaN last), top Q, map, threshold, cap."""
    batch, queries, num_logits = inputs.logits.shape
    scores = _pair_scores(inputs.logits)
    order_key = torch.where(torch.isnan(scores), torch.full_like(scores, -1.0), scores)
    order = torch.sort(order_key, dim=1, descending=True, stable=True).indices[:, :queries]
    top_scores = torch.gather(scores, 1, order)
    query = torch.div(order, max(num_logits, 1), rounding_mode="floor")
    model_class = order % max(num_logits, 1)

    if inputs.class_mapping is not None:
        mapping = inputs.class_mapping
        in_range = model_class < mapping.numel()
        mapped = mapping[model_class.clamp(max=max(mapping.numel() - 1, 0))] if mapping.numel() else model_class
        valid = in_range & (mapped >= 0)
        out_class = torch.where(valid, mapped, torch.zeros_like(mapped))
    else:
        valid = model_class < inputs.num_classes
        out_class = model_class

    threshold = inputs.threshold
    if isinstance(threshold, torch.Tensor) and threshold.dim() == 1:
        per_class = threshold.to(scores.device)
        valid &= out_class < per_class.numel()
        limit = per_class[out_class.clamp(0, max(per_class.numel() - 1, 0))]
    else:
        limit = torch.as_tensor(float(threshold), dtype=torch.float32, device=scores.device)
    keep = valid & (top_scores > limit)

    selections = []
    for b in range(batch):
        rows = torch.nonzero(keep[b], as_tuple=False).flatten()
        if inputs.max_detections is not None:
            rows = rows[: inputs.max_detections]
        selections.append(Selection(query=query[b, rows], class_id=out_class[b, rows], score=top_scores[b, rows]))
    return selections


def boxes_to_image_xyxy(boxes_cxcywh: torch.Tensor, meta: PreprocessMeta) -> torch.Tensor:
    """Step 6 for [N, 4] normalised cxcywh boxes: image-pixel xyxy, clamped, rounded half-to-even, int32.

    Every metadata value is converted to float32 first and each operation rounds on its own (no fused
    multiply-add), in the order written here; a NaN coordinate becomes 0 before clamping.
    """
    device = boxes_cxcywh.device
    cx, cy, w, h = boxes_cxcywh.float().unbind(-1)
    xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)

    def per_axis(x: float, y: float) -> torch.Tensor:
        return torch.tensor([x, y, x, y], dtype=torch.float32, device=device)

    denorm_h, denorm_w = meta.denorm_size
    pad_left, pad_top, _, _ = meta.pad
    scale_x, scale_y = meta.scale
    offset_x, offset_y = meta.static_crop_offset
    height, width = meta.original_size
    xyxy = xyxy * per_axis(denorm_w, denorm_h)
    xyxy = xyxy - per_axis(pad_left, pad_top)
    xyxy = xyxy / per_axis(scale_x, scale_y)
    xyxy = xyxy + per_axis(offset_x, offset_y)
    xyxy = torch.nan_to_num(xyxy, nan=0.0, posinf=float("inf"), neginf=float("-inf"))
    xyxy = torch.minimum(torch.clamp(xyxy, min=0.0), per_axis(width, height))
    return torch.round(xyxy).to(torch.int32)


def upsampled_mask_logits(mask_logits: torch.Tensor, meta: PreprocessMeta) -> torch.Tensor:
    """Step 7 up to the threshold: crop the letterbox padding, upsample to size_after_preprocessing.

    Returns float32 [H', W'] logits exactly as F.interpolate(bilinear, align_corners=False) computes them;
    they belong at meta.static_crop_offset in the original image.
    """
    r0, r1, c0, c1 = mask_crop(meta, (int(mask_logits.shape[-2]), int(mask_logits.shape[-1])))
    cropped = mask_logits.float()[r0:r1, c0:c1]
    return F.interpolate(
        cropped[None, None], size=meta.size_after_preprocessing, mode="bilinear", align_corners=False, antialias=False
    )[0, 0]


def canvas_mask(mask_logits: torch.Tensor, meta: PreprocessMeta) -> torch.Tensor:
    """The full-frame bool mask [H, W] of one detection (value > 0, NaN is 0, placed at the static crop)."""
    height, width = meta.original_size
    offset_x, offset_y = meta.static_crop_offset
    inner = upsampled_mask_logits(mask_logits, meta) > 0
    canvas = torch.zeros((height, width), dtype=torch.bool, device=mask_logits.device)
    canvas[offset_y : offset_y + inner.shape[0], offset_x : offset_x + inner.shape[1]] = inner
    return canvas


def _column_major_counts(canvas: torch.Tensor) -> np.ndarray:
    """COCO run counts of a bool canvas, with run boundaries found on the canvas' device."""
    flat = canvas.t().reshape(-1)
    changes = torch.nonzero(flat[1:] != flat[:-1], as_tuple=False).flatten() + 1
    bounds = torch.cat([changes.new_zeros(1), changes, changes.new_full((1,), flat.numel())])
    counts = torch.diff(bounds)
    if bool(flat[0]):
        counts = torch.cat([counts.new_zeros(1), counts])
    return counts.cpu().numpy()


def postprocess_reference(inputs: PostprocessInputs) -> list[ImageDetections]:
    """Run DESIGN.md steps 1-8 on one batched call; returns host objects, one entry per image."""
    results = []
    for b, selection in enumerate(select_detections(inputs)):
        meta = inputs.preprocess[b]
        xyxy = boxes_to_image_xyxy(inputs.boxes[b, selection.query], meta)
        masks = []
        for q in selection.query.tolist():
            counts = _column_major_counts(canvas_mask(inputs.masks[b, q], meta))
            masks.append(RleMask(size=meta.original_size, counts=counts_to_string(counts)))
        results.append(
            ImageDetections(
                xyxy=xyxy.cpu().numpy(),
                confidence=selection.score.cpu().numpy().astype(np.float32),
                class_id=selection.class_id.to(torch.int32).cpu().numpy(),
                masks=masks,
            )
        )
    return results


class ReferenceImplementation:
    """The reference as a registry implementation (no separate phases: it synchronises per mask)."""

    name = "reference"

    def __call__(self, inputs: PostprocessInputs) -> list[ImageDetections]:
        return postprocess_reference(inputs)
