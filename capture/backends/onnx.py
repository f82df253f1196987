"""RF-DETR seg ONNX exports through ONNX Runtime.

The `rfdetr` package exports (opset 17) one input `input` [1, 3, R, R] (fixed R) and three outputs, taken
by position: boxes cxcywh [B, Q, 4] (`dets`), class logits [B, Q, C] (`labels`), mask logits
[B, Q, R/4, R/4] (auto-generated name), no sigmoid inside. We read R from the model, check every shape,
feed ImageNet-normalised RGB, and use the CUDA provider when ONNX Runtime has it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from capture.backends.base import Backend, ModelOutputs
from capture.preprocess import normalize
from cases.errors import BenchError

__all__ = ["OnnxBackend"]


class OnnxBackend(Backend):
    """An RF-DETR seg ONNX model; num_classes is C (every logit index is a class id, as for COCO 0..90)."""

    name = "onnx"

    def __init__(self, path: str, *, device: torch.device) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BenchError("--model onnx:... needs onnxruntime (pip install 'rlebench[onnx]')") from None
        self.path = Path(path)
        self.spec = f"onnx:{path}"
        if not self.path.is_file():
            raise BenchError(f"ONNX model not found: {path}")
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for bad files
            raise BenchError(f"cannot load ONNX model {path}: {' '.join(str(exc).split())[:300]}") from None
        self.providers = self.session.get_providers()
        self._check_signature()

    def describe(self) -> dict:
        return {**super().describe(), "providers": self.providers, "path": str(self.path.resolve())}

    def _fail(self, what: str) -> BenchError:
        return BenchError(f"{self.path}: not an RF-DETR seg export: {what}")

    def _check_signature(self) -> None:
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise self._fail(f"expected 1 input, found {len(inputs)}")
        shape = inputs[0].shape
        if len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int) or shape[2] != shape[3]:
            raise self._fail(f"input must be [B, 3, R, R] with a fixed R, got {shape}")
        if shape[2] % 4:
            raise self._fail(f"input resolution {shape[2]} is not a multiple of 4")
        self.input_name = inputs[0].name
        self.input_size = int(shape[2])
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        outputs = self.session.get_outputs()
        if len(outputs) < 3:
            raise self._fail(f"expected 3 outputs (boxes, class logits, mask logits), found {len(outputs)}")
        self.output_names = [o.name for o in outputs[:3]]
        ranks = [len(o.shape) for o in outputs[:3]]
        if ranks != [3, 3, 4]:
            raise self._fail(f"outputs must have ranks [3, 3, 4] (boxes, logits, masks), got {ranks}")
        if outputs[0].shape[2] not in (4, None) and not isinstance(outputs[0].shape[2], str):
            raise self._fail(f"output 0 (boxes) must be [B, Q, 4], got {outputs[0].shape}")
        mask_hw = outputs[2].shape[2:]
        expected_hw = self.input_size // 4
        if any(isinstance(d, int) and d != expected_hw for d in mask_hw):
            raise self._fail(
                f"output 2 (mask logits) must be [B, Q, {expected_hw}, {expected_hw}], got {outputs[2].shape}"
            )
        classes = outputs[1].shape[2]
        self.num_classes = int(classes) if isinstance(classes, int) else 0

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        try:
            return self.session.run(self.output_names, {self.input_name: batch})
        except Exception as exc:
            raise BenchError(f"{self.path}: inference failed: {' '.join(str(exc).split())[:300]}") from None

    def infer(self, images: np.ndarray, device: torch.device) -> ModelOutputs:
        x = normalize(images, "cpu").numpy()
        if self.fixed_batch is not None and self.fixed_batch != x.shape[0]:
            if self.fixed_batch != 1:
                raise self._fail(f"fixed batch {self.fixed_batch} differs from --batch {x.shape[0]}")
            parts = [self._run(x[i : i + 1]) for i in range(x.shape[0])]
            outs = [np.concatenate([p[k] for p in parts], axis=0) for k in range(3)]
        else:
            outs = self._run(x)
        boxes, logits, masks = outs
        b, m = x.shape[0], self.input_size // 4
        q = boxes.shape[1] if boxes.ndim == 3 else -1
        checks = [
            ("boxes", boxes, (b, q, 4)),
            ("class logits", logits, (b, q, logits.shape[-1] if logits.ndim == 3 else -1)),
            ("mask logits", masks, (b, q, m, m)),
        ]
        for position, (what, array, expected) in enumerate(checks):
            if array.shape != expected or array.dtype not in (np.float32, np.float16):
                raise self._fail(
                    f"output {position} ({what}) is {array.dtype}{list(array.shape)}, expected float{list(expected)}"
                )
        if self.num_classes <= 0:
            self.num_classes = int(logits.shape[-1])
        return ModelOutputs(
            boxes=torch.from_numpy(np.ascontiguousarray(boxes)).to(device),
            logits=torch.from_numpy(np.ascontiguousarray(logits)).to(device),
            masks=torch.from_numpy(np.ascontiguousarray(masks)).to(device),
        )
