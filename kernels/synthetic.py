"""Synthetic RF-DETR-seg-like post-processing inputs, for tests and sample case sets.

Shapes and statistics follow a real seg model: Q queries, C class logits (most pairs far below zero,
a handful confident, sometimes two classes for one query), mask logits at input/4 that are smooth
blobs crossing zero at the object border. Pre-processing metadata is computed the way RF-DETR
pipelines compute it (stretch resize or letterbox, optional static crop, optional non-square
intermediate size). Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
import torch

from kernels.contract import PostprocessInputs, PreprocessMeta

__all__ = ["make_inputs", "make_preprocess"]


def make_preprocess(
    frame_size: tuple[int, int],
    input_size: int,
    *,
    letterbox: bool = False,
    static_crop: tuple[int, int, int, int] | None = None,
    nonsquare_width: int | None = None,
) -> PreprocessMeta:
    """Metadata for one frame (H, W): static crop (x0, y0, x1, y1), then stretch resize or letterbox."""
    height, width = frame_size
    x0, y0, x1, y1 = static_crop if static_crop is not None else (0, 0, width, height)
    crop_h, crop_w = y1 - y0, x1 - x0
    if nonsquare_width is not None:
        denorm = (input_size, nonsquare_width)
        return PreprocessMeta(
            original_size=(height, width),
            inference_size=(input_size, input_size),
            size_after_preprocessing=(crop_h, crop_w),
            scale=(nonsquare_width / crop_w, input_size / crop_h),
            static_crop_offset=(x0, y0),
            nonsquare_intermediate_size=denorm,
        )
    if not letterbox:
        return PreprocessMeta(
            original_size=(height, width),
            inference_size=(input_size, input_size),
            size_after_preprocessing=(crop_h, crop_w),
            scale=(input_size / crop_w, input_size / crop_h),
            static_crop_offset=(x0, y0),
        )
    factor = min(input_size / crop_w, input_size / crop_h)
    new_w, new_h = round(crop_w * factor), round(crop_h * factor)
    pad_left, pad_top = (input_size - new_w) // 2, (input_size - new_h) // 2
    return PreprocessMeta(
        original_size=(height, width),
        inference_size=(input_size, input_size),
        size_after_preprocessing=(crop_h, crop_w),
        pad=(pad_left, pad_top, input_size - new_w - pad_left, input_size - new_h - pad_top),
        scale=(factor, factor),
        static_crop_offset=(x0, y0),
    )


def _blob_logits(rng: np.random.Generator, size: int, box: np.ndarray, sharpness: float) -> np.ndarray:
    """Smooth mask logits [size, size]: positive inside an ellipse around the box, crossing zero at its border."""
    cx, cy, w, h = box
    coords = (np.arange(size, dtype=np.float64) + 0.5) / size
    dx = (coords[None, :] - cx) / max(w / 2, 1e-3)
    dy = (coords[:, None] - cy) / max(h / 2, 1e-3)
    angle = rng.uniform(0, 2 * np.pi)
    wobble = 0.15 * np.sin(3 * np.arctan2(dy, dx) + angle)
    field = (1.0 + wobble - np.hypot(dx, dy)) * sharpness
    return field + rng.normal(0.0, 0.3, size=(size, size))


def make_inputs(
    seed: int,
    *,
    batch: int = 1,
    queries: int = 100,
    classes: int = 91,
    input_size: int = 312,
    frame_sizes: list[tuple[int, int]] | None = None,
    letterbox: bool = False,
    static_crop: bool = False,
    nonsquare: bool = False,
    class_mapping: bool | torch.Tensor | None = None,
    per_class_threshold: bool = False,
    threshold: float = 0.5,
    max_detections: int | None = None,
    dtype: torch.dtype = torch.float32,
    num_confident: int = 5,
    device: torch.device | str = "cpu",
) -> PostprocessInputs:
    """Realistic inputs for one batched call; see the module docstring. mask size is input_size // 4."""
    rng = np.random.default_rng(seed)
    frame_sizes = frame_sizes or [(360, 640)]
    mask_size = input_size // 4

    boxes = np.empty((batch, queries, 4), np.float32)
    boxes[..., :2] = rng.uniform(0.05, 0.95, size=(batch, queries, 2))
    boxes[..., 2:] = rng.uniform(0.02, 0.6, size=(batch, queries, 2))
    logits = rng.normal(-6.0, 1.5, size=(batch, queries, classes)).astype(np.float32)
    masks = np.empty((batch, queries, mask_size, mask_size), np.float32)
    for b in range(batch):
        confident = rng.choice(queries, size=min(num_confident, queries), replace=False)
        for q in confident:
            logits[b, q, rng.integers(0, classes)] = rng.uniform(-0.5, 6.0)
            if rng.random() < 0.2:
                logits[b, q, rng.integers(0, classes)] = rng.uniform(-0.5, 3.0)
        for q in range(queries):
            sharpness = rng.uniform(4.0, 20.0) if q in confident else rng.uniform(1.0, 8.0)
            masks[b, q] = _blob_logits(rng, mask_size, boxes[b, q], sharpness)

    preprocess = []
    for b in range(batch):
        height, width = frame_sizes[b % len(frame_sizes)]
        crop = None
        if static_crop:
            x0, y0 = int(rng.integers(0, width // 4 + 1)), int(rng.integers(0, height // 4 + 1))
            x1 = int(rng.integers(x0 + max(width // 2, 1), width + 1))
            y1 = int(rng.integers(y0 + max(height // 2, 1), height + 1))
            crop = (x0, y0, x1, y1)
        nonsquare_width = int(input_size * rng.uniform(1.2, 1.8)) if nonsquare else None
        preprocess.append(
            make_preprocess(
                (height, width), input_size, letterbox=letterbox, static_crop=crop, nonsquare_width=nonsquare_width
            )
        )

    num_classes = classes - 1
    mapping_tensor = None
    if isinstance(class_mapping, torch.Tensor):
        mapping_tensor = class_mapping.to(torch.int64)
    elif class_mapping:
        length = int(rng.integers(max(classes - 10, 1), classes + 1))
        values = rng.integers(0, max(classes // 2, 1), size=length)
        values[rng.random(length) < 0.2] = -1
        mapping_tensor = torch.from_numpy(values.astype(np.int64))
    num_outputs = num_classes
    if mapping_tensor is not None:
        num_outputs = int(mapping_tensor.max()) + 1 if mapping_tensor.numel() else 0
    thresh: float | torch.Tensor = threshold
    if per_class_threshold:
        thresh = torch.from_numpy(rng.uniform(0.2, 0.8, size=max(num_outputs, 1)).astype(np.float32))

    inputs = PostprocessInputs(
        boxes=torch.from_numpy(boxes).to(dtype),
        logits=torch.from_numpy(logits).to(dtype),
        masks=torch.from_numpy(masks).to(dtype),
        threshold=thresh,
        num_classes=num_classes,
        preprocess=preprocess,
        class_mapping=mapping_tensor,
        max_detections=max_detections,
    )
    inputs.validate()
    return inputs.to(device)
