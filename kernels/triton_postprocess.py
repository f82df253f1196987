"""The `triton` implementation: the whole post-processing call on the GPU, one graph replay, results in pinned memory.

Per call the host writes one argument block (the caller's tensors as addresses and strides, the scalars and
the per-image metadata; kernels/triton_layout.py) into a pinned buffer. On CUDA a graph, captured once per
input signature, uploads it and runs four kernels, each a programmatic dependent of the one before
(kernels/triton_sync.py; kernels/triton_select.py: selection, mapping, thresholds, cap, boxes, and each query's
mask region; kernels/triton_masks.py: each detection's low-resolution mask logits straight to its COCO counts
string); the last one copies the results into a reusable pinned host buffer and then the call's sequence
number; finish waits for that number and only slices the buffer (memoryview). Workspace overflow is
detected from the header and the call re-runs with larger buffers. See docs/TRITON.md.
"""

from __future__ import annotations

import ctypes
import math
import operator
import os
import struct
import warnings
from functools import cache, partial
from itertools import repeat
from types import ModuleType
from typing import NamedTuple

import numpy as np
import torch
import triton

from kernels.contract import ImageDetections, PostprocessInputs, PreprocessMeta, RleMask, mask_crop
from kernels.triton_layout import (
    ARG_BOXES,
    ARG_HOST_RESULT,
    ARG_IMAGES,
    ARG_LOGITS,
    ARG_MAP,
    ARG_MASKS,
    ARG_MAX_DET,
    ARG_NUM_CLASSES,
    ARG_RESULT,
    ARG_ROW_CHUNK,
    ARG_SEQ,
    ARG_SUM_STRIDE,
    ARG_THR,
    ARG_WORKSPACE,
    META_FLOATS,
    META_INTS,
    RECORDS_READY_WORD,
    STALLED_WORD,
    ArgsLayout,
    PackedLayout,
)
from kernels.triton_masks import (
    QREGION_WORDS,
    TABLES,
    compress_kernel,
    count_kernel,
    write_kernel,
)
from kernels.triton_select import select_kernel
from kernels.triton_transfer import copy_back_kernel, upload_kernel

try:  # the host steps in C (kernels/_host.c), built by the project's install where a C compiler is found
    from kernels import _host as _c_host
except ImportError:
    _c_host = None
else:  # the tensors' methods called through their descriptors (a tensor subclass's own override is not seen)
    _c_host.tensor_methods(torch.Tensor.data_ptr, torch.Tensor.stride)

__all__ = ["TritonPostprocess"]

# Pairs per block of the selection's scan (and its programs per image: blocks, at most _MAX_SPLIT): the ranking waits
# for the slowest program, whose block's candidates take float64 sigmoids (H200: graph 0.94-0.98x with 512 against
# 1024, 1.06-1.09x with 2048).
_SELECT_BLOCK = 512
# Warps of the selection kernel's programs: its region programs' mask loads are DRAM round trips when the L2 holds
# other work's data, as after the model or a replay's reference call; 16 warps keep twice the loads in flight (H200:
# graph 0.91 / 0.88 / 0.88x at 4K / 720p / 1080p with the L2 overwritten first, 1.00x warm; 32 warps spill).
_SELECT_WARPS = 16
_MAX_SPLIT = 64  # selection programs per image (each takes every _MAX_SPLIT-th block of pairs beyond that)
_RANK_BLOCK = 32  # candidates per ranking block (H200: 0.976-0.988x graph against 64 with 2-8 detections)
_SRC_BLOCK = 8192  # one pass over a 78x78 mask (region bounding box)
_TILE_ROWS = 32  # with 4 warps at 128 registers: no spills (64 rows spill)
_TILE_ROWS_LARGE = 32  # frames of _LARGE_FRAME_ROWS rows and more (64 was 0.953x at 4K with 8 warps, 2 programs/SM)
_TILE_COLS = 32
# Count/write warps per SM: programs of _MASK_WARPS warps, _MASK_WARPS_PER_SM // _MASK_WARPS of them per SM, capped at
# 128 registers a thread so that all fit (H200, 4 programs of 4 warps against 2 of 8 with 64-row tiles at 4K: graph
# 0.89-0.90x at 4K, 1.00x at 720p / 1080p: every 4K item starts at once instead of two after another in most programs).
_MASK_WARPS_PER_SM = 16
_MASK_WARPS = 4
_MASK_WARPS_LARGE = 4
# The count pass reads up to this many source rows x columns of a work item's taps (an item's at 720p / 1080p / 4K
# with 78x78 masks: about 12 / 8 / 11 rows x 3-4 / 3 / 2 columns) and decides each tile whose taps all have one sure
# sign without evaluating it: 76% / 68% of the stand-in model's 32x32 tiles at 4K / 1080p (H200, graph against
# evaluating every pixel: 0.99 / 1.00 / 0.90x at 720p / 1080p / 4K; 8 rows: 1.00 / 1.01 / 0.94x).
_SURE_ROWS = 16
_SURE_COLS = 4
# Rows per work item of the count/write passes (a multiple of _TILE_ROWS). Below 1440 frame rows 96 (H200, eighth
# session, against 128: graph 0.96-1.00x at 720p and 0.96-0.97x at 1080p; 64 was 0.95x at 720p but 1.03-1.05x at
# 1080p); from 1440 rows up 256: fewer items, each with its per-item overhead (graph 0.947x at 4K against 128; 192
# was 1.05x against 256).
_ROW_CHUNK = 96
_ROW_CHUNK_LARGE = 256
_LARGE_FRAME_ROWS = 1440
# Compress: each detection's counts cut into parts over the kernel's programs, at least _COMPRESS_PART_MIN counts a
# part and at most _COMPRESS_PARTS parts (kernels/triton_masks.py, compress_kernel); counts per step of a part. H200,
# against one program per string: graph ~0.95x at 4K, 1.00x at 720p / 1080p (their strings are short: one or two
# parts); blocks of 512 against 1024: 0.99-1.00x (one block per part).
_COMPRESS_BLOCK = 512
_COMPRESS_BLOCK_LARGE = 512
_COMPRESS_PART_MIN = 512
_COMPRESS_PARTS = 32
_COMPRESS_WARPS = 8  # (H200, with 16-warp selection: graph 0.97 / 0.95 / 0.95x against 16 warps, warm)
_IMAGE_BLOCK = 64  # images per step of compress's walk over the batch's detection counts
_PART_SPINS = 1 << 22  # reads a compress part makes of its string's earlier parts' lengths before it reports a stall
# Counts per scan block (a sum the count pass adds into; the write pass sums a block's counts before its first): H200,
# graph 0.98-0.99x against 1024 at 720p / 1080p / 4K (the write pass's sums over 256 lanes rather than 1024).
_SCAN_BLOCK = 256
_WRITE_TILES = 32
_CHUNK_BLOCK = 16  # row chunks per step of the write pass's column sums (all of a column's at 720p / 1080p / 4K)
# Slots per step of the count and write passes' sums over slots (the count pass's _locate, before every item's
# first tile): the plan's slots rounded up to a power of two within these bounds, so that a call of 100 slots
# reduces 128 lanes rather than 1024 (H200: graph 0.94-0.96x at 720p / 1080p / 4K); a plan whose bucket is new
# compiles the two passes once more.
_PREFIX_BLOCK_MIN, _PREFIX_BLOCK = 128, 1024
_UPLOAD_BLOCK = 256  # int64 words of the argument block per step (it has ~100-300)
_COPY_BLOCK = 1024  # int64 words per program and step of the copy back
_MAX_COPY_PROGRAMS = 32
_MIN_STRING_BYTES = 1 << 16
_MIN_WORKSPACE = 1 << 16
# Frame pixels per workspace word to start from: 4K gets 518K words (x1.25 headroom, 5 MiB kept); the H200's 4K case
# set needed 147K p50 / 317K max (boundary bits included: a word per 32 candidate pixels), 1080p 26K / 61K, and the
# denser synthetic scenes of scripts/gpu_first_call.py more: with 32 pixels a word their first 1080p / 4K calls
# re-ran (2.0-2.2x a warm call instead of 1.3-1.5x).
_PIXELS_PER_WORD = 16
# Frame pixels per byte of string room to start from (compress places each string at an upper bound of its length, 8
# bytes per count: 4K gets 518 KB, where its case set's calls need up to ~100 KB; past it a call re-runs).
_PIXELS_PER_STRING_BYTE = 16
_DIRECT_LAUNCH_VERIFIED = ("3.6.",)  # Triton releases whose CompiledKernel launch was verified on a GPU
_MAX_GRAPHS = 32  # captured graphs kept per instance (input signatures); all are dropped past it
_SPIN_CHECK = 4096  # finish polls the stream for errors every this many reads of the sequence flag
_REHEARSAL_STRING_BYTES = 1 << 16  # string bytes kept per plan for finish's rehearsal of the unpacking
_REHEARSAL_STEP_STRINGS = 4  # strings per step of the rehearsal (finish checks the flag between steps)
_TAIL_WORD = ARG_HOST_RESULT + 1  # the argument block's words from here on are packed per metadata value


