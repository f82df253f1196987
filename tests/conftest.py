"""Shared fixtures: fixed seeds, and Triton's CPU interpreter for every kernel test."""

from __future__ import annotations

import os
import random

# Triton reads this when a kernel is first decorated, so it must be set before any test imports one.
os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest
import torch

SEED = 20261126


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
