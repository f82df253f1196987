"""Implementation registry: built-in names, or a user's own `package.module:attribute`.

A user implementation is any callable `inputs -> list[ImageDetections]` (kernels/contract.py); a class
is instantiated with no arguments. Objects that also have `enqueue` and `finish` are timed in phases.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

import torch

from kernels.contract import Implementation

__all__ = ["BUILTIN_NAMES", "available_implementations", "get_implementation", "is_phased"]


def _reference(device: torch.device) -> Implementation:
    from kernels.reference import ReferenceImplementation

    del device  # runs wherever its inputs are
    return ReferenceImplementation()


def _triton(device: torch.device) -> Implementation:
    from kernels.triton_postprocess import TritonPostprocess

    return TritonPostprocess(device)


def _triton_usable(device: torch.device) -> bool:
    """CUDA, or the CPU under Triton's interpreter (correct but ~1000x slower: for tests, never a default)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


_BUILTINS: dict[str, tuple[Callable[[torch.device], Implementation], Callable[[torch.device], bool]]] = {
    "reference": (_reference, lambda device: True),
    "triton": (_triton, _triton_usable),
}
BUILTIN_NAMES = tuple(_BUILTINS)


def available_implementations(device: torch.device) -> list[str]:
    """Built-ins worth running by default on device: everything on CUDA, only `reference` on the CPU.

    triton can still be named explicitly on the CPU when TRITON_INTERPRET=1 (see get_implementation).
    """
    if device.type != "cuda":
        return ["reference"]
    return [name for name, (_, usable) in _BUILTINS.items() if usable(device)]


def _load_user(spec: str) -> Implementation:
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise ValueError(f"implementation {spec!r}: expected a built-in name or 'package.module:attribute'")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"implementation {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"implementation {spec!r}: module {module_name!r} has no attribute {attr_path!r}")
        obj = getattr(obj, part)
    if isinstance(obj, type):
        obj = obj()
    if not callable(obj):
        raise ValueError(f"implementation {spec!r} is not callable")
    return obj  # type: ignore[return-value]


def get_implementation(spec: str, device: torch.device) -> Implementation:
    """The implementation named by spec for device; raises ValueError with a one-line reason."""
    if spec in _BUILTINS:
        factory, usable = _BUILTINS[spec]
        if not usable(device):
            raise ValueError(
                f"implementation {spec!r} cannot run on {device.type} here (triton needs CUDA, or TRITON_INTERPRET=1)"
            )
        return factory(device)
    if ":" not in spec:
        raise ValueError(f"unknown implementation {spec!r}; built-in: {', '.join(BUILTIN_NAMES)}, or 'module:function'")
    return _load_user(spec)


def is_phased(impl: object) -> bool:
    """True when impl exposes enqueue/finish, so device and host phases can be timed apart."""
    return callable(getattr(impl, "enqueue", None)) and callable(getattr(impl, "finish", None))
