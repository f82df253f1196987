"""kernels/_host.c, the triton implementation's host steps in C, against their Python twins.

CI (RLEBENCH_REQUIRE_C_HOST=1 in .ci/run) requires the module to have been built by the project's install;
elsewhere these tests are skipped where it was not (no C compiler), and the Python steps are the ones used.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels.triton_postprocess as tp
from kernels.contract import RleMask
from kernels.triton_postprocess import _masks  # (its import hands kernels._host torch.Tensor's methods)

try:
    from kernels import _host
except ImportError:
    _host = None


def test_built_where_required() -> None:
    if os.environ.get("RLEBENCH_REQUIRE_C_HOST") == "1":
        assert _host is not None, "kernels._host was not built by the install (C compiler, Python headers?)"
    elif _host is None:
        pytest.skip("kernels._host was not built (no C compiler at install)")


needs_host = pytest.mark.skipif(_host is None, reason="kernels._host was not built")


def buffer_with_strings(strings: list[bytes], at: int, gap: int) -> tuple[np.ndarray, list[int]]:
    """A byte buffer holding (begin, end) int64 pairs at byte `at`, then the strings `gap` bytes apart."""
    begin = at + 16 * len(strings) + gap
    bounds = []
    for s in strings:
        bounds += [begin, begin + len(s)]
        begin += len(s) + gap
    buf = np.zeros(begin + gap, np.uint8)
    struct.pack_into(f"<{len(bounds)}q", buf, at, *bounds)
    for s, start in zip(strings, bounds[::2], strict=True):
        buf[start : start + len(s)] = np.frombuffer(s, np.uint8)
    return buf, bounds


@needs_host
@settings(max_examples=200, deadline=None)
@given(
    strings=st.lists(st.binary(max_size=300), max_size=20),
    at=st.integers(0, 37),
    gap=st.integers(0, 9),
    size=st.tuples(st.integers(1, 4000), st.integers(1, 4000)),
)
def test_masks_match_python(strings: list[bytes], at: int, gap: int, size: tuple[int, int]) -> None:
    """Any strings, spans at any (also unaligned) offset: the same RleMask objects as the Python unpacking."""
    buf, bounds = buffer_with_strings(strings, at, gap)
    view = memoryview(buf)
    out = _host.masks(size, view, at, len(strings), RleMask)
    assert out == _masks(size, view, tuple(bounds)) == [RleMask(size, s) for s in strings]
    assert all(type(m) is RleMask and m.size is size and type(m.counts) is bytes for m in out)
    assert [hash(m) for m in out] == [hash((size, s)) for s in strings]


@needs_host
@pytest.mark.parametrize(
    ("at", "count", "bounds", "message"),
    [
        (90, 1, None, "1 spans at byte 90 run past the buffer's 100 bytes"),
        (0, 7, None, "7 spans at byte 0 run past the buffer's 100 bytes"),
        (-8, 1, None, "1 spans at byte -8 run past"),
        (0, -1, None, "-1 spans at byte 0"),
        (0, 1, (40, 101), "string 0 spans bytes [40, 101) of a 100-byte buffer"),
        (0, 1, (41, 40), "string 0 spans bytes [41, 40)"),
        (0, 1, (-1, 10), "string 0 spans bytes [-1, 10)"),
        (0, 2, (40, 50, 60, 200), "string 1 spans bytes [60, 200)"),
    ],
)
def test_masks_reject_spans_past_the_buffer(at: int, count: int, bounds: tuple | None, message: str) -> None:
    buf = bytearray(100)
    if bounds:
        struct.pack_into(f"<{len(bounds)}q", buf, 0, *bounds)
    with pytest.raises(ValueError, match=re.escape(message)):
        _host.masks((4, 5), buf, at, count, RleMask)


@needs_host
def test_masks_argument_errors() -> None:
    with pytest.raises(TypeError, match="tuple subclass"):
        _host.masks((4, 5), bytearray(16), 0, 0, list)
    with pytest.raises(TypeError, match="5 arguments"):
        _host.masks((4, 5), bytearray(16), 0, 0)
    with pytest.raises(TypeError):
        _host.masks((4, 5), object(), 0, 0, RleMask)  # no buffer
    assert _host.masks((4, 5), b"", 0, 0, RleMask) == []


def head(logits: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor) -> list[int]:
    """The argument block's head as call_words writes it, from the tensors' own methods (seq 7, scalars 11..100,
    buffers 21..25)."""
    tensors = [x for t in (logits, boxes, masks) for x in (t.data_ptr(), *t.stride())]
    return [7, *tensors, 11, -1, 12, 5, 91, 100, 21, 22, 23, 24, 25]


def call_words(words: np.ndarray, logits: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor) -> None:
    _host.call_words(memoryview(words).cast("B"), 7, logits, boxes, masks, 11, -1, 12, 5, 91, 100, (21, 22, 23, 24, 25))


@needs_host
@pytest.mark.parametrize(
    "make",
    [
        lambda: (torch.zeros(2, 12, 8), torch.zeros(2, 12, 4), torch.zeros(2, 12, 6, 6)),
        lambda: (
            torch.zeros(2, 12, 10, dtype=torch.float16)[:, :, ::2],
            torch.zeros(4, 12, 4)[1:3],
            torch.zeros(2, 12, 7, 8, dtype=torch.float16)[..., 1:7, 2:8],
        ),
        lambda: (
            torch.zeros(8, 12, 2).permute(2, 1, 0),
            torch.zeros(4, 12, 2).transpose(0, 2),
            torch.zeros(6, 6, 2, 12).permute(2, 3, 0, 1),
        ),
        lambda: (
            torch.zeros(12, 8).expand(2, 12, 8),
            torch.zeros(1, 12, 4).expand(2, 12, 4),
            torch.zeros(6, 6).expand(2, 12, 6, 6),
        ),
        lambda: (torch.zeros(0, 12, 8), torch.zeros(0, 12, 4), torch.zeros(0, 12, 6, 6)),
    ],
    ids=["contiguous", "sliced_fp16", "permuted", "expanded", "empty"],
)
def test_call_words_match_the_tensors(make) -> None:
    """Each tensor's address then strides at its words, whatever the layout; the words after the head untouched."""
    logits, boxes, masks = make()
    words = np.full(30, -9, np.int64)
    call_words(words, logits, boxes, masks)
    assert words.tolist() == [*head(logits, boxes, masks), -9, -9, -9, -9, -9]


