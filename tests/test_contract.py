"""The contract's PreprocessMeta.cache_key: equal bytes exactly when every value is equal (ints by value, floats
bit for bit), so an implementation may cache per-metadata work under it; equality and hashing stay the fields'."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.contract import PreprocessMeta

_SIZES = st.tuples(st.sampled_from([1, 64, 2**40, 2**70, 64.0]), st.sampled_from([1, 64]))
_FLOATS = st.sampled_from(
    [0.0, -0.0, 1.0, 0.5, float("nan"), struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]]
)
_NUMBERS = st.one_of(_FLOATS, st.sampled_from([0, 1]))  # ints where floats go: the same keys as 0.0 and 1.0


@st.composite
def _metas(draw: st.DrawFn) -> PreprocessMeta:
    return PreprocessMeta(
        original_size=draw(_SIZES),
        inference_size=draw(st.sampled_from([(312, 312), (64, 64)])),
        size_after_preprocessing=draw(st.sampled_from([(1, 1), (64, 64)])),
        pad=tuple(draw(_NUMBERS) for _ in range(draw(st.sampled_from([4, 3])))),
        scale=(draw(_NUMBERS), draw(_NUMBERS)),
        static_crop_offset=draw(st.sampled_from([(0, 0), (0, 1)])),
        nonsquare_intermediate_size=draw(st.sampled_from([None, (0, 0), (312, 400)])),
    )


def _exact(meta: PreprocessMeta) -> tuple:
    """What cache_key promises to tell apart: sizes and offsets as typed values, whether a non-square size is given,
    pads and scales as the bits of their float64 values (ints converted, as the kernels convert them)."""

    def typed(values: tuple) -> tuple:
        return tuple((type(v).__name__, v) for v in values)

    def bits(values: tuple) -> tuple:
        return tuple(struct.pack("<d", v) for v in values)

    sizes = (meta.original_size, meta.inference_size, meta.size_after_preprocessing, meta.static_crop_offset)
    nonsquare = meta.nonsquare_intermediate_size
    return (*map(typed, sizes), None if nonsquare is None else typed(nonsquare), bits(meta.pad), bits(meta.scale))


@settings(max_examples=300, deadline=None)
@given(_metas(), _metas())
def test_cache_key_equal_exactly_when_every_value_is(a: PreprocessMeta, b: PreprocessMeta) -> None:
    assert isinstance(a.cache_key, bytes)
    assert (a.cache_key == b.cache_key) == (_exact(a) == _exact(b))


def test_cache_key_is_not_a_field_for_equality_hashing_or_repr() -> None:
    ints = PreprocessMeta((720, 1280), (312, 312), (720, 1280), pad=(0, 1, 0, 1))
    floats = PreprocessMeta((720, 1280), (312, 312), (720, 1280), pad=(0.0, 1.0, 0.0, 1.0))
    assert ints == floats and hash(ints) == hash(floats)  # the dataclass's own semantics, unchanged
    assert ints.cache_key == floats.cache_key  # pads and scales are float64 to the kernels either way
    assert "key" not in repr(ints)
    assert PreprocessMeta.from_json(ints.to_json()).cache_key == floats.cache_key
    float_size = PreprocessMeta((720.0, 1280), (312, 312), (720, 1280))  # type: ignore[arg-type]
    assert float_size == PreprocessMeta((720, 1280), (312, 312), (720, 1280))
    assert float_size.cache_key != PreprocessMeta((720, 1280), (312, 312), (720, 1280)).cache_key  # a miss only
    huge = PreprocessMeta((720, 1280), (312, 312), (720, 1280), pad=(10**400, 0, 0, 0))  # past float64: repr
    assert huge.cache_key != PreprocessMeta((720, 1280), (312, 312), (720, 1280), pad=(10**401, 0, 0, 0)).cache_key
