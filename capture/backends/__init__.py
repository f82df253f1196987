"""Model backends: a batch of pre-processed frames in, RF-DETR-seg-shaped raw outputs out."""

from __future__ import annotations

from capture.backends.base import Backend, ModelOutputs, load_backend

__all__ = ["Backend", "ModelOutputs", "load_backend"]