@needs_host
def test_call_words_by_name_or_through_descriptors() -> None:
    """call_words calls the callables set by tensor_methods (the implementation sets torch.Tensor's descriptors at
    import), or looks the methods up by name where they are None."""
    tensors, seen = (torch.zeros(2, 12, 8), torch.zeros(2, 12, 4), torch.zeros(2, 12, 6, 6)), []
    words = np.zeros(25, np.int64)
    try:
        _host.tensor_methods(lambda t: seen.append("data_ptr") or 4096, lambda t: seen.append("stride") or t.stride())
        call_words(words, *tensors)
        assert seen == ["data_ptr", "stride"] * 3 and words[[1, 5, 9]].tolist() == [4096] * 3
        _host.tensor_methods(None, None)
        call_words(words, *tensors)
        assert words.tolist() == head(*tensors) and len(seen) == 6
        with pytest.raises(TypeError, match="callables or None"):
            _host.tensor_methods(1, None)
    finally:
        _host.tensor_methods(torch.Tensor.data_ptr, torch.Tensor.stride)


@needs_host
def test_call_words_errors() -> None:
    """Refused: a block too short, a tensor of other dimensions, buffers that are not five ints, a scalar that is
    not an int, something that is not a tensor, a read-only block, a wrong argument count."""
    logits, boxes, masks = torch.zeros(2, 12, 8), torch.zeros(2, 12, 4), torch.zeros(2, 12, 6, 6)
    block = memoryview(np.zeros(30, np.int64)).cast("B")
    scalars = (7, logits, boxes, masks, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="no room for the 25"):
        _host.call_words(memoryview(np.zeros(24, np.int64)).cast("B"), *scalars, (0,) * 5)
    with pytest.raises(ValueError, match="3 dimensions where 4 were expected"):
        _host.call_words(block, 7, logits, boxes, logits, 0, 0, 0, 0, 0, 0, (0,) * 5)
    with pytest.raises(TypeError, match="five ints"):
        _host.call_words(block, *scalars, (0,) * 4)
    with pytest.raises(TypeError):
        _host.call_words(block, 7, logits, boxes, masks, 0, 0, 0, None, 0, 0, (0,) * 5)
    with pytest.raises(TypeError):  # not a tensor: the descriptor refuses it
        _host.call_words(block, 7, object(), boxes, masks, 0, 0, 0, 0, 0, 0, (0,) * 5)
    with pytest.raises(BufferError):
        _host.call_words(bytes(8 * 30), *scalars, (0,) * 5)
    with pytest.raises(TypeError, match="12 arguments"):
        _host.call_words(block, 7, logits, boxes, masks)


@needs_host
def test_graph_launch_calls_through_the_address() -> None:
    """graph_launch calls int f(void *, void *) at an address and returns its int: libc's strcmp stands in for
    cuGraphLaunch (the CPU has no driver)."""
    strcmp = ctypes.CDLL(None).strcmp
    address = ctypes.cast(strcmp, ctypes.c_void_p).value
    same, other = ctypes.create_string_buffer(b"graph"), ctypes.create_string_buffer(b"graph")
    later = ctypes.create_string_buffer(b"grapi")
    assert _host.graph_launch(address, ctypes.addressof(same), ctypes.addressof(other)) == 0
    assert _host.graph_launch(address, ctypes.addressof(same), ctypes.addressof(later)) < 0
    with pytest.raises(ValueError, match="no function address"):
        _host.graph_launch(0, 0, 0)
    with pytest.raises(TypeError, match="3 arguments"):
        _host.graph_launch(address, 0)


@needs_host
def test_replay_constants_match_the_python_side() -> None:
    """enqueue_replay's copies: where the block's packed tail starts, and where float32 rounds to infinity."""
    assert _host.TAIL_WORD == tp._TAIL_WORD and _host.F32_LIMIT == tp._F32_LIMIT
    below, at = struct.pack("<f", np.nextafter(_host.F32_LIMIT, 0)), tp._packable_f32(_host.F32_LIMIT)
    assert struct.unpack("<f", below)[0] < np.inf and at == np.inf  # struct packs what float32 keeps finite


@needs_host
def test_replay_entry_points_refuse_bad_arguments() -> None:
    """replay_config takes a tuple type and a callable; enqueue_replay (tests/test_triton.py runs it) two
    arguments."""
    with pytest.raises(TypeError, match="a tuple type and a callable"):
        _host.replay_config(dict, len)
    with pytest.raises(TypeError, match="a tuple type and a callable"):
        _host.replay_config(RleMask, None)
    with pytest.raises(TypeError, match="2 arguments"):
        _host.enqueue_replay(None)
