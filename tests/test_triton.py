"""The `triton` implementation against the torch reference, on Triton's CPU interpreter (TRITON_INTERPRET=1).

Everything is compared exactly: boxes, classes, confidence bits (both sides round a float64 sigmoid to
float32; numpy's and torch's float64 exp could only disagree after rounding with ~1e-9 odds), RLE bytes.
"""

from __future__ import annotations

import ctypes
import os
from functools import partial

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton.jit runs in the kernel modules

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernels.triton_postprocess as tp
from kernels.contract import ImageDetections, PostprocessInputs, RleMask
from kernels.reference import postprocess_reference
from kernels.synthetic import make_inputs, make_preprocess
from kernels.triton_layout import ARG_HOST_RESULT, RECORDS_READY_WORD, STALLED_WORD
from kernels.triton_postprocess import TritonPostprocess

SAMPLES = Path(__file__).resolve().parents[1] / "cases" / "samples"
SMALL = {"queries": 12, "classes": 8, "input_size": 64}


@pytest.fixture(scope="module")
def impl() -> TritonPostprocess:
    return TritonPostprocess(torch.device("cpu"))


def assert_same(expected: list[ImageDetections], actual: list[ImageDetections]) -> None:
    assert len(expected) == len(actual)
    for b, (e, a) in enumerate(zip(expected, actual, strict=True)):
        assert len(e) == len(a), f"image {b}: {len(e)} detections expected, got {len(a)}"
        np.testing.assert_array_equal(e.xyxy, a.xyxy, err_msg=f"image {b} boxes")
        np.testing.assert_array_equal(e.class_id, a.class_id, err_msg=f"image {b} classes")
        assert a.xyxy.dtype == np.int32 and a.class_id.dtype == np.int32 and a.confidence.dtype == np.float32
        for array in (a.xyxy, a.class_id, a.confidence):  # own memory: never a view of a reused buffer
            assert array.flags.c_contiguous and array.flags.writeable and array.flags.owndata
        np.testing.assert_array_equal(e.confidence.view(np.int32), a.confidence.view(np.int32), err_msg="confidence")
        assert [m.size for m in e.masks] == [m.size for m in a.masks]
        for j, (me, ma) in enumerate(zip(e.masks, a.masks, strict=True)):
            assert type(ma) is RleMask and me.counts == ma.counts, f"image {b} detection {j}: RLE differs"


def check(impl: TritonPostprocess, inputs: PostprocessInputs) -> list[ImageDetections]:
    """One call against the reference; then the same result buffer unpacked again by the other host path (the C
    steps of kernels/_host.c or the Python ones), which must give the same objects."""
    handle = impl.enqueue(inputs)
    out = impl.finish(handle)
    assert_same(postprocess_reference(inputs), out)
    own, other = impl.c_host, None if impl.c_host is not None else tp._c_host
    if own is not None or other is not None:
        impl.c_host = other
        try:
            again = impl._unpack(handle.plan, handle.sizes, impl._host_mv, handle.plan.records)
        finally:
            impl.c_host = own
        assert_same(out, again)
    return out


HOSTS = ["c", "python"]


def new_impl(host: str = "c") -> TritonPostprocess:
    """A CPU instance with the host steps in C ("c", skipped where kernels/_host.c was not built: CI requires it,
    tests/test_host_ext.py) or in Python ("python")."""
    impl = TritonPostprocess(torch.device("cpu"))
    if host == "python":
        impl.c_host = None
    elif impl.c_host is None:
        pytest.skip("kernels._host was not built (no C compiler at install)")
    return impl


