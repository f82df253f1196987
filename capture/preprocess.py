"""Pre-processing as RF-DETR pipelines do it: optional static crop, stretch or letterbox resize to the
square model input, ImageNet normalisation, and the per-image metadata post-processing needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cases.errors import BenchError
from kernels.contract import PreprocessMeta

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LETTERBOX_FILL",
    "Preprocessed",
    "parse_static_crop",
    "preprocess_frame",
    "normalize",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LETTERBOX_FILL = 114  # grey padding, as common detector pipelines use
RESIZE_MODES = ("stretch", "letterbox")


@dataclass(frozen=True)
class Preprocessed:
    """Model-input pixels (RGB uint8 [R, R, 3], before normalisation) and the image's metadata."""

    image: np.ndarray
    meta: PreprocessMeta


def parse_static_crop(text: str) -> tuple[int, int, int, int]:
    """Parse --static-crop "x0,y0,x1,y1" (pixels, end-exclusive) into a tuple; BenchError when malformed."""
    try:
        x0, y0, x1, y1 = (int(v) for v in text.split(","))
    except ValueError:
        raise BenchError(f"--static-crop expects x0,y0,x1,y1 in pixels, got {text!r}") from None
    if x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0:
        raise BenchError(f"--static-crop needs 0 <= x0 < x1 and 0 <= y0 < y1, got {text!r}")
    return x0, y0, x1, y1


def preprocess_frame(
    rgb: np.ndarray,
    input_size: int,
    *,
    resize: str = "stretch",
    static_crop: tuple[int, int, int, int] | None = None,
) -> Preprocessed:
    """Crop, resize (cv2 bilinear) and pad one RGB frame to input_size x input_size; record the metadata."""
    import cv2

    if resize not in RESIZE_MODES:
        raise BenchError(f"--resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    height, width = rgb.shape[:2]
    offset = (0, 0)
    image = rgb
    if static_crop is not None:
        x0, y0, x1, y1 = static_crop
        if x1 > width or y1 > height:
            raise BenchError(f"--static-crop {x0},{y0},{x1},{y1} does not fit a {width}x{height} frame")
        image = rgb[y0:y1, x0:x1]
        offset = (x0, y0)
    crop_h, crop_w = image.shape[:2]
    size = int(input_size)
    if resize == "stretch":
        out = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        pad = (0.0, 0.0, 0.0, 0.0)
        scale = (size / crop_w, size / crop_h)
    else:
        factor = min(size / crop_w, size / crop_h)
        new_w = min(size, max(1, round(crop_w * factor)))
        new_h = min(size, max(1, round(crop_h * factor)))
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        left, top = (size - new_w) // 2, (size - new_h) // 2
        out = np.full((size, size, 3), LETTERBOX_FILL, np.uint8)
        out[top : top + new_h, left : left + new_w] = resized
        pad = (float(left), float(top), float(size - new_w - left), float(size - new_h - top))
        scale = (new_w / crop_w, new_h / crop_h)
    meta = PreprocessMeta(
        original_size=(height, width),
        inference_size=(size, size),
        size_after_preprocessing=(crop_h, crop_w),
        pad=pad,
        scale=scale,
        static_crop_offset=offset,
    )
    return Preprocessed(image=np.ascontiguousarray(out), meta=meta)


def normalize(
    images: np.ndarray, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """RGB uint8 [B, R, R, 3] -> ImageNet-normalised [B, 3, R, R] tensor on device (what RF-DETR expects)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(dtype).contiguous()
