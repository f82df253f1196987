"""Shared fixtures: fixed seeds, and Triton's CPU interpreter for every kernel test."""

from __future__ import annotations

import importlib.util
import os
import random
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

# Triton reads this when a kernel is first decorated, so it must be set before any test imports one.
os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest
import torch

SEED = 20261126
_SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture
def seed() -> int:
    """The suite's fixed seed; tests derive per-case seeds from it so failures reproduce."""
    return SEED


@pytest.fixture
def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(autouse=True)
def _fixed_global_seeds() -> None:
    random.seed(SEED)
    np.random.seed(SEED % (2**32))
    torch.manual_seed(SEED)


@pytest.fixture
def load_script() -> Callable[[str], ModuleType]:
    """Import scripts/<name>.py by path (scripts/ is not a package) and return the module."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, _SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