class _Plan:
    """What the host needs for every call of one input signature (B, Q, C, mask size, dtypes), computed once:
    the layouts, the packer of the argument block, the typed witnesses, the captured graphs (one per frame class)
    and the per-image metadata already in argument-block form.

    The per-call host path runs cold in a real pipeline (the model's work evicts it from the CPU caches between
    calls), so it touches as few Python objects as it can: the head of the argument block (the caller's
    tensors, scalars and buffers) goes in by int64 item assignments, its tail (counters, row chunk, metadata) is
    packed once per metadata value and copied only when it differs from the last call's, and the graph is an
    attribute of the plan.
    """

    __slots__ = (
        "args", "classes", "counts", "fast", "graphs", "layout", "metas", "records", "rehearsal", "spans", "tail",
        "witnesses",
    )  # fmt: skip

    def __init__(self, layout: PackedLayout, args: ArgsLayout, classes: int, witnesses: tuple) -> None:
        self.layout, self.args, self.classes, self.witnesses = layout, args, classes, witnesses
        # What kernels/_host.c enqueue_replay reads of the layouts: slots, queries, block words, threshold's index
        self.fast = (layout.slots, layout.queries, args.words, args.meta_float)
        self.spans = _span_bytes(layout)  # where the strings' (begin, end) pairs lie in the result buffer
        self.tail = _tail_struct(args)
        self.counts = struct.Struct(f"<{layout.batch}q")  # detections per image, from the result header
        # Per frame class (0: below large_frame_rows, 1: from it on): (graph, its exec handle or 0), or None.
        self.graphs: list[tuple[torch.cuda.CUDAGraph, int] | None] = [None, None]
        self.metas: dict[bytes, tuple] = {}  # metadata (by value) -> (tail bytes, frame sizes, row chunk, class)
        self.records: tuple | None = None  # (host int32 words, boxes, classes, scores): views, see _record_views
        self.rehearsal: tuple | None = None  # finish's rehearsal steps on a private earlier result (_rehearsal)


class _Pending(NamedTuple):
    """What finish needs from one enqueue: the inputs (for a re-run), the plan, the frame sizes, the call's number."""

    inputs: PostprocessInputs
    plan: _Plan
    sizes: list[tuple[int, int]]
    seq: int
    stream: int  # the raw CUDA stream the call was enqueued on (0 off CUDA)
    keep: tuple  # tensors made for this call (converted thresholds / mapping) the kernels read by address


# Built without Python-level calls (enqueue runs on a cold host, see _Plan): a _Pending from one tuple (not
# NamedTuple's generated __new__), a PreprocessMeta's cache_key (not the property).
_pending = partial(tuple.__new__, _Pending)
_cache_key = operator.attrgetter("_key")
if _c_host is not None:  # enqueue_replay's result type and stream getter (a CPU build of torch has none: 0)
    _c_host.replay_config(_Pending, getattr(torch._C, "_cuda_getCurrentRawStream", lambda index: 0))


def _tail_struct(args: ArgsLayout) -> struct.Struct:
    """The argument block after its head (words _TAIL_WORD on): the scan-block sums' stride, a zeroed counter,
    the row chunk, zeroed counters, the metadata ints, the scalar threshold, the metadata floats (pad bytes pack
    as zeros)."""
    assert ARG_SUM_STRIDE == _TAIL_WORD
    batch = args.batch
    counters_end = 8 * (ARG_IMAGES + 2 * batch)
    fmt = f"<q{8 * (ARG_ROW_CHUNK - _TAIL_WORD - 1)}xq{counters_end - 8 * (ARG_ROW_CHUNK + 1)}x"
    fmt += f"{4 * args.meta_int - counters_end}x{META_INTS * batch}i"
    fmt += f"{4 * (args.meta_float - args.meta_int - META_INTS * batch)}xf12x{META_FLOATS * batch}f"
    end = 4 * (args.meta_float + 4 + META_FLOATS * batch)
    packer = struct.Struct(fmt + f"{8 * args.words - end}x")
    assert packer.size == 8 * (args.words - _TAIL_WORD)
    return packer


