"""Optional backend: the `rfdetr` package's PyTorch RF-DETR seg model from a local checkpoint.

Needs the `rfdetr` extra (pip install 'rlebench[rfdetr]'); without it the spec fails with one clear line
and the tests skip. SPEC: "rfdetr:CHECKPOINT" or "rfdetr:CHECKPOINT#ClassName" (default RFDETRSegPreview).
Runs the underlying nn.Module directly so capture sees the raw outputs (pred_boxes, pred_logits,
pred_masks), not the package's own post-processing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from capture.backends.base import Backend, ModelOutputs
from capture.preprocess import normalize
from cases.errors import BenchError

__all__ = ["RfdetrBackend"]

DEFAULT_CLASS = "RFDETRSegPreview"


class RfdetrBackend(Backend):
    """RF-DETR seg through the rfdetr package (optional; import guarded)."""

    name = "rfdetr"

    def __init__(self, spec: str, *, device: torch.device) -> None:
        checkpoint, _, class_name = spec.partition("#")
        class_name = class_name or DEFAULT_CLASS
        self.spec = f"rfdetr:{spec}"
        try:
            import rfdetr
        except ImportError:
            raise BenchError("--model rfdetr:... needs the rfdetr package (pip install 'rlebench[rfdetr]')") from None
        if not Path(checkpoint).is_file():
            raise BenchError(f"rfdetr checkpoint not found: {checkpoint}")
        model_class = getattr(rfdetr, class_name, None)
        if model_class is None:
            raise BenchError(f"rfdetr {getattr(rfdetr, '__version__', '')} has no model class {class_name!r}")
        try:
            wrapper = model_class(pretrain_weights=checkpoint, device=device.type)
            self.module = wrapper.model.model.to(device).eval()
            self.input_size = int(wrapper.model.resolution)
        except Exception as exc:  # the package raises many kinds for a bad checkpoint
            raise BenchError(
                f"cannot load rfdetr checkpoint {checkpoint}: {' '.join(str(exc).split())[:300]}"
            ) from None
        self.num_classes = 0

    @torch.inference_mode()
    def infer(self, images: np.ndarray, device: torch.device) -> ModelOutputs:
        out = self.module(normalize(images, device))
        if not isinstance(out, dict) or "pred_masks" not in out:
            raise BenchError(f"{self.spec}: the model returned no pred_masks; is it a segmentation model?")
        logits = out["pred_logits"].float()
        self.num_classes = int(logits.shape[-1])
        return ModelOutputs(boxes=out["pred_boxes"].float(), logits=logits, masks=out["pred_masks"].float())
