"""The post-processing contract: what every implementation takes and returns.

Inputs are device-resident tensors plus host-side metadata; outputs are host objects
(numpy arrays and bytes), so an implementation is only done once nothing is left on the GPU.
Semantics are in ../shared/DESIGN.md (steps 1-8) and docs/API.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

__all__ = [
    "PreprocessMeta",
    "PostprocessInputs",
    "RleMask",
    "ImageDetections",
    "Implementation",
    "PhasedImplementation",
    "mask_crop",
]


@dataclass(frozen=True)
class PreprocessMeta:
    """Per-image pre-processing metadata, mirroring what RF-DETR pipelines record.

    Sizes are (height, width); pad is (left, top, right, bottom) in model-input pixels;
    scale is (sx, sy) model-input pixels per image pixel; static_crop_offset is (x, y) in
    original-image pixels.
    """

    original_size: tuple[int, int]
    inference_size: tuple[int, int]
    size_after_preprocessing: tuple[int, int]
    pad: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    static_crop_offset: tuple[int, int] = (0, 0)
    nonsquare_intermediate_size: tuple[int, int] | None = None
    # Every value above as one bytes object (hash cached by Python): see cache_key.
    _key: bytes = field(init=False, repr=False, compare=False, hash=False, default=b"")

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key", _meta_key(self))

    @property
    def cache_key(self) -> bytes:
        """The metadata's values as bytes, made once per object: equal bytes mean equal sizes and offsets and
        bit-equal float64 pads and scales. For implementations that cache per-metadata work: looking one up touches
        one object (its hash is cached) where comparing the fields touches ~25, each a cache miss on a cold host."""
        return self._key

    @property
    def denorm_size(self) -> tuple[int, int]:
        """(h, w) that normalised boxes are multiplied by (DESIGN.md step 6)."""
        return self.nonsquare_intermediate_size or self.inference_size

    def to_json(self) -> dict:
        return {
            "original_size": list(self.original_size),
            "inference_size": list(self.inference_size),
            "size_after_preprocessing": list(self.size_after_preprocessing),
            "pad": list(self.pad),
            "scale": list(self.scale),
            "static_crop_offset": list(self.static_crop_offset),
            "nonsquare_intermediate_size": (
                None if self.nonsquare_intermediate_size is None else list(self.nonsquare_intermediate_size)
            ),
        }

    @classmethod
    def from_json(cls, obj: dict) -> PreprocessMeta:
        """Inverse of to_json; raises KeyError/TypeError/ValueError on malformed input."""
        nonsquare = obj.get("nonsquare_intermediate_size")
        meta = cls(
            original_size=_int_pair(obj["original_size"]),
            inference_size=_int_pair(obj["inference_size"]),
            size_after_preprocessing=_int_pair(obj["size_after_preprocessing"]),
            pad=tuple(float(v) for v in obj.get("pad", (0, 0, 0, 0))),  # type: ignore[arg-type]
            scale=tuple(float(v) for v in obj.get("scale", (1, 1))),  # type: ignore[arg-type]
            static_crop_offset=_int_pair(obj.get("static_crop_offset", (0, 0))),
            nonsquare_intermediate_size=None if nonsquare is None else _int_pair(nonsquare),
        )
        meta.validate()
        return meta

    def validate(self) -> None:
        """Raise ValueError when the metadata cannot describe a real pre-processing."""
        if len(self.pad) != 4 or len(self.scale) != 2:
            raise ValueError("pad needs 4 values and scale 2")
        for name in ("original_size", "inference_size", "size_after_preprocessing"):
            h, w = getattr(self, name)
            if h <= 0 or w <= 0:
                raise ValueError(f"{name} must be positive, got {(h, w)}")
        if self.nonsquare_intermediate_size is not None and min(self.nonsquare_intermediate_size) <= 0:
            raise ValueError("nonsquare_intermediate_size must be positive")
        if any(p < 0 for p in self.pad):
            raise ValueError(f"pad must be >= 0, got {self.pad}")
        if not all(s > 0 for s in self.scale):
            raise ValueError(f"scale must be > 0, got {self.scale}")
        ox, oy = self.static_crop_offset
        hp, wp = self.size_after_preprocessing
        h, w = self.original_size
        if ox < 0 or oy < 0 or ox + wp > w or oy + hp > h:
            raise ValueError(
                f"static crop {(wp, hp)} at offset {(ox, oy)} does not fit the original image {(w, h)} (w, h)"
            )


def _meta_key(meta: PreprocessMeta) -> bytes:
    """PreprocessMeta.cache_key, prefix-free (so keys of several images can be joined): the sizes, the offset and
    the non-square size (1, h, w; or 0, 0, 0 for none) as int64, then the pads and scales as float64 (ints
    converted, as the kernels convert them; a NaN equals only the same NaN)."""
    nonsquare = meta.nonsquare_intermediate_size
    ints = (
        *meta.original_size, *meta.inference_size, *meta.size_after_preprocessing, *meta.static_crop_offset,
        *((0, 0, 0) if nonsquare is None else (1, *nonsquare)),
    )  # fmt: skip
    return _key_part("q", ints) + _key_part("d", (*meta.pad, *meta.scale))


def _key_part(code: str, values: tuple) -> bytes:
    """code, a count and the values packed as struct code; where they do not pack (past int64 or float64, other
    types) b"r", their repr and a NUL instead."""
    try:
        return code.encode() + struct.pack(f"<B{len(values)}{code}", len(values), *values)
    except (struct.error, TypeError, OverflowError):
        return b"r" + repr(values).encode() + b"\0"


def _int_pair(value: object) -> tuple[int, int]:
    a, b = value  # type: ignore[misc]
    if int(a) != a or int(b) != b:
        raise ValueError(f"expected two integers, got {value!r}")
    return int(a), int(b)


def mask_crop(meta: PreprocessMeta, mask_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Rows/cols of the mask grid that cover the image content: (top, bottom, left, right), end-exclusive.

    The letterbox padding is scaled to mask resolution, round(pad * mask_size / size) per side with
    Python's round (half to even) in float64, size being the de-normalisation size (DESIGN.md step 7).
    """
    mh, mw = mask_hw
    dh, dw = meta.denorm_size
    left, top, right, bottom = meta.pad
    crop_left = round(left * mw / dw)
    crop_right = round(right * mw / dw)
    crop_top = round(top * mh / dh)
    crop_bottom = round(bottom * mh / dh)
    r0, r1, c0, c1 = crop_top, mh - crop_bottom, crop_left, mw - crop_right
    if r1 <= r0 or c1 <= c0:
        raise ValueError(f"padding {meta.pad} leaves no mask pixels of a {mh}x{mw} mask grid")
    return r0, r1, c0, c1


