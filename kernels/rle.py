"""COCO run-length encoding, byte-identical to pycocotools.

A mask is read in column-major (Fortran) order; its counts alternate runs of zeros and ones and
always start with a run of zeros (0 when the first pixel is set). The counts string stores each
count as a signed delta against the count two places back (only for index > 2, as pycocotools
does), in little-endian 5-bit groups with a continuation bit, each group offset by 48 into ASCII.
"""

from __future__ import annotations

import numpy as np

from kernels.contract import RleMask

__all__ = [
    "mask_to_counts",
    "counts_to_string",
    "string_to_counts",
    "counts_to_mask",
    "encode",
    "decode",
]

_GROUP_BITS = 5
_MAX_GROUPS = 13  # ceil(64 / 5): enough for any int64 delta


def mask_to_counts(mask: np.ndarray) -> np.ndarray:
    """Run lengths of a 2-D mask in column-major order, starting with zeros (int64)."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(1, np.int64)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size])).astype(np.int64)
    counts = np.diff(bounds)
    if flat[0]:
        counts = np.concatenate(([0], counts))
    return counts


def counts_to_string(counts: np.ndarray) -> bytes:
    """Compress run counts into the COCO counts string (what pycocotools stores in 'counts')."""
    counts = np.asarray(counts, dtype=np.int64)
    deltas = counts.copy()
    if counts.size > 3:
        deltas[3:] -= counts[1:-2]
    groups = np.zeros((deltas.size, _MAX_GROUPS), np.uint8)
    lengths = np.zeros(deltas.size, np.int64)
    value = deltas.copy()
    active = np.ones(deltas.size, bool)
    for g in range(_MAX_GROUPS):
        chunk = value & 0x1F
        value = value >> _GROUP_BITS  # arithmetic shift, as in C for signed long
        more = np.where(chunk & 0x10, value != -1, value != 0)
        char = chunk | np.where(more, 0x20, 0)
        groups[:, g] = np.where(active, char + 48, 0)
        lengths += active
        active &= more
        if not active.any():
            break
    keep = np.arange(_MAX_GROUPS)[None, :] < lengths[:, None]
    return groups[keep].tobytes()


def string_to_counts(counts: bytes | str) -> np.ndarray:
    """Decode a COCO counts string into run counts; raises ValueError on a malformed string."""
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    out: list[int] = []
    pos = 0
    while pos < len(data):
        value = 0
        shift = 0
        while True:
            if pos >= len(data):
                raise ValueError("counts string ends inside a number")
            char = data[pos] - 48
            if not 0 <= char < 64:
                raise ValueError(f"byte {data[pos]} at offset {pos} is not a COCO counts character")
            pos += 1
            value |= (char & 0x1F) << shift
            shift += _GROUP_BITS
            if not char & 0x20:
                if char & 0x10:
                    value -= 1 << shift
                break
            if shift > 5 * _MAX_GROUPS:
                raise ValueError("counts string holds a number longer than 64 bits")
        if len(out) > 2:
            value += out[-2]
        out.append(value)
    return np.asarray(out, dtype=np.int64)


def counts_to_mask(counts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Expand run counts back into a bool mask of size (H, W); raises ValueError if they do not fit."""
    counts = np.asarray(counts, dtype=np.int64)
    height, width = size
    if (counts < 0).any():
        raise ValueError("negative run length")
    if int(counts.sum()) != height * width:
        raise ValueError(f"runs cover {int(counts.sum())} pixels, a {height}x{width} mask has {height * width}")
    values = (np.arange(counts.size) % 2).astype(bool)
    return np.repeat(values, counts).reshape((height, width), order="F")


def encode(mask: np.ndarray) -> RleMask:
    """Encode a bool mask [H, W] as a COCO RLE (same bytes as pycocotools.mask.encode)."""
    height, width = mask.shape
    return RleMask(size=(int(height), int(width)), counts=counts_to_string(mask_to_counts(mask)))


def decode(rle: RleMask) -> np.ndarray:
    """Decode a COCO RLE into a bool mask [H, W]."""
    return counts_to_mask(string_to_counts(rle.counts), rle.size)