MODES = {
    "plain": {},
    "letterbox": {"letterbox": True},
    "static_crop": {"static_crop": True},
    "crop_letterbox": {"static_crop": True, "letterbox": True},
    "nonsquare": {"nonsquare": True},
    "mapping_per_class": {"class_mapping": True, "per_class_threshold": True, "threshold": 0.3},
    "per_class": {"per_class_threshold": True},
    "general_path": {"threshold": 1e-4},  # more pairs than queries beat the threshold
    "max_det": {"threshold": 1e-4, "max_detections": 3},
    "max_det_zero": {"max_detections": 0},
    "empty": {"threshold": 0.9999},
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_matches_reference(impl: TritonPostprocess, seed: int, mode: str, dtype: torch.dtype) -> None:
    frames = [(90, 120), (70, 64)]
    inputs = make_inputs(seed + len(mode), batch=2, frame_sizes=frames, dtype=dtype, **SMALL, **MODES[mode])
    check(impl, inputs)


def test_ties_nan_and_degenerate_masks(impl: TritonPostprocess, seed: int) -> None:
    inputs = make_inputs(seed, batch=1, frame_sizes=[(80, 96)], threshold=0.2, **SMALL)
    inputs.logits[:] = -10.0
    inputs.logits[0, :6, 1] = 2.0  # six equal scores: ties ordered by flat index
    inputs.logits[0, 6, :] = float("nan")
    inputs.masks[0, 0] = 7.0  # full frame
    inputs.masks[0, 1] = -7.0  # empty mask
    inputs.masks[0, 2] = -3.0
    inputs.masks[0, 2, 5, 9] = 4.0  # one positive source pixel
    inputs.masks[0, 3] = -3.0
    inputs.masks[0, 3, [0, 0, -1, -1], [0, -1, 0, -1]] = 5.0  # every corner and so every border
    inputs.masks[0, 4, :, :] = float("nan")
    inputs.masks[0, 5, 3, :] = 2.0  # one source row, whole width
    out = check(impl, inputs)
    assert len(out[0]) == 6


@pytest.mark.parametrize("programs", [1, 3])
def test_detections_without_any_positive_pixel(seed: int, programs: int) -> None:
    """No work item anywhere (every mask empty), or only in one image of two: every detection still gets its
    (all-zero) string, placed after the others."""
    impl = TritonPostprocess(torch.device("cpu"))
    impl.programs = programs
    inputs = make_inputs(seed, batch=2, frame_sizes=[(64, 80), (70, 50)], threshold=0.2, **SMALL)
    inputs.logits[:] = -10.0
    inputs.logits[:, :3, 2] = 3.0
    inputs.masks[:] = -4.0
    assert [len(r) for r in check(impl, inputs)] == [3, 3]
    inputs.masks[1, 1, 4:9, 2:6] = 3.0
    check(impl, inputs)


def test_object_smaller_than_a_source_pixel(impl: TritonPostprocess, seed: int) -> None:
    """A logit barely above zero at one source pixel gives a few output pixels (or none) after upsampling."""
    inputs = make_inputs(seed, batch=1, frame_sizes=[(100, 100)], threshold=0.2, **SMALL)
    inputs.logits[0, :3] = -10.0
    inputs.logits[0, :3, 0] = 3.0
    for q, value in enumerate([0.01, 1e-6, 1.0]):
        inputs.masks[0, q] = -1.0
        inputs.masks[0, q, 7, 8] = value
    check(impl, inputs)


def test_strong_upsampling(seed: int) -> None:
    """16x16 grid to 300x420 (many row chunks per strip): large blobs, tiny positive taps, +-inf and NaN taps
    inside a blob, a blob reaching the bottom and right borders (the strip's wrap to the next column)."""
    impl = TritonPostprocess(torch.device("cpu"))
    impl.row_chunk = 64
    inputs = make_inputs(seed, batch=1, frame_sizes=[(300, 420)], threshold=0.2, **SMALL)
    inputs.logits[0, :5] = -10.0
    inputs.logits[0, :5, 0] = 3.0
    inputs.masks[0, :5] = -2.0
    inputs.masks[0, 0, 2:14, 3:12] = 5.0  # a large blob
    inputs.masks[0, 1, 1:15, 1:15] = 4.0
    inputs.masks[0, 1, 6, 6] = float("inf")
    inputs.masks[0, 1, 9, 4] = float("nan")
    inputs.masks[0, 1, 3, 10] = 1e-35  # positive, but not clearly
    inputs.masks[0, 2, 8:, 5:] = 3.0  # to the bottom and right borders
    inputs.masks[0, 3] = float("-inf")
    inputs.masks[0, 3, 4:9, 4:9] = 2.0
    inputs.masks[0, 4] = 1.0  # the whole frame
    inputs.masks[0, 4, 7, :] = -1.0
    check(impl, inputs)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy's 0 x inf (interpreter)
@pytest.mark.parametrize(
    ("dtype", "sure"),
    [(torch.float32, (16, 4)), (torch.float16, (16, 4)), (torch.float32, (4, 2)), (torch.float32, (0, 4))],
    ids=["fp32", "fp16", "rows4-cols2", "evaluate_all"],
)
def test_tiles_decided_from_their_taps(seed: int, dtype: torch.dtype, sure: tuple[int, int]) -> None:
    """The count pass decides a tile without evaluating it when all its taps are surely positive or surely not
    (kernels/triton_masks.py _item_taps, _tile_class). Blocks of taps that look uniform but are not: subnormals
    (some of their products round to 0), +inf at the top and left edges (a tap of weight 0 there makes 0 x inf =
    NaN, not > 0), NaN, -inf and -0.0; next to plain blobs, stripes, strips with a wrap row or one more column, and
    a tile whose last tap row alone is positive; the same again letterboxed into a static crop of a second image.
    8x8 taps to 160x224 pixels, so an item of 64 rows spans 4-5 tap rows and 2-3 columns (rows4-cols2: tiles past
    4 rows and items past 2 columns fall back to evaluating; evaluate_all: no tap is read)."""
    impl = TritonPostprocess(torch.device("cpu"))
    impl.row_chunk, (impl.sure_rows, impl.sure_cols) = 64, sure
    frames = [(160, 224), (120, 200)]
    inputs = make_inputs(seed, batch=2, frame_sizes=frames, threshold=0.2, dtype=dtype, **{**SMALL, "input_size": 32})
    inputs.preprocess[1] = make_preprocess(frames[1], 32, letterbox=True, static_crop=(10, 8, 190, 112))
    inputs.logits[0, :10] = -10.0
    inputs.logits[0, :10, 0] = 3.0
    inputs.masks[0, :10] = -2.0
    inputs.masks[0, 0, 1:7, 2:6] = 5.0  # a plain blob
    inputs.masks[0, 1, :3, :4] = float("inf")  # from the top-left corner
    inputs.masks[0, 2, 2:7, 1:7] = 1e-45 if dtype == torch.float32 else 6e-8  # the smallest subnormal
    inputs.masks[0, 3, :, :] = -0.0
    inputs.masks[0, 3, 2:5, 2:5] = 1.0
    inputs.masks[0, 3, 6:, :] = float("-inf")
    inputs.masks[0, 4, :, :4] = float("nan")
    inputs.masks[0, 4, :, 4:] = 2.0
    inputs.masks[0, 5] = 1.0  # the whole frame but a hole
    inputs.masks[0, 5, 3:5, 3:5] = -1.0
    inputs.masks[0, 6] = 1.0  # stripes: a tile spanning three taps sees both signs
    inputs.masks[0, 6, 2::3] = -1.0
    inputs.masks[0, 6, :, 2::3] = -1.0
    inputs.masks[0, 7, 5:, 5:] = 65504.0  # fp16's largest, to the bottom and right borders: strips with a wrap row
    inputs.masks[0, 8, :, 1:4] = 3.0  # full height, inside the width: strips with one more column (outside)
    inputs.masks[0, 9, 0, 6:] = 3.0  # row 0 elsewhere makes the strips start at row 0, ...
    inputs.masks[0, 9, 3:, :4] = 3.0  # ... so a tile reaches tap rows 1-3 here: only its last tap row is positive
    inputs.logits[1], inputs.masks[1] = inputs.logits[0], inputs.masks[0]  # again, letterboxed into a static crop
    check(impl, inputs)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy's 0 x inf (interpreter)
@pytest.mark.parametrize("letterbox", [False, True], ids=["stretch", "letterbox"])
@pytest.mark.parametrize("crop", [(40, 30, 360, 250), (40, 0, 360, 300)], ids=["inset", "full_height"])
def test_strong_upsampling_into_a_static_crop(seed: int, letterbox: bool, crop: tuple[int, int, int, int]) -> None:
    """Strong upsampling into a static crop that ends before the frame's right edge (and bottom edge, or spans the
    full height: then a strip takes one more column), with blobs on the mask's bottom / right edges, a full-height
    one and a full-frame one with an infinite tap: pixels past the crop stay 0 however positive the taps next to
    them are, and 0 x inf is NaN (not > 0) where a tap's weight is 0."""
    impl = TritonPostprocess(torch.device("cpu"))
    impl.row_chunk = 64
    inputs = make_inputs(seed, batch=1, frame_sizes=[(300, 420)], threshold=0.2, **SMALL)
    inputs.preprocess[0] = make_preprocess((300, 420), SMALL["input_size"], letterbox=letterbox, static_crop=crop)
    inputs.logits[0, :4] = -10.0
    inputs.logits[0, :4, 0] = 3.0
    inputs.masks[0, :4] = -2.0
    inputs.masks[0, 0, 10:, 9:] = 3.0  # the bottom-right corner
    inputs.masks[0, 1, :, 12:] = 2.0  # full height, on the right edge
    inputs.masks[0, 2] = 1.0  # the whole crop, and an infinite tap: 0 x inf is NaN where its weight is 0 (column 0)
    inputs.masks[0, 2, 4, 1] = float("inf")
    inputs.masks[0, 3] = 1.0  # the whole crop but one row, with taps that are positive but not clearly so
    inputs.masks[0, 3, 5] = -1.0
    inputs.masks[0, 3, 11, 2:6] = 1e-35
    check(impl, inputs)


@pytest.mark.parametrize(
    ("programs", "prefix_block", "row_chunk", "write_tiles"),
    [(1, 1024, 32, 32), (7, 1024, 32, 32), (3, 8, 32, 32), (2, 1024, 48, 32), (2, 1024, 96, 1)],
    ids=["one-program", "seven-programs", "slots-in-blocks-of-8", "chunk-not-whole-tiles", "write-tiles-one-ahead"],
)
def test_work_items_over_programs(
    seed: int, programs: int, prefix_block: int, row_chunk: int, write_tiles: int
) -> None:
    """Work items (column groups x row chunks) looped over any number of programs, chunks of one column split
    over programs (row chunk 32 < strip height): the carry between tiles and the first row's predecessor; slots
    located over several prefix blocks; chunks that do not end on a whole tile; the write pass loading fewer tiles
    ahead than an item has (the rest one by one)."""
    impl = TritonPostprocess(torch.device("cpu"))
    impl.programs = programs
    impl.prefix_block = prefix_block
    impl.row_chunk = row_chunk
    impl.write_tiles = write_tiles
    if write_tiles == 1:  # six tiles an item, five of them past the one loaded ahead
        impl.tile_rows = 16
    check(impl, make_inputs(seed, batch=2, frame_sizes=[(60, 200), (150, 70)], letterbox=True, **SMALL))


@pytest.mark.parametrize("large", [(64, 4096), (16, 16)], ids=["large-defaults", "large-rows16-cblk16"])
def test_frame_class_per_call_from_the_tallest_frame(seed: int, large: tuple[int, int]) -> None:
    """A call's frame class (rows per work item, tile rows, compress block) is chosen from its tallest frame: one
    instance (one graph per plan and class on CUDA) alternates calls below and above large_frame_rows, and a batch
    mixes both; all identical."""
    impl = TritonPostprocess(torch.device("cpu"))
    impl.row_chunk, impl.row_chunk_large, impl.large_frame_rows = 32, 64, 100
    impl.tile_rows_large, impl.compress_block_large = large
    short = make_inputs(seed, batch=1, frame_sizes=[(64, 80)], num_confident=3, **SMALL)
    tall = make_inputs(seed + 1, batch=1, frame_sizes=[(150, 90)], num_confident=3, **SMALL)
    mixed = make_inputs(seed + 2, batch=2, frame_sizes=[(64, 80), (150, 90)], num_confident=3, **SMALL)
    for inputs in (short, tall, short, mixed, tall):
        check(impl, inputs)
    chunks = {plan.layout.batch: sorted(meta[2:] for meta in plan.metas.values()) for plan in impl._plans.values()}
    assert chunks == {1: [(32, 0), (64, 1)], 2: [(64, 1)]}


class _StandInGraph:
    """A CUDA graph stand-in for the CPU: records the launches made while capturing (without running them, as a
    capture does) and runs them again on replay()."""

    capturing: _StandInGraph | None = None

    def __init__(self) -> None:
        self.launches: list[tuple] = []
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1
        for launch_all, plan, large in self.launches:
            launch_all(plan, large)


class _StandInCapture:
    def __init__(self, graph: _StandInGraph) -> None:
        self.graph = graph

    def __enter__(self) -> None:
        _StandInGraph.capturing = self.graph

    def __exit__(self, *exc: object) -> None:
        _StandInGraph.capturing = None


def _with_stand_in_graphs(impl: TritonPostprocess, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Route impl's CUDA-only graph path through _StandInGraph; returns the list of frame classes run for real."""
    ran: list[int] = []
    real = impl._launch_all

    def launch_all(plan, large: int) -> None:
        if _StandInGraph.capturing is not None:
            _StandInGraph.capturing.launches.append((launch_all, plan, large))
            return
        ran.append(large)
        real(plan, large)

    class _Stream:
        def synchronize(self) -> None:
            pass

    monkeypatch.setattr(impl, "_launch_all", launch_all)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", _StandInGraph)
    monkeypatch.setattr(torch.cuda, "graph", _StandInCapture)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _Stream())
    impl.use_cuda_graph = True
    return ran


def test_graphs_of_both_frame_classes_on_a_plans_first_call(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph bookkeeping that only CUDA reaches, with a stand-in graph: a plan's first call runs the call on
    the other frame class's kernels, then on its own, and captures both classes' graphs; later calls of either
    class (a new frame size included) replay one and capture nothing. All outputs identical."""
    impl = TritonPostprocess(torch.device("cpu"))
    impl.row_chunk, impl.row_chunk_large, impl.large_frame_rows = 32, 64, 100
    impl.tile_rows_large, impl.compress_block_large = 16, 16
    ran = _with_stand_in_graphs(impl, monkeypatch)
    short = make_inputs(seed, batch=1, frame_sizes=[(64, 80)], num_confident=3, **SMALL)
    tall = make_inputs(seed + 1, batch=1, frame_sizes=[(150, 90)], num_confident=3, **SMALL)
    check(impl, short)
    (plan,) = impl._plans.values()
    assert ran == [1, 0] and impl.graph_captures == impl.graph_count == 2
    assert [[entry[2] for entry in graph[0].launches] for graph in plan.graphs] == [[0], [1]]
    for inputs in (tall, short, tall):
        check(impl, inputs)
    assert ran == [1, 0, 1, 0, 1] and impl.graph_captures == 2  # every later call a replay
    assert [graph[0].replays for graph in plan.graphs] == [1, 2]


def test_frame_classes_of_one_configuration_share_a_graph(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frame classes that launch the same kernels (equal tile rows, compress block and tiles per work item: row
    chunks of 48 and 64 are two tiles of 32 rows each) share one graph: no run on the other class's kernels, one
    capture, and the first call of the other class replays it."""
    impl = TritonPostprocess(torch.device("cpu"))
    impl.row_chunk, impl.row_chunk_large, impl.large_frame_rows = 48, 64, 100
    impl.tile_rows_large, impl.compress_block_large = impl.tile_rows, impl.compress_block
    ran = _with_stand_in_graphs(impl, monkeypatch)
    check(impl, make_inputs(seed, batch=1, frame_sizes=[(64, 80)], num_confident=3, **SMALL))
    check(impl, make_inputs(seed + 1, batch=1, frame_sizes=[(150, 90)], num_confident=3, **SMALL))
    (plan,) = impl._plans.values()
    # the tall call replays the one graph, captured with the short call's class: the same kernels
    assert ran == [0, 0] and impl.graph_captures == impl.graph_count == 1 and plan.graphs[0] is plan.graphs[1]


@pytest.mark.parametrize("scan_block", [16, 128])
@pytest.mark.parametrize("programs", [1, 5])
def test_scan_blocks_over_programs(seed: int, scan_block: int, programs: int) -> None:
    """A slot's counts split over many scan blocks (the write pass starts each column from the sums of its slot's
    earlier blocks, which the count pass adds up, and its own block's counts), items looped over any number of
    programs; a column's row chunks summed in steps of 2 (more than one step at 32 rows a chunk)."""
    impl = TritonPostprocess(torch.device("cpu"))
    impl.programs = programs
    impl.row_chunk = 32
    impl.scan_block = scan_block
    impl.chunk_block = 2
    check(impl, make_inputs(seed, batch=2, frame_sizes=[(60, 200), (150, 70)], letterbox=True, **SMALL))


@pytest.mark.parametrize(
    "tiles",
    [(64, 32, 64, 1024), (32, 32, 96, 128), (16, 64, 16, 16)],
    ids=["rows64-cblk1024", "rows32-chunk96-cblk128", "rows16-cols64-chunk16-cblk16"],
)
def test_tile_and_block_sizes(seed: int, tiles: tuple[int, int, int, int]) -> None:
    """Tile rows/cols, row chunk, compress block and selection split are tuning knobs only: every setting gives
    the reference's bytes (cblk16: most masks take compress's path of several blocks)."""
    impl = TritonPostprocess(torch.device("cpu"))
    impl.tile_rows, impl.tile_cols, impl.row_chunk, impl.compress_block = tiles
    impl.select_block, impl.max_split = 1024, 2
    check(impl, make_inputs(seed, batch=2, frame_sizes=[(90, 150), (130, 70)], static_crop=True, **SMALL))


@pytest.mark.parametrize("compress_block", [16, 1024], ids=["cblk16", "cblk1024"])
def test_compress_in_int64_for_frames_past_int32(seed: int, compress_block: int, monkeypatch) -> None:
    """Frames of 2**31 pixels and more compress in int64 (smaller ones in int32): the int64 path, forced here by
    lowering the limit, gives the same bytes, in one block of counts and in several."""
    import triton.language as tl

    import kernels.triton_masks as masks

    monkeypatch.setattr(masks, "_NARROW_PIXELS", tl.constexpr(-1))  # the interpreter reads it at each call
    impl = TritonPostprocess(torch.device("cpu"))
    impl.compress_block = impl.compress_block_large = compress_block
    check(impl, make_inputs(seed, batch=2, frame_sizes=[(90, 150), (130, 70)], letterbox=True, **SMALL))


@pytest.mark.parametrize(
    ("part_min", "compress_block", "wide", "frames"),
    [
        (1, 1024, False, [(90, 150), (130, 70)]),
        (5, 4, False, [(90, 150), (130, 70)]),
        (16, 16, False, [(90, 150), (130, 70)]),
        (3, 8, True, [(90, 150), (130, 70)]),
        (2, 1024, False, [(90, 150), (64, 80), (130, 70)]),
        (2, 1024, False, [(90, 150), (64, 80), (130, 70), (70, 90)]),
    ],
    ids=["most-parts", "parts-of-blocks", "part16-cblk16", "int64-parts", "three-images-middle-empty", "image-blocks"],
)
def test_compress_parts(
    seed: int, part_min: int, compress_block: int, wide: bool, frames: list[tuple[int, int]], monkeypatch
) -> None:
    """Each string is cut into parts (at least part_min counts each): the first on the slot's own program, the rest
    on the last image's programs without a detection; a part writes after the characters its string's earlier parts
    published. Several parts per string, in one block of counts and in several, in int32 and int64, and with an
    image without detections between others: the reference's bytes; the published lengths say that strings were
    cut."""
    import triton.language as tl

    import kernels.triton_masks as masks
    import kernels.triton_postprocess as triton_postprocess
    from kernels.triton_masks import TABLES

    if wide:
        monkeypatch.setattr(masks, "_NARROW_PIXELS", tl.constexpr(-1))  # the interpreter reads it at each call
    if len(frames) > 3:  # compress walks the images' counts in steps of 2 (several steps, the last one partial)
        monkeypatch.setattr(triton_postprocess, "_IMAGE_BLOCK", 2)
    impl = TritonPostprocess(torch.device("cpu"))
    impl.compress_part_min = part_min
    impl.compress_block = impl.compress_block_large = compress_block
    inputs = make_inputs(seed, batch=len(frames), frame_sizes=frames, num_confident=3, **SMALL)
    if len(frames) > 2:
        inputs.logits[1] = -20.0  # an image without detections among others
    out = check(impl, inputs)
    (plan,) = impl._plans.values()
    slots = plan.layout.slots
    parts = int((impl._tables[(TABLES - 1) * slots : TABLES * slots] > 0).sum())  # a word per part that worked
    assert parts > sum(map(len, out)) > 0


def test_stalled_compress_part_raises(seed: int) -> None:
    """A compress part that gave up waiting for an earlier part's length (a bug: they all run) leaves the call's
    number in the header's stalled word; finish raises instead of returning wrong strings. Another call's number
    there is not this call's stall."""
    impl = TritonPostprocess(torch.device("cpu"))
    inputs = make_inputs(seed, batch=1, frame_sizes=[(90, 150)], num_confident=3, **SMALL)
    handle = impl.enqueue(inputs)
    impl._host_q[STALLED_WORD] = handle.seq - 1
    assert_same(postprocess_reference(inputs), impl.finish(handle))
    handle = impl.enqueue(inputs)
    impl._host_q[STALLED_WORD] = handle.seq
    with pytest.raises(RuntimeError, match="waited in vain"):
        impl.finish(handle)


def test_direct_launch_signature() -> None:
    """Compiled kernels are reused per witness dtypes (the caller's tensors and the growing buffers are data in the
    argument block); the interpreter always takes the JIT path."""
    impl = TritonPostprocess(torch.device("cpu"))
    assert impl._direct_signature(torch.zeros(8)) is None  # interpreter / CPU: never direct
    impl.direct_launch = True
    base = torch.zeros(64, dtype=torch.float32)
    assert impl._direct_signature(base, base.to(torch.float16)) == (torch.float32, torch.float16)
    impl._ws_cap = impl._out_cap = 2**31  # capacities are argument-block words, not kernel arguments
    assert impl._direct_signature(base) == (torch.float32,)


def test_overflow_reruns_with_bigger_buffers(seed: int) -> None:
    impl = TritonPostprocess(torch.device("cpu"))
    inputs = make_inputs(seed, batch=2, frame_sizes=[(90, 120)], **SMALL)
    check(impl, inputs)
    impl._new_workspace(4)  # far below what any mask needs: the next attempt must overflow
    check(impl, inputs)
    assert impl.reruns == 1 and impl._ws_cap > 4


def test_string_overflow_reruns_with_a_bigger_result_buffer(seed: int) -> None:
    impl = TritonPostprocess(torch.device("cpu"))
    inputs = make_inputs(seed, batch=2, frame_sizes=[(90, 120), (70, 50)], num_confident=4, **SMALL)
    check(impl, inputs)
    plan = next(iter(impl._plans.values()))
    impl._new_result(plan.layout.strings_start + 8)  # the header and 8 bytes of strings: the strings overflow
    check(impl, inputs)
    assert impl.reruns == 1 and impl._out_cap > plan.layout.strings_start + 8


def test_larger_frame_grows_the_workspace_first(seed: int) -> None:
    """A frame larger than any before grows the workspace before its call (pixels / 16 words), not after an
    overflow; the kernels read the new workspace from the argument block."""
    impl = TritonPostprocess(torch.device("cpu"))
    check(impl, make_inputs(seed, batch=1, frame_sizes=[(60, 80)], **SMALL))
    cap = impl._ws_cap
    inputs = make_inputs(seed, batch=1, frame_sizes=[(2100, 2000)], **SMALL)
    inputs.logits[0] = -10.0
    inputs.logits[0, 0, 1] = 3.0
    inputs.masks[0, 0] = -1.0
    inputs.masks[0, 0, 30:32, 40:41] = 2.0  # a small object: the interpreter evaluates only its region
    check(impl, inputs)
    assert impl._ws_cap > cap and impl.reruns == 0


@pytest.mark.parametrize("host", HOSTS)
def test_phases_equal_call(seed: int, host: str) -> None:
    impl = new_impl(host)
    inputs = make_inputs(seed, batch=1, frame_sizes=[(64, 80)], **SMALL)
    assert_same(impl(inputs), impl.finish(impl.enqueue(inputs)))


@pytest.mark.parametrize("mode", ["plain", "mapping_per_class", "max_det"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_c_head_of_the_argument_block_matches_python(seed: int, mode: str, dtype: torch.dtype) -> None:
    """kernels/_host.call_words writes the argument block's head (sequence number, tensors' addresses and strides,
    thresholds, mapping, scalars, buffers) word for word as enqueue's Python steps do; a non-contiguous view too."""
    impl = new_impl("c")
    inputs = make_inputs(seed, batch=2, frame_sizes=[(90, 120), (70, 64)], dtype=dtype, **SMALL, **MODES[mode])
    wide = torch.zeros(*inputs.logits.shape[:-1], inputs.logits.shape[-1] + 3, dtype=dtype)
    wide[..., : inputs.logits.shape[-1]] = inputs.logits
    inputs.logits = wide[..., : inputs.logits.shape[-1]]  # strides of the wider tensor
    check(impl, inputs)
    heads = []
    for host in (tp._c_host, None):
        impl.c_host = host
        handle = impl.enqueue(inputs)
        heads.append(impl._args_np[: ARG_HOST_RESULT + 1].tolist())
        assert_same(postprocess_reference(inputs), impl.finish(handle))
    heads[0][0] += 1  # the next call's sequence number
    assert heads[0] == heads[1] and heads[1][2:5] == list(inputs.logits.stride())


class FakeGraphs:
    """A CPU instance whose plan has a stand-in CUDA graph per frame class: its driver handle launches through a
    ctypes callback where cuGraphLaunch would be called (the call's kernels, plain launches under the interpreter,
    on the block as written by then), and its replay() does the same (the fallback after a failed launch)."""

    def __init__(self, impl: TritonPostprocess, plan, launch_result: int = 0) -> None:
        self.impl, self.plan, self.launches, self.replays, self.errors = impl, plan, [], 0, []
        prototype = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
        self._callback = prototype(lambda handle, stream: self._launch(handle, stream, launch_result))
        impl.use_cuda_graph = True
        impl._launch_address = ctypes.cast(self._callback, ctypes.c_void_p).value
        impl._graph_launch = partial(tp._c_host.graph_launch, impl._launch_address)
        plan.graphs[0], plan.graphs[1] = (self, 10), (self, 11)

    def _launch(self, handle: int, stream: int, result: int) -> int:
        self.launches.append(handle)
        if result == 0:
            self.replay()
        return result

    def replay(self) -> None:
        self.replays += 1
        try:
            self.impl._launch_all(self.plan, 0 if self.launches[-1] == 10 else 1)
        except Exception as error:  # a ctypes callback cannot raise: the test reports it
            self.errors.append(error)


C_REPLAY = {
    "plain": ({}, {}),
    "crop_letterbox_cap": ({"static_crop": True, "letterbox": True}, {"max_detections": 2}),
    "batch_of_three": ({"batch": 3, "frame_sizes": [(90, 120), (70, 64), (40, 48)]}, {"max_detections": 40}),
}


@pytest.mark.parametrize("mode", list(C_REPLAY))
def test_c_replay_matches_the_python_replay(seed: int, mode: str) -> None:
    """kernels/_host.enqueue_replay (a replayed call's whole enqueue in C) writes the argument block word for word
    as enqueue's Python steps do and launches the same graph; both calls match the reference. Two calls in a row
    of other inputs: the metadata tail is rewritten where it changed."""
    make, extra = C_REPLAY[mode]
    impl = new_impl("c")
    first = make_inputs(seed, **{"frame_sizes": [(90, 120)], **make}, num_confident=3, **SMALL)
    second = make_inputs(seed + 1, **{"frame_sizes": [(90, 120)], **make}, num_confident=3, **SMALL)
    second.preprocess = [make_preprocess((70, 96), 64)] * len(second.preprocess)
    for inputs in (first, second):
        for key, value in extra.items():
            setattr(inputs, key, value)
        check(impl, inputs)  # the plan and both metadata entries, by plain launches
    (plan,) = impl._plans.values()
    graphs = FakeGraphs(impl, plan)
    blocks, taken = {}, []

    def c_replay(*args):
        pending = tp._c_host.enqueue_replay(*args)
        taken.append(pending is not None)
        return pending

    for replay in (c_replay, None):
        impl._c_replay = replay
        for inputs in (first, second, second):
            seq = impl._seq
            handle = impl.enqueue(inputs)
            assert handle.seq == seq + 1 == impl._seq and handle.keep == () and handle.plan is plan
            assert impl._args_tail is plan.metas[b"".join(m._key for m in inputs.preprocess)]
            blocks.setdefault(id(inputs), []).append(impl._args_np.copy())
            assert_same(postprocess_reference(inputs), impl.finish(handle))
    assert taken == [True] * 3 and not graphs.errors and len(graphs.launches) == 6 and graphs.replays == 6
    for c_block, *_, python_block in blocks.values():
        c_block[0] = python_block[0]  # the sequence numbers differ
        assert c_block.tolist() == python_block.tolist()


def test_c_replay_leaves_every_other_call_to_python(seed: int) -> None:
    """enqueue_replay returns None and changes nothing (sequence number, block, tail, launches) for the calls it
    does not take: no graph for the frame class, no driver handle, no launch address, plain launches, a threshold
    tensor, a NaN or float32-overflowing threshold, a class mapping, a detection cap that is not an int, unknown
    metadata, an unknown plan."""
    impl = new_impl("c")
    inputs = make_inputs(seed, frame_sizes=[(90, 120)], num_confident=3, **SMALL)
    check(impl, inputs)
    (plan,) = impl._plans.values()
    graphs = FakeGraphs(impl, plan)
    assert_same(postprocess_reference(inputs), impl.finish(impl._c_host.enqueue_replay(impl, inputs)))  # taken
    variants = {
        "threshold_tensor": {"threshold": torch.full((8,), 0.5)},
        "threshold_nan": {"threshold": float("nan")},
        "threshold_past_f32": {"threshold": 1e39},
        "threshold_int": {"threshold": 1},
        "mapping": {"class_mapping": torch.arange(8)},
        "cap_numpy": {"max_detections": np.int64(3)},
        "cap_huge": {"max_detections": 1 << 70},
        "new_metadata": {"preprocess": [make_preprocess((50, 60), 64)]},
        "new_plan": {"logits": inputs.logits[:, :10], "boxes": inputs.boxes[:, :10], "masks": inputs.masks[:, :10]},
    }
    for name, changes in [*variants.items(), ("no_graph", {}), ("no_handle", {}), ("no_address", {}), ("plain", {})]:
        call = PostprocessInputs(**{**inputs.__dict__, **changes})
        saved = plan.graphs[0]
        if name == "no_graph":
            plan.graphs[0] = None
        elif name == "no_handle":
            plan.graphs[0] = (graphs, 0)
        address, impl._launch_address = impl._launch_address, 0 if name == "no_address" else impl._launch_address
        impl.use_cuda_graph = name != "plain"
        seq, block, tail = impl._seq, impl._args_np.copy(), impl._args_tail
        launches = len(graphs.launches)
        assert impl._c_host.enqueue_replay(impl, call) is None, name
        assert (impl._seq, impl._args_tail, len(graphs.launches)) == (seq, tail, launches), name
        assert np.array_equal(impl._args_np, block), name
        plan.graphs[0], impl._launch_address, impl.use_cuda_graph = saved, address, True
    seq, block = impl._seq, impl._args_np.copy()
    with pytest.raises(AttributeError, match="shape"):  # a getter's error comes through, nothing written
        impl._c_host.enqueue_replay(impl, PostprocessInputs(**{**inputs.__dict__, "masks": object()}))
    assert impl._seq == seq and np.array_equal(impl._args_np, block)
    assert not graphs.errors


def test_c_replay_falls_back_to_torch_replay_when_the_launch_fails(seed: int) -> None:
    """A driver launch that fails (non-zero result): the graph's own replay() runs the call instead and the
    instance stops launching through the driver (enqueue's Python steps from then on)."""
    impl = new_impl("c")
    inputs = make_inputs(seed, frame_sizes=[(90, 120)], num_confident=3, **SMALL)
    check(impl, inputs)
    (plan,) = impl._plans.values()
    graphs = FakeGraphs(impl, plan, launch_result=700)
    assert_same(postprocess_reference(inputs), impl.finish(impl.enqueue(inputs)))
    assert graphs.launches == [10] and graphs.replays == 1 and impl._launch_address == 0
    assert impl._c_host.enqueue_replay(impl, inputs) is None


def test_a_cuda_instance_without_the_c_steps_warns() -> None:
    """Only on CUDA and only without kernels/_host.c: a GPU run of the Python steps is slower, and says why."""
    message = tp._missing_c_host(True, None)
    assert message and "kernels/_host.c was not built" in message and "scripts/build_host.py" in message
    assert tp._missing_c_host(False, None) is None and tp._missing_c_host(True, tp) is None


def test_settings_name_the_host_steps() -> None:
    impl = new_impl("python")
    assert impl.settings == {"host_steps": "python", "cuda_graph": False, "rehearse_unpack": True}
    if tp._c_host is not None:
        impl.c_host = tp._c_host
        assert impl.settings["host_steps"] == "c"


@pytest.mark.parametrize("mode", ["plain", "crop_letterbox", "mapping_per_class", "empty"])
def test_python_host_path_matches_reference(seed: int, mode: str) -> None:
    """The host steps in Python end to end (enqueue's tensor words, the unpacking, the rehearsal), as on an
    install without a C compiler; two images, one of them without detections."""
    impl = new_impl("python")
    inputs = make_inputs(seed, batch=2, frame_sizes=[(90, 120), (70, 64)], **SMALL, **MODES[mode])
    inputs.logits[1] = -20.0
    check(impl, inputs)
    check(impl, make_inputs(seed + 1, batch=2, frame_sizes=[(64, 80), (50, 70)], **SMALL, **MODES[mode]))


@pytest.mark.parametrize("host", HOSTS)
def test_rehearsal_while_waiting_changes_nothing(seed: int, host: str) -> None:
    """While the GPU works, finish rehearses the unpacking's steps on a private copy of the plan's first result
    with detections. On the CPU the copy has always landed by then, so a stand-in flag that never matches the
    call's number sends finish down that path; the results stay identical, every step runs, and the copy stays the
    first result's."""
    impl = new_impl(host)
    first = make_inputs(seed, batch=2, frame_sizes=[(90, 120), (64, 80)], num_confident=6, **SMALL)
    first_out = check(impl, first)
    (plan,) = impl._plans.values()
    assert plan.rehearsal is not None
    rehearsed = [step() for step in plan.rehearsal]
    masks = [m for image in first_out for m in image.masks]
    spans_step = host == "python"  # the Python unpacking reads the strings' spans first; the C steps read their own
    assert len(plan.rehearsal) == spans_step + sum(-(-len(image) // 4) for image in first_out if len(image))
    assert [m for out in rehearsed[spans_step:] for m in out] == masks  # the masks four at a time
    calls = []
    plan.rehearsal = tuple(partial(lambda step: calls.append(1) or step(), step) for step in plan.rehearsal)
    impl._flag_mv = memoryview(np.zeros(1, np.int64))
    check(impl, make_inputs(seed + 1, batch=2, frame_sizes=[(50, 70), (120, 90)], num_confident=4, **SMALL))
    assert len(calls) == len(plan.rehearsal) and impl.rehearsals_cut == 0
    impl._host.fill_(7)  # the live buffer is overwritten by every call; the rehearsal's copy is its own
    assert [m for step in plan.rehearsal[spans_step:] for m in step()] == masks
    impl.rehearse_unpack = False
    calls.clear()
    check(impl, make_inputs(seed + 2, batch=2, frame_sizes=[(64, 80)], num_confident=2, **SMALL))
    assert not calls


class _FlagUpAfter:
    """A stand-in for finish's flag: down (-1) for its first `reads` reads, then `value`."""

    def __init__(self, value: int, reads: int) -> None:
        self.value, self.reads = value, reads

    def __getitem__(self, index: int) -> int:
        self.reads -= 1
        return self.value if self.reads < 0 else -1


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("reads", [1, 2, 3])
def test_rehearsal_stops_when_the_flag_comes_up(seed: int, reads: int, host: str) -> None:
    """The rehearsal takes a step only while the call's flag is down: a flag that comes up after `reads` reads
    leaves the rest of the steps undone (and counted as a cut rehearsal); the results stay the reference's."""
    impl = new_impl(host)
    check(impl, make_inputs(seed, batch=1, frame_sizes=[(90, 120)], num_confident=12, **SMALL))
    (plan,) = impl._plans.values()
    calls = []
    plan.rehearsal = tuple(partial(lambda step: calls.append(1) or step(), step) for step in plan.rehearsal)
    assert len(plan.rehearsal) >= 3
    inputs = make_inputs(seed + 1, batch=1, frame_sizes=[(90, 120)], num_confident=5, **SMALL)
    handle = impl.enqueue(inputs)
    impl._host_q[RECORDS_READY_WORD] = handle.seq - 1  # no early arrays: every read of a down flag is a step
    impl._flag_mv = _FlagUpAfter(handle.seq, reads)
    assert_same(postprocess_reference(inputs), impl.finish(handle))
    assert len(calls) == reads - 1 and impl.rehearsals_cut == 1 and impl.early_arrays == 0


class _ReadyAfter:
    """A stand-in for the host buffer's int64 words: the records-ready word reads `seq - 1` for its first `reads`
    reads, then `seq`; every other word is the buffer's."""

    def __init__(self, words: memoryview, seq: int, reads: int) -> None:
        self.words, self.seq, self.reads = words, seq, reads

    def __getitem__(self, index: int) -> int:
        if index != RECORDS_READY_WORD:
            return self.words[index]
        self.reads -= 1
        return self.seq if self.reads < 0 else self.seq - 1


@pytest.mark.parametrize("host", HOSTS)
def test_arrays_made_between_rehearsal_steps(seed: int, host: str) -> None:
    """Records that land while the rehearsal runs: the arrays are made at the next check, between two steps, and
    the rehearsal goes on until the flag comes up; the results stay the reference's."""
    impl = new_impl(host)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tp, "_REHEARSAL_STEP_STRINGS", 3)  # Q = 12 allows no more than three steps of four
        check(impl, make_inputs(seed, batch=1, frame_sizes=[(90, 120)], num_confident=12, **SMALL))
    (plan,) = impl._plans.values()
    events = []
    assert len(plan.rehearsal) >= 4  # (the spans and) steps of three strings: one is left when the flag comes up
    plan.rehearsal = tuple(partial(lambda step: events.append("step") or step(), step) for step in plan.rehearsal)
    real_arrays = tp._arrays
    inputs = make_inputs(seed + 1, batch=1, frame_sizes=[(90, 120)], num_confident=5, **SMALL)
    handle = impl.enqueue(inputs)
    impl._host_q = _ReadyAfter(impl._host_q, handle.seq, 2)
    impl._flag_mv = _FlagUpAfter(handle.seq, 5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tp, "_arrays", lambda *args: events.append("arrays") or real_arrays(*args))
        assert_same(postprocess_reference(inputs), impl.finish(handle))
    # flag reads 2-4 are down: step, step, then the arrays (the ready word's third read), then a step; the fifth is up
    assert events == ["step", "step", "arrays", "step"] and impl.early_arrays == 1 and impl.rehearsals_cut == 1


@pytest.mark.parametrize("host", HOSTS)
def test_records_awaited_after_the_rehearsal(seed: int, host: str) -> None:
    """A rehearsal that ends before the records land (a short one, as the C steps make it): finish goes on reading
    the records-ready word and makes the arrays when it changes, before the flag comes up, rather than after it."""
    impl = new_impl(host)
    check(impl, make_inputs(seed, batch=1, frame_sizes=[(90, 120)], num_confident=6, **SMALL))
    (plan,) = impl._plans.values()
    events = []
    plan.rehearsal = tuple(partial(lambda step: events.append("step") or step(), step) for step in plan.rehearsal)
    steps = len(plan.rehearsal)
    real_arrays = tp._arrays
    inputs = make_inputs(seed + 1, batch=1, frame_sizes=[(90, 120)], num_confident=5, **SMALL)
    handle = impl.enqueue(inputs)
    impl._host_q = _ReadyAfter(impl._host_q, handle.seq, steps + 3)  # three reads after the last step
    impl._flag_mv = _FlagUpAfter(handle.seq, 10**6)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tp, "_arrays", lambda *args: events.append("arrays") or real_arrays(*args))
        assert_same(postprocess_reference(inputs), impl.finish(handle))
    assert events == ["step"] * steps + ["arrays"] and impl.early_arrays == 1 and impl.rehearsals_cut == 0


@pytest.mark.parametrize("host", HOSTS)
def test_rehearsal_cuts_its_strings(seed: int, host: str) -> None:
    """The rehearsal keeps only the first _REHEARSAL_STRING_BYTES of the strings: a string past the cut comes out
    shorter (a prefix) or empty, never read past its copy; the calls stay the reference's."""
    impl = new_impl(host)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tp, "_REHEARSAL_STRING_BYTES", 24)
        out = check(impl, make_inputs(seed, batch=2, frame_sizes=[(90, 120), (64, 80)], num_confident=6, **SMALL))
    (plan,) = impl._plans.values()
    masks = [m for image in out for m in image.masks]
    rehearsed = [m for step in plan.rehearsal for m in step() if isinstance(m, RleMask)]  # (not the spans step)
    assert len(rehearsed) == len(masks) and sum(len(m.counts) for m in rehearsed) <= 24
    assert all(r.size == m.size and m.counts.startswith(r.counts) for r, m in zip(rehearsed, masks, strict=True))
    assert sum(len(m.counts) for m in masks) > 24
    impl._flag_mv = memoryview(np.zeros(1, np.int64))  # the rehearsal runs in full before this call's unpacking
    check(impl, make_inputs(seed + 1, batch=2, frame_sizes=[(50, 70), (120, 90)], num_confident=4, **SMALL))


@pytest.mark.parametrize("frames", [[(90, 120)], [(90, 120), (64, 80)], [(50, 70), (120, 90), (64, 80)]])
def test_arrays_made_while_the_masks_run(seed: int, frames: list[tuple[int, int]]) -> None:
    """The count pass puts the detection counts and records into the host buffer and then the call's number into
    its records-ready word; finish, still waiting for the strings, makes each image's arrays from them. On the CPU
    everything has landed by finish, so a stand-in flag that never matches sends finish down that path; a
    records-ready word that does not hold the call's number must not."""
    impl = TritonPostprocess(torch.device("cpu"))
    for i in range(3):  # consecutive calls of one plan: the host buffer holds the call before's records each time
        inputs = make_inputs(seed + i, batch=len(frames), frame_sizes=frames, num_confident=2 + i, **SMALL)
        if len(frames) > 1 and i == 1:
            inputs.logits[i % len(frames)] = -20.0  # an image without detections among others
        handle = impl.enqueue(inputs)
        assert impl._host_q[RECORDS_READY_WORD] == handle.seq
        impl._flag_mv = memoryview(np.full(1, -1, np.int64))
        assert_same(postprocess_reference(inputs), impl.finish(handle))
        assert impl.early_arrays == i + 1
    inputs = make_inputs(seed + 5, batch=len(frames), frame_sizes=frames, num_confident=3, **SMALL)
    handle = impl.enqueue(inputs)
    impl._host_q[RECORDS_READY_WORD] = handle.seq - 1  # as if the count pass had not got there yet
    assert_same(postprocess_reference(inputs), impl.finish(handle))
    assert impl.early_arrays == 3


@pytest.mark.parametrize("threshold", [0, -1e39, 1e39], ids=["int", "below_float32", "above_float32"])
def test_scalar_thresholds_outside_float32(impl: TritonPostprocess, seed: int, threshold: float) -> None:
    """A Python int, or a float beyond float32's range: compared as the float32 a tensor would hold."""
    check(impl, make_inputs(seed, batch=1, frame_sizes=[(64, 80)], threshold=threshold, **SMALL))


def test_zero_queries(impl: TritonPostprocess, seed: int) -> None:
    inputs = make_inputs(seed, batch=2, frame_sizes=[(64, 80)], **SMALL)
    inputs.boxes, inputs.logits, inputs.masks = inputs.boxes[:, :0], inputs.logits[:, :0], inputs.masks[:, :0]
    assert [len(r) for r in impl(inputs)] == [0, 0]


def test_metadata_cache_by_value(seed: int) -> None:
    """The per-metadata work (argument-block tail, frame sizes, class) is cached per plan under the images' joined
    cache_keys: fresh but equal metadata hits, other values and another order of a batch's frames miss; all
    identical."""
    impl = TritonPostprocess(torch.device("cpu"))
    one = make_inputs(seed, batch=1, frame_sizes=[(64, 80)], num_confident=3, **SMALL)
    fresh = make_inputs(seed + 1, batch=1, frame_sizes=[(64, 80)], num_confident=3, **SMALL)
    boxed = make_inputs(seed + 2, batch=1, frame_sizes=[(64, 80)], num_confident=3, letterbox=True, **SMALL)
    pair = make_inputs(seed + 3, batch=2, frame_sizes=[(64, 80), (90, 70)], num_confident=3, **SMALL)
    swapped = make_inputs(seed + 4, batch=2, frame_sizes=[(90, 70), (64, 80)], num_confident=3, **SMALL)
    assert fresh.preprocess == one.preprocess and fresh.preprocess[0] is not one.preprocess[0]
    for inputs in (one, fresh, boxed, pair, swapped, pair, one):
        check(impl, inputs)
    assert sorted((plan.layout.batch, len(plan.metas)) for plan in impl._plans.values()) == [(1, 2), (2, 2)]


def test_argument_block_tail_follows_metadata_threshold_and_empty_calls(seed: int) -> None:
    """The argument block's packed tail (row chunk, metadata) is copied only when it differs from the last
    call's: same metadata with another threshold, a call without queries (which zeroes the row chunk word), other
    metadata and another batch size in between; all identical."""
    impl = TritonPostprocess(torch.device("cpu"))
    a = make_inputs(seed, batch=1, frame_sizes=[(64, 80)], num_confident=3, **SMALL)
    lower = make_inputs(seed, batch=1, frame_sizes=[(64, 80)], num_confident=3, threshold=1e-4, **SMALL)
    other = make_inputs(seed + 1, batch=1, frame_sizes=[(90, 70)], num_confident=3, **SMALL)
    pair = make_inputs(seed + 2, batch=2, frame_sizes=[(64, 80)], num_confident=3, **SMALL)
    empty = make_inputs(seed, batch=1, frame_sizes=[(64, 80)], **SMALL)
    empty.boxes, empty.logits, empty.masks = empty.boxes[:, :0], empty.logits[:, :0], empty.masks[:, :0]
    assert lower.preprocess == a.preprocess and len(postprocess_reference(lower)[0]) > len(postprocess_reference(a)[0])
    for inputs in (a, lower, a, empty, a, other, a, pair, a):
        if inputs is empty:
            assert [len(r) for r in impl(inputs)] == [0]
        else:
            check(impl, inputs)


def _sample_dirs() -> list[Path]:
    return sorted(p.parent for p in SAMPLES.glob("*/manifest.json")) if SAMPLES.is_dir() else []


@pytest.mark.parametrize("directory", _sample_dirs(), ids=lambda p: p.name)
def test_sample_case_sets(impl: TritonPostprocess, directory: Path) -> None:
    from cases.caseset import load_case_set

    case_set = load_case_set(directory, max_cases=3)
    assert case_set.cases, f"{directory} has no cases"
    for case in case_set.cases:
        out = impl(case.inputs)
        assert_same(case.expected, out)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    height=st.integers(40, 90),
    width=st.integers(40, 90),
    letterbox=st.booleans(),
    static_crop=st.booleans(),
    fp16=st.booleans(),
    threshold=st.sampled_from([1e-3, 0.3, 0.6]),
    tuning=st.sampled_from([None, (32, 16, 16, 4, 16), (64, 32, 32, 16, 1024)]),
)
def test_property_small(
    impl: TritonPostprocess,
    seed: int,
    height: int,
    width: int,
    letterbox: bool,
    static_crop: bool,
    fp16: bool,
    threshold: float,
    tuning: tuple[int, int, int, int, int] | None,
) -> None:
    """Random small frames (crops stay above the 16x16 mask grid: upsampling, whose bits are exact), with the
    default work layout or a finer one (row chunk, tile columns, scan block: many items and scan blocks; compress
    parts and blocks: strings cut over programs; frames of 65 rows and more take twice the row chunk, as 4K frames
    do)."""
    if tuning is not None:
        impl = TritonPostprocess(torch.device("cpu"))
        impl.row_chunk, impl.tile_cols, impl.scan_block, impl.compress_part_min, impl.compress_block = tuning
        impl.compress_block_large = impl.compress_block
        impl.row_chunk_large, impl.large_frame_rows = 2 * impl.row_chunk, 65
    inputs = make_inputs(
        seed, batch=1, queries=6, classes=5, input_size=64, frame_sizes=[(height, width)], letterbox=letterbox,
        static_crop=static_crop, dtype=torch.float16 if fp16 else torch.float32, threshold=threshold,
    )  # fmt: skip
    check(impl, inputs)


def test_resident_device_bytes_counts_held_buffers() -> None:
    impl = TritonPostprocess("cpu")
    before = impl.resident_device_bytes
    assert before >= impl._workspace.numel() * 8  # the workspace alone
    impl(make_inputs(3, queries=8, classes=5, input_size=32, frame_sizes=[(40, 60)]))
    assert impl.resident_device_bytes >= before