@dataclass
class PostprocessInputs:
    """One batched post-processing call (B images).

    boxes [B, Q, 4] cxcywh normalised; logits [B, Q, C]; masks [B, Q, h, w] logits; all float16 or
    float32 on one device. threshold is a float or a float32 tensor [K] indexed by output class.
    class_mapping (int64 [M], -1 drops) maps model classes to output classes; without it classes
    >= num_classes are dropped. max_detections caps the per-image count after thresholding.
    """

    boxes: torch.Tensor
    logits: torch.Tensor
    masks: torch.Tensor
    threshold: float | torch.Tensor
    num_classes: int
    preprocess: list[PreprocessMeta]
    class_mapping: torch.Tensor | None = None
    max_detections: int | None = None

    @property
    def batch_size(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistency (shapes, dtypes, devices, metadata)."""
        b, q, four = self.boxes.shape if self.boxes.dim() == 3 else (None, None, None)
        if four != 4:
            raise ValueError(f"boxes must be [B, Q, 4], got {tuple(self.boxes.shape)}")
        if self.logits.dim() != 3 or tuple(self.logits.shape[:2]) != (b, q):
            raise ValueError(f"logits must be [B={b}, Q={q}, C], got {tuple(self.logits.shape)}")
        if self.masks.dim() != 4 or tuple(self.masks.shape[:2]) != (b, q):
            raise ValueError(f"masks must be [B={b}, Q={q}, h, w], got {tuple(self.masks.shape)}")
        for name in ("boxes", "logits", "masks"):
            t = getattr(self, name)
            if t.dtype not in (torch.float16, torch.float32):
                raise ValueError(f"{name} must be float16 or float32, got {t.dtype}")
            if t.device != self.boxes.device:
                raise ValueError(f"{name} is on {t.device}, boxes on {self.boxes.device}")
        if len(self.preprocess) != b:
            raise ValueError(f"preprocess has {len(self.preprocess)} entries for a batch of {b}")
        if self.num_classes < 0:
            raise ValueError("num_classes must be >= 0")
        if self.max_detections is not None and self.max_detections < 0:
            raise ValueError("max_detections must be >= 0 or None")
        if isinstance(self.threshold, torch.Tensor):
            if self.threshold.dim() == 0:
                pass
            elif self.threshold.dim() != 1:
                raise ValueError(f"threshold must be a scalar or [K], got {tuple(self.threshold.shape)}")
            if self.threshold.dtype != torch.float32:
                raise ValueError(f"threshold must be float32, got {self.threshold.dtype}")
        mapping = self.class_mapping
        if mapping is not None and (mapping.dim() != 1 or mapping.dtype != torch.int64):
            raise ValueError("class_mapping must be int64 [M]")
        mh, mw = self.masks.shape[-2:]
        for meta in self.preprocess:
            meta.validate()
            mask_crop(meta, (int(mh), int(mw)))

    def to(self, device: torch.device | str) -> PostprocessInputs:
        """A copy with every tensor on device (metadata shared)."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        threshold = self.threshold.to(device) if isinstance(self.threshold, torch.Tensor) else self.threshold
        return PostprocessInputs(
            boxes=self.boxes.to(device),
            logits=self.logits.to(device),
            masks=self.masks.to(device),
            threshold=threshold,
            num_classes=self.num_classes,
            preprocess=list(self.preprocess),
            class_mapping=move(self.class_mapping),
            max_detections=self.max_detections,
        )

    def clone(self) -> PostprocessInputs:
        """Fresh tensors with the same values (replay gives every timed call its own copy)."""
        threshold = self.threshold.clone() if isinstance(self.threshold, torch.Tensor) else self.threshold
        return PostprocessInputs(
            boxes=self.boxes.clone(),
            logits=self.logits.clone(),
            masks=self.masks.clone(),
            threshold=threshold,
            num_classes=self.num_classes,
            preprocess=list(self.preprocess),
            class_mapping=None if self.class_mapping is None else self.class_mapping.clone(),
            max_detections=self.max_detections,
        )


class RleMask(NamedTuple):
    """A COCO RLE mask: size (H, W) and the compressed counts string as pycocotools writes it.

    A named tuple (immutable, compares by value): implementations build dozens per call on their timed path,
    and a tuple is the cheapest such object to make.
    """

    size: tuple[int, int]
    counts: bytes

    def to_coco(self) -> dict:
        return {"size": [self.size[0], self.size[1]], "counts": self.counts}


@dataclass
class ImageDetections:
    """Detections of one image, all host objects, in the order of DESIGN.md step 2."""

    xyxy: np.ndarray  # int32 [N, 4]
    confidence: np.ndarray  # float32 [N]
    class_id: np.ndarray  # int32 [N]
    masks: list[RleMask] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.class_id.shape[0])

    @classmethod
    def empty(cls) -> ImageDetections:
        return cls(
            xyxy=np.zeros((0, 4), np.int32),
            confidence=np.zeros((0,), np.float32),
            class_id=np.zeros((0,), np.int32),
            masks=[],
        )


@runtime_checkable
class Implementation(Protocol):
    """Any callable from device-resident inputs to host-resident outputs, one list entry per image."""

    def __call__(self, inputs: PostprocessInputs) -> list[ImageDetections]: ...


@runtime_checkable
class PhasedImplementation(Protocol):
    """An implementation that exposes its GPU phase so replay can time device and host work apart.

    enqueue launches all device work (including the non-blocking copy back) and returns a handle
    without synchronising; finish waits for it and builds the host objects.
    Calling the object itself must equal finish(enqueue(inputs)).
    """

    def __call__(self, inputs: PostprocessInputs) -> list[ImageDetections]: ...

    def enqueue(self, inputs: PostprocessInputs) -> object: ...

    def finish(self, handle: object) -> list[ImageDetections]: ...
