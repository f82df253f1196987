"""The COCO RLE codec against pycocotools, the oracle for counts bytes."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as coco_mask
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kernels import rle


def coco_counts(mask: np.ndarray) -> bytes:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]


def blobs(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Long runs (a realistic mask) rather than salt-and-pepper: toggles along columns."""
    return np.cumsum(rng.random(shape) < 0.02, axis=0) % 2 == 1


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 17), (17, 1), (2, 3), (7, 11), (78, 78), (360, 640), (721, 1279), (1080, 1920)]
)
@pytest.mark.parametrize("kind", ["random", "blobs", "zeros", "ones", "first_set", "last_set"])
def test_encode_matches_pycocotools(shape: tuple[int, int], kind: str, rng: np.random.Generator) -> None:
    mask = {
        "random": lambda: rng.random(shape) < 0.5,
        "blobs": lambda: blobs(rng, shape),
        "zeros": lambda: np.zeros(shape, bool),
        "ones": lambda: np.ones(shape, bool),
        "first_set": lambda: np.eye(*shape, dtype=bool),
        "last_set": lambda: np.flip(np.eye(*shape, dtype=bool)),
    }[kind]()
    encoded = rle.encode(mask)
    assert encoded.size == shape
    assert encoded.counts == coco_counts(mask)
    assert np.array_equal(rle.decode(encoded), mask)


def test_4k_mask_matches_pycocotools(rng: np.random.Generator) -> None:
    mask = blobs(rng, (2160, 3840))
    mask[:, :10] = True
    assert rle.encode(mask).counts == coco_counts(mask)


def test_counts_start_with_zero_run_when_first_pixel_set() -> None:
    mask = np.array([[1, 0], [1, 1]], bool)  # column-major: 1 1 0 1
    assert rle.mask_to_counts(mask).tolist() == [0, 2, 1, 1]


def test_large_counts_and_negative_deltas_round_trip() -> None:
    counts = np.array([0, 5, 2**40, 3, 1, 2**33, 7], np.int64)
    assert np.array_equal(rle.string_to_counts(rle.counts_to_string(counts)), counts)


def test_decodes_pycocotools_strings(rng: np.random.Generator) -> None:
    mask = blobs(rng, (50, 70))
    assert np.array_equal(rle.string_to_counts(coco_counts(mask)), rle.mask_to_counts(mask))


@pytest.mark.parametrize("bad", [b"\x00", b"0a~", b"\x7f", b"P"])
def test_malformed_strings_are_rejected(bad: bytes) -> None:
    with pytest.raises(ValueError):
        rle.string_to_counts(bad)


def test_counts_that_do_not_fit_the_size_are_rejected() -> None:
    with pytest.raises(ValueError, match="cover"):
        rle.counts_to_mask(np.array([3, 4]), (2, 2))


@settings(max_examples=200, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_property_encode_is_pycocotools_and_decode_inverts(mask: np.ndarray) -> None:
    encoded = rle.encode(mask)
    assert encoded.counts == coco_counts(mask)
    assert np.array_equal(rle.decode(encoded), mask)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**45), min_size=1, max_size=50))
def test_property_string_round_trip(counts: list[int]) -> None:
    arr = np.asarray(counts, np.int64)
    assert np.array_equal(rle.string_to_counts(rle.counts_to_string(arr)), arr)
