"""The one small interface every model backend implements, and the --model SPEC parser.

SPECs: "standin" (the weight-free stand-in detector, default), "onnx:PATH" (an RF-DETR seg ONNX
export through ONNX Runtime), "rfdetr:CHECKPOINT" (the optional `rfdetr` package).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from cases.errors import BenchError

__all__ = ["Backend", "ModelOutputs", "load_backend", "MODEL_SPEC_HELP"]

MODEL_SPEC_HELP = (
    'model SPEC: "standin" (default; a weight-free stand-in detector, NOT RF-DETR, that emits '
    'RF-DETR-seg-shaped outputs from what moves or stands out), "onnx:PATH" (an RF-DETR seg ONNX export), '
    'or "rfdetr:CHECKPOINT" (needs the rfdetr extra)'
)


@dataclass
class ModelOutputs:
    """Raw model outputs for B images: boxes cxcywh [B, Q, 4], class logits [B, Q, C], mask logits [B, Q, h, w]."""

    boxes: torch.Tensor
    logits: torch.Tensor
    masks: torch.Tensor


class Backend(ABC):
    """Frames in, raw outputs out. input_size is the square model resolution R; masks are R/4."""

    name: str
    spec: str
    input_size: int
    num_classes: int

    @abstractmethod
    def infer(self, images: np.ndarray, device: torch.device) -> ModelOutputs:
        """Run the model on RGB uint8 model-input images [B, R, R, 3]; outputs live on device."""

    wants_priming: bool = False

    def prime(self, images: list[np.ndarray]) -> None:  # noqa: B027 - optional hook
        """Show the model frames sampled across the video before capture (the stand-in's background)."""

    def reset(self) -> None:  # noqa: B027 - optional hook, stateless backends need nothing
        """Forget temporal state (the stand-in's background model) before an unrelated frame sequence."""

    def describe(self) -> dict:
        """What provenance records about the model."""
        return {"model": self.spec, "backend": self.name, "input_size": self.input_size}


def load_backend(spec: str, *, device: torch.device, seed: int = 0, stills: bool = False) -> Backend:
    """Build the backend a --model SPEC names; BenchError for an unknown spec or an unusable model."""
    kind, _, arg = spec.partition(":")
    if kind == "standin" and not arg:
        from capture.backends.standin import StandInDetector

        return StandInDetector(seed=seed, stills=stills)
    if kind == "onnx" and arg:
        from capture.backends.onnx import OnnxBackend

        return OnnxBackend(arg, device=device)
    if kind == "rfdetr" and arg:
        from capture.backends.rfdetr import RfdetrBackend

        return RfdetrBackend(arg, device=device)
    raise BenchError(f"unknown --model {spec!r}; expected standin, onnx:PATH or rfdetr:CHECKPOINT")
