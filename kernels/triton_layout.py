"""Byte layout of the packed result buffer shared by the Triton kernels and the host decoder.

One uint8 buffer per call, copied into its pinned host twin by the kernels themselves: an int64 header (the
sizes the call needed, per-image detection counts, per-slot string begin/end), int32 per-slot records (boxes, then
class ids, then score bits: one array each, so that the host copies each image's rows with one slice), then the
COCO counts strings, each at an upper bound of the lengths of the strings before it (8 bytes per count, 16 for
frames of 2**31 pixels and more: a prefix over the slots' boundaries, so no program waits for another's length).
A slot is (image b, output rank j), j < Q.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import triton
import triton.language as tl

__all__ = [
    "HEADER_WORDS",
    "RECORDS_READY_WORD",
    "RECORD_WORDS",
    "STALLED_WORD",
    "ArgsLayout",
    "PackedLayout",
    "host_result_buffer",
    "result_buffer",
    "workspace_buffer",
]

HEADER_WORDS = 4  # int64: [0] workspace entries needed, [1] result bytes needed, [2] records ready, [3] stalled
# Header word of the host twin that holds the call's sequence number once the detection counts and the records are
# there (written by the count pass, long before the strings: the host builds the detections' arrays meanwhile).
RECORDS_READY_WORD = 2
# Header word of the host twin that holds the call's sequence number when a compress part gave up waiting for an
# earlier part of its string (a bug: every part it waits for runs; finish raises instead of the call hanging).
STALLED_WORD = 3
RECORD_WORDS = 6  # int32 per slot: x1, y1, x2, y2 (boxes array), class id (classes), confidence (float32 bits)


@dataclass(frozen=True)
class PackedLayout:
    """Offsets (in words of the named width, or bytes) of every section for a batch of B images, Q queries
    (computed once per instance; the host keeps one instance per (B, Q))."""

    batch: int
    queries: int

    @cached_property
    def slots(self) -> int:
        return self.batch * self.queries

    @cached_property
    def count_word(self) -> int:
        """int64 word index of N for image 0 (image b at count_word + b)."""
        return HEADER_WORDS

    @cached_property
    def string_word(self) -> int:
        """int64 word index of slot 0's string (begin, end), bytes from strings_start; slot s at string_word + 2 s."""
        return HEADER_WORDS + self.batch

    @cached_property
    def record_word(self) -> int:
        """int32 word index of the records: slot s's box at record_word + 4 s, its class id at record_word + 4 slots + s
        and its score bits at record_word + 5 slots + s."""
        return 2 * (self.string_word + 2 * self.slots)

    @cached_property
    def strings_start(self) -> int:
        """Byte offset where strings begin (8-byte aligned)."""
        end = 4 * (self.record_word + RECORD_WORDS * self.slots)
        return (end + 7) // 8 * 8


# Per-call argument block (int64 words), uploaded at the start of every call (inside the CUDA graph): the caller's
# tensors as addresses + strides, the scalars, the held buffers that grow (workspace, result and its host twin),
# zeroed counters, then the per-image metadata. Everything a call may change is data here, so one compiled kernel
# / captured graph serves them all, also after a buffer grew.
ARG_SEQ = 0  # call sequence number: copied back last, the host waits for it
ARG_LOGITS = 1  # address, stride b, q, c
ARG_BOXES = 5  # address, stride b, q, c
ARG_MASKS = 9  # address, stride b, q, h, w
ARG_THR = 14  # address of per-class thresholds (0 for a scalar threshold), K (-1 for a scalar threshold)
ARG_MAP = 16  # address of the class mapping (0 for none), M (-1 for none)
ARG_NUM_CLASSES = 18
ARG_MAX_DET = 19
ARG_WORKSPACE = 20  # address of the workspace (int64 words), its capacity in words
ARG_RESULT = 22  # address of the packed result buffer, its capacity in bytes
ARG_HOST_RESULT = 24  # address of the result buffer's pinned host twin (the copy back's destination)
ARG_SUM_STRIDE = 25  # scan-block sums per slot at the workspace's start (the most blocks a slot can have)
ARG_COPY_TICKET = 26  # counter (zero in every upload): programs of the kernel that copies the results back done
ARG_ROW_CHUNK = 27  # rows per work item of the mask passes (a multiple of the tile rows), chosen per call
ARG_IMAGES = 28  # counters, per image b: candidate count at ARG_IMAGES + 2 b, selection ticket at ARG_IMAGES + 2 b + 1
META_INTS = 10  # int32 per image: H, W, H', W', offset x, offset y, mask crop rows r0, r1, cols c0, c1
META_FLOATS = 10  # float32 per image: denorm w, h, pad left, top, scale x, y, offset x, y, W, H


@dataclass(frozen=True)
class ArgsLayout:
    """Offsets of the metadata inside the argument block of a batch of B images (all 16-byte aligned)."""

    batch: int

    @cached_property
    def meta_int(self) -> int:
        """int32 index of image 0's META_INTS."""
        return (2 * (ARG_IMAGES + 2 * self.batch) + 3) // 4 * 4

    @cached_property
    def meta_float(self) -> int:
        """float32 index of the scalar threshold; image b's META_FLOATS follow at meta_float + 4 + 10 b."""
        return (self.meta_int + META_INTS * self.batch + 3) // 4 * 4

    @cached_property
    def words(self) -> int:
        """int64 words of the whole block (a multiple of 2: 16 bytes)."""
        end = self.meta_float + 4 + META_FLOATS * self.batch
        return (end + 3) // 4 * 2


_A_WORKSPACE = tl.constexpr(ARG_WORKSPACE)
_A_RESULT = tl.constexpr(ARG_RESULT)
_A_HOST_RESULT = tl.constexpr(ARG_HOST_RESULT)


@triton.jit
def workspace_buffer(args_ptr):
    """The workspace (int64 words, typed like args_ptr) and its capacity in words, from the argument block."""
    return tl.load(args_ptr + _A_WORKSPACE).to(args_ptr.dtype), tl.load(args_ptr + _A_WORKSPACE + 1)


@triton.jit
def result_buffer(args_ptr, typed):
    """The packed result buffer as a pointer of typed's type and its capacity in bytes, from the argument block."""
    return tl.load(args_ptr + _A_RESULT).to(typed.dtype), tl.load(args_ptr + _A_RESULT + 1)


@triton.jit
def host_result_buffer(args_ptr, typed):
    """The result buffer's pinned host twin as a pointer of typed's type, from the argument block."""
    return tl.load(args_ptr + _A_HOST_RESULT).to(typed.dtype)