class TritonPostprocess:
    """Phased implementation (enqueue/finish) holding its device workspaces and pinned host buffers."""

    name = "triton"

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        interpret = os.environ.get("TRITON_INTERPRET") == "1"
        cuda = self.device.type == "cuda" and not interpret
        self._use_libdevice = cuda
        self._pin = self.device.type == "cuda"
        # Programs of the count/write passes (they loop over all work items of the batch): on a GPU as many as fit
        # at once (_mask_programs), so that 4K's ~470 items start together; the CPU interpreter runs programs one by
        # one, so there a few (`programs`), which still exercises the loop.
        self._sms = torch.cuda.get_device_properties(self.device).multi_processor_count if cuda else 0
        self.programs = 3
        self.max_split = _MAX_SPLIT if cuda else 4
        # Block sizes and warps per launch: constexprs, kept as attributes so the GPU check can sweep them.
        self.select_block, self.select_warps, self.rank_block = _SELECT_BLOCK, _SELECT_WARPS, _RANK_BLOCK
        self.tile_rows, self.tile_cols, self.row_chunk = _TILE_ROWS, _TILE_COLS, _ROW_CHUNK
        self.mask_warps = _MASK_WARPS  # count / write warps (their programs per SM follow: _mask_programs)
        # Source rows / columns of a work item's taps that the count pass reads to decide its tiles without
        # evaluating them (0 rows: evaluate every pixel; kernels/triton_masks.py _item_taps, _tile_class).
        self.sure_rows, self.sure_cols = _SURE_ROWS, _SURE_COLS
        # Frame classes: a call whose tallest frame has at least large_frame_rows rows is large. Its rows per work
        # item are data (the argument block: row_chunk_large instead of row_chunk, read when a frame size is first
        # seen, multiples of the class's tile rows); its tile rows and compress block are constexprs, so a large
        # call launches its own compiled kernels (one graph per plan and class).
        self.row_chunk_large, self.large_frame_rows = _ROW_CHUNK_LARGE, _LARGE_FRAME_ROWS
        self.tile_rows_large, self.compress_block_large = _TILE_ROWS_LARGE, _COMPRESS_BLOCK_LARGE
        self.mask_warps_large = _MASK_WARPS_LARGE
        self.compress_block, self.compress_warps = _COMPRESS_BLOCK, _COMPRESS_WARPS
        self.compress_part_min = _COMPRESS_PART_MIN
        self.prefix_block = _PREFIX_BLOCK  # the most slots per step of the count and write passes' sums over slots
        self.scan_block, self.chunk_block = _SCAN_BLOCK, _CHUNK_BLOCK
        # The most tiles of a work item whose words the write pass loads at once (a bit each in an int32: <= 32); it
        # loads the tiles past them one by one.
        self.write_tiles = _WRITE_TILES
        # Launch through cached compiled kernels (see _launch); the interpreter has none. CompiledKernel[grid](...)
        # is Triton's own but not a documented API, so it is used only on Triton releases it was verified on
        # (byte-identical on the H100); elsewhere the JIT path runs, slower by ~20-35 us per launch.
        self.direct_launch = cuda and triton.__version__.startswith(_DIRECT_LAUNCH_VERIFIED)
        # Programmatic dependent launch (kernels/triton_sync.py) for every kernel after the upload: Hopper and later.
        self.pdl = cuda and torch.cuda.get_device_capability(self.device)[0] >= 9 and _has_gdc()
        self._compiled: dict[tuple, object] = {}
        self._signature: tuple | None = None
        self._plans: dict[tuple, _Plan] = {}
        self._witness: dict[torch.dtype, torch.Tensor] = {}  # typed stand-ins: kernels read inputs by address
        self._dummy_f = self._typed(torch.float32)
        self._dummy_i = self._typed(torch.int64)
        self._dummy_f_addr, self._dummy_i_addr = self._dummy_f.data_ptr(), self._dummy_i.data_ptr()
        self._u8 = self._typed(torch.uint8)  # the kernels' pointer type for the result bytes
        self._cuda = self.device.type == "cuda"
        self._device_index = self.device.index
        # Argument-block words ARG_WORKSPACE..ARG_HOST_RESULT: workspace address and words, result address and
        # bytes, host twin address (kept current by _new_workspace and _ensure_out).
        self._buffers = (0, 0, 0, 0, 0)
        self._new_workspace(_MIN_WORKSPACE)
        self._out_cap = 0
        self._out = torch.empty(0, dtype=torch.uint8, device=self.device)
        self._host = torch.empty(0, dtype=torch.uint8)
        self._host_mv = memoryview(b"")
        self._host_q = self._host_mv.cast("q")
        self._scratch = torch.empty(0, dtype=torch.int32, device=self.device)
        self._tables = torch.empty(0, dtype=torch.int64, device=self.device)
        self._scratch_slots = 0
        self._args_words = 0
        self._args_tail = None
        self._args_dev = torch.empty(0, dtype=torch.int64, device=self.device)
        self._args_host = torch.empty(0, dtype=torch.int64)
        self._flag_host = torch.zeros(1, dtype=torch.int64, pin_memory=self._pin)
        self._flag_mv = memoryview(self._flag_host.numpy()).cast("B").cast("q")  # read without numpy scalars
        self._seq = 0
        self.reruns = 0  # how many calls needed larger buffers (reported by tests and the GPU check)
        self.early_arrays = 0  # calls whose arrays were made while their masks were still in flight (see finish)
        self.rehearsals_cut = 0  # calls whose flag came up before their rehearsal's last step (see _in_flight)
        self.rehearse_unpack = True  # see finish (an attribute so that the GPU scripts can compare both)
        # CUDA graphs: the argument upload and the four kernels (the last one copies back) replayed as one graph per
        # input signature and frame class (docs/TRITON.md).
        self.use_cuda_graph = cuda
        self._driver_launch = _driver_graph_launch() if self.use_cuda_graph else None
        self.c_host = _c_host  # the host steps in C where kernels/_host.c was built (c_host below)
        message = _missing_c_host(cuda, _c_host)
        if message:
            warnings.warn(message, stacklevel=2)
        self.graph_captures = 0  # graphs captured so far (a new input signature, or buffers that grew)

    @property
    def c_host(self) -> ModuleType | None:
        """The module of the host steps in C (kernels/_host.c), or None for the same steps in Python (the GPU
        scripts compare both; the tests check both give the same results)."""
        return self._c_host

    @c_host.setter
    def c_host(self, module: ModuleType | None) -> None:
        self._c_host = module
        launch = self._driver_launch
        self._launch_address = 0  # cuGraphLaunch's, for enqueue_replay (0: enqueue's Python steps launch)
        if module is not None and launch is not None:  # cuGraphLaunch through its address, without ctypes' call
            self._launch_address = ctypes.cast(launch, ctypes.c_void_p).value
            launch = partial(module.graph_launch, self._launch_address)
        self._graph_launch = launch
        self._c_replay = None if module is None else module.enqueue_replay

    @property
    def settings(self) -> dict:
        """How this instance runs its calls, for results files (replay records it per implementation)."""
        return {
            "host_steps": "python" if self._c_host is None else "c",
            "cuda_graph": self.use_cuda_graph,
            "rehearse_unpack": self.rehearse_unpack,
        }

    # -- buffers -----------------------------------------------------------------------------------

    def _typed(self, dtype: torch.dtype) -> torch.Tensor:
        """A held one-element tensor of dtype: the kernels cast addresses to its pointer type."""
        witness = self._witness.get(dtype)
        if witness is None:
            witness = self._witness[dtype] = torch.zeros(1, dtype=dtype, device=self.device)
        return witness

    def _ensure_out(self, needed: int) -> None:
        if needed > self._out_cap:
            self._new_result(max(needed, 2 * self._out_cap))

    def _new_result(self, nbytes: int) -> None:
        """A result buffer and its pinned host twin of nbytes (rounded up to whole words). The kernels find both
        (and the workspace) in the argument block, so replacing them keeps the captured graphs."""
        cap = (nbytes + 7) // 8 * 8
        self._out = torch.empty(cap, dtype=torch.uint8, device=self.device)
        # Zeroed: its records-ready word must not hold a sequence number a later call could take for its own.
        self._host = torch.zeros(cap, dtype=torch.uint8, pin_memory=self._pin)
        host_np = self._host.numpy()
        self._host_mv, self._host_i32 = memoryview(host_np), host_np.view(np.int32)
        self._host_q = self._host_mv.cast("q")
        self._out_cap = cap
        self._buffers = (*self._buffers[:2], self._out.data_ptr(), cap, self._host.data_ptr())

    def _ensure_workspace(self, needed: int) -> None:
        if needed > self._ws_cap:
            self._new_workspace(max(needed + needed // 4, 2 * self._ws_cap))

    def _new_workspace(self, words: int) -> None:
        """A workspace of `words` int64 (the kernels find it in the argument block: no graph is dropped)."""
        self._ws_cap = words
        self._workspace = torch.empty(words, dtype=torch.int64, device=self.device)
        self._buffers = (self._workspace.data_ptr(), words, *self._buffers[2:])

    def _ensure_slots(self, slots: int) -> None:
        """Per-slot scratch: int32 selected query and QREGION_WORDS of region per query;
        int64 packed candidate and tables. Padded to 4 slots so that every view starts 16-byte aligned (what the
        compiled kernels assume)."""
        if self._scratch_slots >= slots:
            return
        n = (slots + 3) // 4 * 4
        self._drop_graphs()
        self._scratch = torch.empty((1 + QREGION_WORDS) * n, dtype=torch.int32, device=self.device)
        self._tables = torch.empty((1 + TABLES) * n + 8, dtype=torch.int64, device=self.device)
        self._scratch_views = (self._scratch[:n], self._tables[TABLES * n + 8 :], self._scratch[n:])
        self._scratch_slots = n

    def _ensure_args(self, words: int) -> None:
        """The argument block: pinned host twin (written per call) and device copy (read by the kernels)."""
        if words <= self._args_words:
            return
        self._drop_graphs()
        self._args_host = torch.zeros(words, dtype=torch.int64, pin_memory=self._pin)
        self._args_dev = torch.zeros(words, dtype=torch.int64, device=self.device)
        self._args_np = self._args_host.numpy()
        self._args_mv = memoryview(self._args_np).cast("B")
        self._args_q, self._args_f = self._args_mv.cast("q"), self._args_mv.cast("f")
        self._args_tail = None  # the metadata entry whose tail the block holds
        self._args_words = words

    def _new_plan(self, inputs: PostprocessInputs, signature: tuple) -> _Plan:
        """The plan of a new input signature (shapes and dtypes, as enqueue looks it up), and the buffers grown for
        it."""
        logits, boxes, masks = inputs.logits, inputs.boxes, inputs.masks
        batch, queries, classes = logits.shape
        witnesses = (self._typed(logits.dtype), self._typed(boxes.dtype), self._typed(masks.dtype))
        plan = self._plans[signature] = _Plan(PackedLayout(batch, queries), ArgsLayout(batch), classes, witnesses)
        self._ensure_out(plan.layout.strings_start + _MIN_STRING_BYTES)
        self._ensure_slots(plan.layout.slots)
        self._ensure_args(plan.args.words)
        return plan

    def _new_meta(self, plan: _Plan, metas: list[PreprocessMeta], key: bytes, mask_hw: tuple[int, int]) -> tuple:
        """Per-image metadata as the argument block's packed tail, the frame sizes, the call's rows per work item and
        its frame class (row_chunk and 0, or row_chunk_large and 1 from large_frame_rows on), cached in the plan
        under key (the images' PreprocessMeta.cache_key, joined: their values, so a pipeline's fresh but equal
        metadata of every frame hits too; bytes with a cached hash: a cold lookup touches a few objects, not every
        field). A larger frame than seen before grows the workspace ahead of the call, so that its first call rarely
        needs a re-run. Plain Python (no numpy): this runs cold on the first call of a new frame size."""
        if len(plan.metas) > 256:
            plan.metas.clear()
        sizes = [meta.original_size for meta in metas]
        ints = [v for meta in metas for v in _meta_ints(meta, mask_hw)]
        floats = [_packable_f32(v) for meta in metas for v in _meta_floats(meta)]
        tallest = max(h for h, _ in sizes)
        large = int(tallest >= self.large_frame_rows)
        row_chunk = self.row_chunk_large if large else self.row_chunk
        stride = -(-max(_most_counts(meta, row_chunk) for meta in metas) // self.scan_block)  # scan blocks a slot
        pixels = max(h * w for h, w in sizes)
        self._ensure_workspace(plan.layout.slots * stride + pixels // _PIXELS_PER_WORD)
        self._ensure_out(plan.layout.strings_start + 8 * plan.layout.slots + pixels // _PIXELS_PER_STRING_BYTE)
        tail = plan.tail.pack(stride, row_chunk, *ints, 0.0, *floats)
        hit = plan.metas[key] = (tail, sizes, row_chunk, large)
        return hit

    # -- the two phases ----------------------------------------------------------------------------

    def enqueue(self, inputs: PostprocessInputs) -> _Pending:
        """Write the argument block, launch (or replay) the call and the copies back; returns without waiting.

        Written for the cold path: one plan lookup, one metadata lookup, int64 item assignments into the pinned
        argument block (its metadata tail is copied only when it changed), one graph launch. Where kernels/_host.c
        was built, a replayed call with a float threshold and no mapping takes these steps in one C call
        (enqueue_replay: on the H200 -2.4 to -14 us per call at p50 against the Python steps around call_words).
        """
        replay = self._c_replay
        if replay is not None:  # kernels/_host.c: the common replayed call's steps below in one C call
            pending = replay(self, inputs)
            if pending is not None:
                # host: replayed
                return pending
        logits, boxes, masks = inputs.logits, inputs.boxes, inputs.masks
        signature = (logits.shape, masks.shape, logits.dtype, boxes.dtype, masks.dtype)
        plan = self._plans.get(signature) or self._new_plan(inputs, signature)
        # host: plan
        layout = plan.layout
        metas = inputs.preprocess
        meta_key = metas[0]._key if len(metas) == 1 else b"".join(map(_cache_key, metas))  # keys are prefix-free
        meta = plan.metas.get(meta_key) or self._new_meta(plan, metas, meta_key, tuple(masks.shape[-2:]))
        # host: metadata
        self._seq = seq = self._seq + 1
        stream = torch._C._cuda_getCurrentRawStream(self._device_index) if self._cuda else 0
        # host: stream
        if not layout.slots:  # nothing to launch: an empty header, and the sequence number still goes up and back
            self._out[: layout.strings_start].zero_()
            self._args_np[:ARG_IMAGES] = 0  # the sequence number and zeroed counters (the copy back's ticket)
            self._args_np[0] = seq
            self._args_np[ARG_WORKSPACE : ARG_HOST_RESULT + 1] = self._buffers  # where the copy back reads / writes
            self._args_tail = None  # the row chunk was zeroed
            self._args_dev[:ARG_IMAGES].copy_(self._args_host[:ARG_IMAGES], non_blocking=self._pin)
            self._copy_empty_back()
            return _pending((inputs, plan, meta[1], seq, stream, ()))

        keep = ()
        threshold = inputs.threshold
        if threshold.__class__ is float:
            thr_addr, num_thr, thr_scalar = self._dummy_f_addr, -1, threshold
        elif isinstance(threshold, torch.Tensor) and threshold.dim() == 1:
            thr = threshold.to(self.device, torch.float32).contiguous()
            keep = (thr,)
            thr_addr, num_thr, thr_scalar = thr.data_ptr(), thr.numel(), 0.0
        else:
            thr_addr, num_thr, thr_scalar = self._dummy_f_addr, -1, float(threshold)
        mapping = inputs.class_mapping
        if mapping is None:
            map_addr, num_map = self._dummy_i_addr, -1
        else:
            mapping = mapping.to(self.device, torch.int64).contiguous()
            keep = (*keep, mapping)
            map_addr, num_map = mapping.data_ptr(), mapping.numel()
        queries = layout.queries
        max_det = queries if inputs.max_detections is None else min(int(inputs.max_detections), queries)
        # host: scalars
        if not -_F32_LIMIT < thr_scalar < _F32_LIMIT:  # rare (NaN, or past float32's range): no call otherwise
            thr_scalar = _packable_f32(thr_scalar)
        c_host = self._c_host
        if c_host is not None:  # the block's head in one call (the same words as below)
            c_host.call_words(
                self._args_mv, seq, logits, boxes, masks, thr_addr, num_thr, map_addr, num_map, inputs.num_classes,
                max_det, self._buffers,
            )  # fmt: skip
        else:
            words = self._args_q
            words[ARG_SEQ] = seq
            words[ARG_LOGITS] = logits.data_ptr()
            words[ARG_LOGITS + 1], words[ARG_LOGITS + 2], words[ARG_LOGITS + 3] = logits.stride()
            words[ARG_BOXES] = boxes.data_ptr()
            words[ARG_BOXES + 1], words[ARG_BOXES + 2], words[ARG_BOXES + 3] = boxes.stride()
            words[ARG_MASKS] = masks.data_ptr()
            words[ARG_MASKS + 1], words[ARG_MASKS + 2], words[ARG_MASKS + 3], words[ARG_MASKS + 4] = masks.stride()
            words[ARG_THR], words[ARG_THR + 1], words[ARG_MAP], words[ARG_MAP + 1] = (
                thr_addr,
                num_thr,
                map_addr,
                num_map,
            )
            words[ARG_NUM_CLASSES], words[ARG_MAX_DET] = inputs.num_classes, max_det
            (
                words[ARG_WORKSPACE],
                words[ARG_WORKSPACE + 1],
                words[ARG_RESULT],
                words[ARG_RESULT + 1],
                words[ARG_HOST_RESULT],
            ) = self._buffers
        # host: tensors
        if meta is not self._args_tail:  # the tail (metadata) differs from the last call's
            self._args_mv[8 * _TAIL_WORD : 8 * plan.args.words] = meta[0]
            self._args_tail = meta
        self._args_f[plan.args.meta_float] = thr_scalar
        # host: tail
        if not self.use_cuda_graph:
            self._launch_all(plan, meta[3])
            return _pending((inputs, plan, meta[1], seq, stream, keep))
        graph = plan.graphs[meta[3]]
        if graph is not None:
            if not (graph[1] and self._graph_launch is not None and self._graph_launch(graph[1], stream) == 0):
                self._replay_fallback(graph[0])
            # host: launched
            return _pending((inputs, plan, meta[1], seq, stream, keep))
        return self._first_graph_call(inputs, plan, meta[1], stream, keep, meta[3])

    def _launch_all(self, plan: _Plan, large: int) -> None:
        """Upload the argument block, then the four kernels of one call (the last one copies the results back), with
        the configuration of the call's frame class (large: 0 or 1; _class_config)."""
        tile_rows, compress_block, mask_warps, write_tiles = self._class_config(large)
        programs = self._mask_programs(mask_warps)
        layout, args_layout, classes, witnesses = plan.layout, plan.args, plan.classes, plan.witnesses
        words = args_layout.words
        launch = self._launch
        self._signature = self._direct_signature(*witnesses)
        launch(upload_kernel, (1, 1, 1), (self._args_host, self._args_dev, words), {"BLOCK": _UPLOAD_BLOCK}, 2)
        batch, queries, slots = layout.batch, layout.queries, layout.slots
        args = self._args_dev
        a32, af = args.view(torch.int32), args.view(torch.float32)
        mi, mf = args_layout.meta_int, args_layout.meta_float
        metai, metaf = a32[mi : mi + META_INTS * batch], af[mf : mf + 4 + META_FLOATS * batch]
        logits_w, boxes_w, masks_w = witnesses
        query_buf, cand_buf, qregion = self._scratch_views
        tables = self._tables
        nsplit = max(1, min(triton.cdiv(queries * classes, self.select_block), self.max_split))
        prefix_block = min(self.prefix_block, max(_PREFIX_BLOCK_MIN, triton.next_power_of_2(slots)))
        # Constexprs in the kernels' parameter order: a direct launch passes their values positionally.
        select = dict(
            USE_LIBDEVICE=self._use_libdevice, BLOCK=self.select_block, CB=self.rank_block, SRC_BLOCK=_SRC_BLOCK,
            TC=self.tile_cols, PDL=self.pdl,
        )  # fmt: skip
        launch(
            select_kernel, (batch, nsplit + queries, 1),
            (
                args, logits_w, boxes_w, masks_w, self._dummy_f, self._dummy_i, metai, metaf, query_buf, cand_buf,
                qregion, tables, queries, classes, nsplit, layout.count_word, layout.record_word,
            ),
            select, self.select_warps,
        )  # fmt: skip
        count = dict(
            TR=tile_rows, TC=self.tile_cols, PBLOCK=prefix_block, SBLOCK=self.scan_block, SR=self.sure_rows,
            SC=self.sure_cols, USE_ASM=self._use_libdevice, PDL=self.pdl,
        )  # fmt: skip
        launch(
            count_kernel, (programs, 1, 1),
            (
                args, masks_w, queries, slots, metai, query_buf, qregion, tables, programs, layout.count_word,
                layout.record_word,
            ),
            count, mask_warps,
        )  # fmt: skip
        write = dict(
            TR=tile_rows, TC=self.tile_cols, PBLOCK=prefix_block, SBLOCK=self.scan_block, CH=self.chunk_block,
            NT=write_tiles, PDL=self.pdl,
        )  # fmt: skip
        launch(
            write_kernel, (programs, 1, 1), (args, slots, tables, programs), write, mask_warps,
        )  # fmt: skip
        launch(
            compress_kernel, (slots, 1, 1),
            (
                args, self._u8, self._flag_host, queries, slots, metai, layout.count_word, layout.string_word,
                layout.strings_start, tables,
            ),
            {
                "CBLK": compress_block, "PMAX": _COMPRESS_PARTS, "PART_MIN": self.compress_part_min,
                "IBLOCK": _IMAGE_BLOCK, "SPINS": _PART_SPINS if self._cuda else 1, "USE_ASM": self._use_libdevice,
                "PDL": self.pdl,
            },
            self.compress_warps,
        )  # fmt: skip

    def _first_graph_call(
        self, inputs: PostprocessInputs, plan: _Plan, sizes: list, stream: int, keep: tuple, large: int
    ) -> _Pending:
        """First call of a plan and frame class (since the per-slot buffers last grew): compute it with plain
        launches, then capture the same work as a CUDA graph for later calls of the class (after this call's copy
        has landed: the capture must not race it). On a plan's first call the other frame class's graph is
        captured too, after one run of this call on that class's kernels (which compiles them; this call's own
        run then overwrites its results): so the first call of a new frame size replays a graph whichever its
        class, instead of compiling and capturing (issue 5: at most 2x a warm call).

        A graph bakes in every pointer and scalar argument of its launches; the caller's tensors, thresholds,
        mapping, metadata, and the workspace and result buffers (which grow with the frame size and the scene) are
        all data in the argument block, so what it depends on is the plan (B, Q, C, dtypes), the per-slot scratch
        and the argument block itself (growing those, only for a larger plan, drops every graph) and the tuning
        attributes that are launch arguments (read here: set them before the first call; the row chunks and the
        frame class are read when a frame size is first seen).
        """
        other = 1 - large
        shared = self._class_config(other) == self._class_config(large)  # then both classes replay one graph
        ahead = plan.graphs[other] is None and not shared
        if ahead:
            self._launch_all(plan, other)
            torch.cuda.current_stream(self.device).synchronize()
            self._flag_mv[0] = -1  # that run wrote this call's number: the wait below must see the next run's
        self._launch_all(plan, large)
        pending = _Pending(inputs, plan, sizes, self._seq, stream, keep)
        self._wait(pending)
        if self._capture(plan, large):
            if shared:
                plan.graphs[other] = plan.graphs[large]
            elif ahead:
                self._capture(plan, other)
        return pending

    def _class_config(self, large: int) -> tuple[int, int, int, int]:
        """What a frame class changes in the launches: tile rows, compress block, count/write warps and the tiles of
        an item whose words the write pass loads at once (all of an item's at the class's row chunk; classes of equal
        configurations share compiled kernels and a graph)."""
        tile_rows = self.tile_rows_large if large else self.tile_rows
        row_chunk = self.row_chunk_large if large else self.row_chunk
        tiles = min(self.write_tiles, triton.next_power_of_2(triton.cdiv(row_chunk, tile_rows)))
        if large:
            return tile_rows, self.compress_block_large, self.mask_warps_large, tiles
        return tile_rows, self.compress_block, self.mask_warps, tiles

    def _mask_programs(self, warps: int) -> int:
        """Programs of the count and write passes: on a GPU every one that fits on the SMs at once (_MASK_WARPS_PER_SM
        warps an SM, registers capped to fit: compile_options), under the interpreter `programs`."""
        return max(1, _MASK_WARPS_PER_SM // warps) * self._sms if self._sms else self.programs

    def _capture(self, plan: _Plan, large: int) -> bool:
        """Capture the plan's graph of one frame class; False (and plain launches from now on) where capture is not
        supported (driver, Triton version)."""
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._launch_all(plan, large)
        except Exception:
            self.use_cuda_graph = False
            return False
        if self.graph_count >= _MAX_GRAPHS:
            self._drop_graphs()
        try:
            handle = graph.raw_cuda_graph_exec() if self._graph_launch is not None else 0
        except (AttributeError, RuntimeError):  # a torch without the accessor: its own replay
            handle = 0
        plan.graphs[large] = (graph, handle)
        self.graph_captures += 1
        return True

    def _replay_fallback(self, graph: torch.cuda.CUDAGraph) -> None:
        """torch's own replay() of a captured graph, for good, where the driver's cuGraphLaunch is unavailable or
        failed (replay() first refreshes the random-number state with two fill kernels: this graph draws none)."""
        self._graph_launch = self._driver_launch = None
        self._launch_address = 0
        graph.replay()

    @property
    def graph_count(self) -> int:
        """CUDA graphs held now (one per plan and frame class while the buffers keep their size; classes of equal
        configurations share one)."""
        return len({id(graph) for plan in self._plans.values() for graph in plan.graphs if graph is not None})

    def _drop_graphs(self) -> None:
        """Forget every captured graph (they point at buffers about to be replaced)."""
        for plan in self._plans.values():
            plan.graphs = [None, None]

    def _launch(self, kernel, grid: tuple[int, int, int], args: tuple, constexprs: dict, num_warps: int) -> None:
        """Launch a Triton kernel; on CUDA, straight through its compiled handle once one fits these arguments.

        The JIT's own launch path costs ~10-40 us of Python per launch on the H100's host (binding, specialisation
        key, option parsing). The compiled kernel is valid for every call whose arguments specialise the same way
        (see _direct_signature; every integer argument is do_not_specialize) with the same constexprs and options.
        """
        options = compile_options(kernel, num_warps, bool(constexprs.get("PDL")))
        if self._signature is None:
            kernel[grid](*args, **constexprs, **options)
            return
        key = (id(kernel), num_warps, *constexprs.values(), *self._signature)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = kernel[grid](*args, **constexprs, **options)
            if compiled is not None and hasattr(compiled, "run"):
                self._compiled[key] = compiled
            return
        compiled[grid](*args, *constexprs.values())

    def _direct_signature(self, *witnesses: torch.Tensor) -> tuple | None:
        """What the compiled kernels are specialised on, or None where only the JIT path is safe.

        The kernels take only held buffers (torch allocations and views at multiples of 16 bytes, so 16-byte
        aligned) and the typed witnesses of the caller's dtypes; the caller's tensors are addresses in the
        argument block, and so are the workspace and result buffers with their capacities: every integer argument
        is a size or offset of the plan's layout, far inside int32 range.
        """
        if not self.direct_launch:
            return None
        return tuple(w.dtype for w in witnesses)

    def _copy_empty_back(self) -> None:
        """For a call without slots (Q = 0): the zeroed header into the pinned host buffer, then the call's sequence
        number (the host waits on it), after the argument copy on the stream (so no PDL)."""
        words = self._out_cap // 8
        nprog = max(1, min(triton.cdiv(words, _COPY_BLOCK), _MAX_COPY_PROGRAMS))
        self._launch(
            copy_back_kernel, (nprog, 1, 1),
            (self._args_dev, self._flag_host, nprog),
            {"BLOCK": _COPY_BLOCK, "USE_ASM": self._use_libdevice, "PDL": False}, 4,
        )  # fmt: skip

    def _wait(self, handle: _Pending) -> None:
        """Spin on the pinned sequence flag (cheaper than an event); poll the call's stream now and then so
        that a failed launch raises instead of spinning forever."""
        flag, seq = self._flag_mv, handle.seq
        if flag[0] == seq or self.device.type != "cuda":
            return
        spins = 0
        while flag[0] != seq:
            spins += 1
            if spins % _SPIN_CHECK == 0 and self._stream_idle(handle.stream) and flag[0] != seq:
                raise RuntimeError(f"triton post-processing: call {seq} finished without its result copy")

    def _stream_idle(self, stream: int) -> bool:
        """Whether every piece of work on the raw CUDA stream is done (raises if one of them failed). Raw 0 is the
        default stream; ExternalStream(0) would hand out an unrelated stream from torch's pool instead."""
        if stream == 0:
            return torch.cuda.default_stream(self.device).query()
        return torch.cuda.ExternalStream(stream, device=self.device).query()

    def finish(self, handle: _Pending) -> list[ImageDetections]:
        """Wait for the copies, re-run with larger buffers if a capacity was exceeded, and slice the results.

        While the GPU still works: the detections' arrays, and a rehearsal of the unpacking (_in_flight).
        """
        plan = handle.plan
        layout = plan.layout
        records = plan.records
        if records is None or records[0] is not self._host_i32:
            records = plan.records = _record_views(layout, self._host_i32)
        arrays = None
        if self._flag_mv[0] != handle.seq:
            arrays = self._in_flight(plan, handle.seq, handle.stream, records)
            # host: in_flight
            self._wait(handle)
            # host: waited
        if layout.slots:
            if self._host_q[STALLED_WORD] == handle.seq:
                raise RuntimeError(f"triton post-processing: call {handle.seq}: a compress part waited in vain")
            ws_needed, out_needed = _NEEDED.unpack_from(self._host_mv)
            if ws_needed > self._ws_cap or out_needed > self._out_cap:
                self.reruns += 1
                self._ensure_workspace(ws_needed)
                self._ensure_out(out_needed)
                return self.finish(self.enqueue(handle.inputs))
            # host: header
        results = self._unpack(plan, handle.sizes, self._host_mv, records, arrays)
        if plan.rehearsal is None and any(map(len, results)):
            plan.rehearsal = self._rehearsal(plan, handle.sizes)
        return results

    def _in_flight(self, plan: _Plan, seq: int, stream: int, records: tuple) -> list[tuple] | None:
        """What finish does while call `seq` is still on the GPU, each step only while its flag is not up: the
        detections' arrays as soon as the count pass has put their records into the host buffer (real work), and
        between checks a step of the rehearsal; after the rehearsal it waits for the records (the arrays then cost
        nothing after the flag). The arrays, or None where the flag came up first.

        The rehearsal runs the unpacking's steps on a private copy of an earlier result of the same plan, and drops
        their objects: it brings the code and objects the real unpacking touches back into the CPU's caches, from
        which the caller's work between calls (the model) evicted them. It stops at the flag, where the real
        unpacking can start (on a host left cold by idling or other work, a whole rehearsal outlasts a 720p call's
        GPU work)."""
        flag, ready = self._flag_mv, self._host_q
        steps = iter(plan.rehearsal if plan.rehearsal is not None and self.rehearse_unpack else ())
        arrays, idle = None, 0
        while flag[0] != seq:
            if arrays is None and ready[RECORDS_READY_WORD] == seq:  # counts and records landed: arrays now
                arrays = _arrays(plan, self._host_mv, records)
                self.early_arrays += 1
                # host: arrays
                continue
            step = next(steps, None)
            if step is not None:
                step()
            elif arrays is not None:
                return arrays
            else:  # rehearsed, the records still on their way: read the two words until one of them changes
                idle += 1
                if idle % _SPIN_CHECK == 0 and (not self._cuda or self._stream_idle(stream)):
                    return None  # nothing more will land (off CUDA it all has by now); _wait tells a failed call
        if next(steps, None) is not None:
            self.rehearsals_cut += 1
        return arrays

    def _rehearsal(self, plan: _Plan, sizes: list[tuple[int, int]]) -> tuple:
        """The rehearsal's steps (_in_flight), on a private copy of the result just unpacked: (with the Python
        steps) its strings' spans, then its masks, _REHEARSAL_STEP_STRINGS a step, by the real unpacking's functions
        (C or Python); strings cut after _REHEARSAL_STRING_BYTES (a string past the cut comes out shorter: a
        rehearsal does not mind)."""
        layout = plan.layout
        arrays = _arrays(plan, self._host_mv, plan.records)
        spans = _image_spans(layout, self._host_mv, arrays)
        used = max((max(ends[1::2]) for ends in spans if ends), default=layout.strings_start)
        end = min(used, layout.strings_start + _REHEARSAL_STRING_BYTES)
        copy = np.array(self._host_i32[: (end + 3) // 4])
        view = memoryview(copy).cast("B")  # its header holds the same spans
        step = _REHEARSAL_STEP_STRINGS
        c_host = self._c_host
        if c_host is not None:  # the C steps check every string against the copy's end: its spans cut there
            at, stride = plan.spans
            header = copy[at // 4 : (at + stride * layout.batch) // 4].view(np.int64)  # int32 words
            np.minimum(header, end, out=header)
            return tuple(
                partial(c_host.masks, size, view, at + stride * b + 16 * i, min(step, n - i), RleMask)
                for b, (size, (n, *_rows)) in enumerate(zip(sizes, arrays, strict=True))
                for i in range(0, n, step)
            )
        steps = [partial(_image_spans, layout, view, _arrays(plan, view, _record_views(layout, copy)))]
        chunk = 2 * step  # bounds: begin, end per string
        for size, bounds in zip(sizes, spans, strict=True):
            steps += [partial(_masks, size, view, bounds[i : i + chunk]) for i in range(0, len(bounds), chunk)]
        return tuple(steps)

    def _unpack(
        self,
        plan: _Plan,
        sizes: list[tuple[int, int]],
        view: memoryview,
        records: tuple,
        arrays: list[tuple] | None = None,
    ) -> list[ImageDetections]:
        """Host objects from a result buffer (view: its bytes, records: _record_views of its int32 words): each
        image's arrays (`_arrays`, or `arrays` made from the same buffer while the masks were still in flight) and a
        bytes copy of each string's slice of the buffer, built by C-level maps (the fewest Python-level steps per
        call: this runs on a cold host; the strings lie apart, at upper bounds of their lengths, so one copy of them
        all would copy the gaps too)."""
        if arrays is None:
            arrays = _arrays(plan, view, records)
        c_host = self._c_host
        if c_host is not None:
            at, stride = plan.spans
        else:
            spans = _image_spans(plan.layout, view, arrays)
        results = []
        for b, (n, boxes, scores, classes) in enumerate(arrays):
            if not n:
                results.append(ImageDetections.empty())
                continue
            if c_host is not None:
                masks = c_host.masks(sizes[b], view, at + stride * b, n, RleMask)
            else:
                masks = _masks(sizes[b], view, spans[b])
            # host: masks
            results.append(ImageDetections(boxes, scores, classes, masks))
            # host: detections
        return results

    @property
    def resident_device_bytes(self) -> int:
        """Device memory this instance keeps between calls (workspace, result buffer, scratch, tables, the
        argument block and the typed witnesses)."""
        held = [self._workspace, self._out, self._scratch, self._tables, self._args_dev, *self._witness.values()]
        return sum(t.numel() * t.element_size() for t in held)

    def __call__(self, inputs: PostprocessInputs) -> list[ImageDetections]:
        return self.finish(self.enqueue(inputs))


_F32_LIMIT = 2.0**128 - 2.0**103  # the smallest magnitude float32 rounds to infinity (half an ulp past FLT_MAX)


def _packable_f32(value: float) -> float:
    """value as struct's "f" packs it, rounded to float32; past float32's range it is +-inf, as numpy and torch
    round it (struct itself would raise)."""
    if -_F32_LIMIT < value < _F32_LIMIT or value != value:
        return value
    return math.copysign(math.inf, value)


@cache
def _spans(n: int) -> struct.Struct:
    """(begin, end) of n strings in the result header."""
    return struct.Struct(f"<{2 * n}q")


_NEEDED = struct.Struct("<2q")  # result header: workspace entries and result bytes the call needed


def _span_bytes(layout: PackedLayout) -> tuple[int, int]:
    """Where the strings' (begin, end) int64 pairs lie in a result buffer: the byte of image 0's first pair, and
    the bytes per image (a pair per slot)."""
    return 8 * layout.string_word, 16 * layout.queries


def _image_spans(layout: PackedLayout, view: memoryview, arrays: list[tuple]) -> list[tuple]:
    """Per image of a result buffer its strings' (begin, end, begin, end, ...), bytes from the buffer's start (the
    detection counts from `_arrays`)."""
    at, stride = _span_bytes(layout)
    return [_spans(n).unpack_from(view, at + stride * b) if n else () for b, (n, *_rows) in enumerate(arrays)]


def _arrays(plan: _Plan, view: memoryview, records: tuple) -> list[tuple]:
    """Per image of a result buffer (view: its bytes, records: _record_views of its int32 words): its detection
    count and numpy copies of its rows of the boxes, scores and class ids (None without detections)."""
    layout = plan.layout
    if not layout.slots:
        return [(0, None, None, None)] * layout.batch
    _, boxes, classes, scores = records
    queries, arrays = layout.queries, []
    for b, n in enumerate(plan.counts.unpack_from(view, 8 * layout.count_word)):
        first, last = b * queries, b * queries + n
        rows = (boxes[first:last].copy(), scores[first:last].copy(), classes[first:last].copy()) if n else (None,) * 3
        arrays.append((n, *rows))
    return arrays


_rle = partial(tuple.__new__, RleMask)  # RleMask from a (size, counts) pair without a Python-level __new__


def _masks(size: tuple[int, int], view: memoryview, bounds: tuple) -> list[RleMask]:
    """An RleMask per string of the buffer (bounds: begin, end, begin, end, ...), each a bytes copy of its slice,
    by C-level maps."""
    ends = iter(bounds)
    return list(map(_rle, zip(repeat(size), map(bytes, map(view.__getitem__, map(slice, ends, ends))))))


def _record_views(layout: PackedLayout, words: np.ndarray) -> tuple:
    """The record arrays of the result layout as views of the host buffer's int32 words (kept per plan until
    the buffer is replaced): boxes [slots, 4], class ids [slots], scores [slots] (float32)."""
    slots, at = layout.slots, layout.record_word
    boxes = words[at : at + 4 * slots].reshape(slots, 4)
    classes = words[at + 4 * slots : at + 5 * slots]
    scores = words[at + 5 * slots : at + 6 * slots].view(np.float32)
    return words, boxes, classes, scores


def compile_options(kernel, num_warps: int, pdl: bool) -> dict:
    """Triton options of a launch: no fp fusion (the reference's rounding), with pdl programmatic dependent
    launch, and for the count and write passes a register cap that keeps _MASK_WARPS_PER_SM warps on an SM (their
    grid, _mask_programs: uncapped, ptxas takes more registers than fit); the test that compiles the kernels for
    sm_90 uses the same options."""
    options = {"num_warps": num_warps, "enable_fp_fusion": False}
    if kernel is count_kernel or kernel is write_kernel:
        options["maxnreg"] = 65536 // (max(_MASK_WARPS_PER_SM, num_warps) * 32)
    if pdl:
        options["launch_pdl"] = True
    return options


def _has_gdc() -> bool:
    """Whether this Triton has the grid dependency wait the kernels use (tl.extra.cuda.gdc_wait)."""
    try:
        from triton.language.extra import cuda
    except ImportError:
        return False
    return hasattr(cuda, "gdc_wait")


def _missing_c_host(cuda: bool, module: ModuleType | None) -> str | None:
    """The warning for a CUDA instance without kernels/_host.c (its host steps then run in Python, measurably
    slower); None where it was built, or off CUDA (the interpreter's tests: there it does not matter)."""
    if not cuda or module is not None:
        return None
    return (
        "triton post-processing: kernels/_host.c was not built, so the per-call host steps run in Python (10-16 us "
        "slower per call on an H200); reinstall with a C compiler (pip install -e .) or run scripts/build_host.py"
    )


def _driver_graph_launch():
    """cuGraphLaunch(exec, stream) from the CUDA driver library, or None where it cannot be loaded."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
        launch = driver.cuGraphLaunch
    except (OSError, AttributeError):
        return None
    launch.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    launch.restype = ctypes.c_int
    return launch


def _most_counts(meta: PreprocessMeta, row_chunk: int) -> int:
    """The most counts (columns x row chunks) a detection's strip can have in this frame: at most max(W, W')
    columns of at most max(H, H' + 1) rows (kernels/triton_masks.py, query_region)."""
    (height, width), (hp, wp) = meta.original_size, meta.size_after_preprocessing
    return max(width, wp) * -(-max(height, hp + 1) // row_chunk)


def _meta_ints(meta: PreprocessMeta, mask_hw: tuple[int, int]) -> list[int]:
    """H, W, H', W', offset x, offset y, then the letterbox crop rows/cols of the mask grid."""
    r0, r1, c0, c1 = mask_crop(meta, mask_hw)
    height, width = meta.original_size
    hp, wp = meta.size_after_preprocessing
    ox, oy = meta.static_crop_offset
    return [height, width, hp, wp, ox, oy, r0, r1, c0, c1]


def _meta_floats(meta: PreprocessMeta) -> list[float]:
    """The box constants of DESIGN.md step 6, each rounded to float32 like the reference's tensors."""
    dh, dw = meta.denorm_size
    pad_left, pad_top, _, _ = meta.pad
    sx, sy = meta.scale
    ox, oy = meta.static_crop_offset
    height, width = meta.original_size
    return [dw, dh, pad_left, pad_top, sx, sy, ox, oy, width, height]
