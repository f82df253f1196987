"""Byte layout of the packed result buffer shared by the Triton kernels and the host decoder.

One uint8 buffer per call, copied back to the host in one transfer: an int64 header (cursors, per-image
detection counts, per-slot string offset/length), int32 per-slot records (box, class, score bits), then
all COCO counts strings at offsets the mask kernel claimed with an atomic cursor. A slot is (image b,
output rank j), j < Q.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HEADER_WORDS", "RECORD_WORDS", "PackedLayout"]

HEADER_WORDS = 4  # int64: [0] workspace entries needed, [1] result bytes needed, [2], [3] reserved
RECORD_WORDS = 6  # int32 per slot: x1, y1, x2, y2, class id, confidence (float32 bits)


@dataclass(frozen=True)
class PackedLayout:
    """Offsets (in words of the named width, or bytes) of every section for a batch of B images, Q queries."""

    batch: int
    queries: int

    @property
    def slots(self) -> int:
        return self.batch * self.queries

    @property
    def count_word(self) -> int:
        """int64 word index of N for image 0 (image b at count_word + b)."""
        return HEADER_WORDS

    @property
    def string_word(self) -> int:
        """int64 word index of slot 0's (offset, length) pair; slot s at string_word + 2 s."""
        return HEADER_WORDS + self.batch

    @property
    def record_word(self) -> int:
        """int32 word index of slot 0's record; slot s at record_word + RECORD_WORDS s."""
        return 2 * (self.string_word + 2 * self.slots)

    @property
    def strings_start(self) -> int:
        """Byte offset where strings begin (8-byte aligned)."""
        end = 4 * (self.record_word + RECORD_WORDS * self.slots)
        return (end + 7) // 8 * 8
