"""Triton mask kernels: DESIGN.md steps 7-8 for every selected detection of a batch, three launches in all.

A slot is (image b, output rank j); slots at or past the image's detection count hold no detection. No mask
is ever materialised. A pixel p (flat column-major in the H x W canvas) starts a run when its value differs
from pixel p - 1; every value is evaluated with torch's exact fma recipe (DESIGN.md "Bits").

1. `query_region` (run by the selection kernel's programs, one per query, alongside the selection): the
   bounding box of positive source logits (a bilinear value can only be > 0 next to a positive tap, since
   weights are >= 0), mapped to output rows/cols with a margin: a strip of candidate flat positions per column.
   The strip is cut into work items of TC columns x RCH rows (RCH from the argument block: chosen per call
   from the frame sizes). The same programs zero what the count pass adds into (`reset_slot`).
2. `count_kernel` (a fixed grid of P programs looping over all items of the batch, each found from the slots'
   queries and their strips: `_locate`): run boundaries per (column, row chunk), and their sum per scan block
   (SBLOCK consecutive counts of a slot). A tile whose taps all have one sure sign is decided without evaluating
   a pixel (`_item_taps`, `_tile_class`). Each item leaves a record for the write pass (its slot, rows, columns
   and count area), and the last program the batch's totals.
3. `write_kernel` (same items as 2, each from its record): the flat int64 positions of the boundaries, sorted. A
   column's first boundary's rank in its slot is the sum of the slot's counts before it, found by the item
   itself: the scan blocks' sums before its block, then that block's counts (`_column_starts`; no pass of its
   own, so no item waits for a scan).
4. `compress_kernel` (one program per slot): COCO counts and the pycocotools string of each detection, cut into
   parts (the first on the slot's own program, the rest on the last image's programs without a detection), in
   the packed result buffer at an upper bound of the strings before it; then the parts and the string's span into
   the pinned host twin (program 0 also the sizes the call needed); the last program writes the call's sequence
   number.

The workspace holds the scan blocks' sums (a fixed stride per slot), the count area, the boundary bits, then the
boundary positions; its sections are prefix sums over slots, so nothing depends on scheduling. When it is too
small nothing is written past it and the needed size goes into the header for the host to re-run: never a
silent truncation.
"""

from __future__ import annotations

import triton
import triton.language as tl

from kernels.triton_layout import (
    ARG_COPY_TICKET,
    ARG_MASKS,
    ARG_ROW_CHUNK,
    ARG_SEQ,
    ARG_SUM_STRIDE,
    RECORDS_READY_WORD,
    STALLED_WORD,
    host_result_buffer,
    result_buffer,
    workspace_buffer,
)
from kernels.triton_sync import fence_system, wait_for_previous_kernel

__all__ = [
    "QREGION_WORDS",
    "TABLES",
    "compress_kernel",
    "count_kernel",
    "query_region",
    "reset_slot",
    "row_chunk",
    "source",
    "sum_stride",
    "write_kernel",
]

REGION_WORDS = 8  # int32 of a query's region: rowstart, strip length L, first column, ncols, ylo, yhi, xlo, xhi
QREGION_WORDS = REGION_WORDS + 2  # int32 per query (b, q): its REGION_WORDS, work items, count words
TABLES = 3  # int64 arrays of one entry per slot in the table buffer (see _T_*), then room for 8 totals (see _S_*)
# Per slot: boundaries, where they start (a prefix sum); compress's parts' characters (part p of detection a: p A + a).
_T_NB, _T_PBASE, _T_PUB = (tl.constexpr(i) for i in range(TABLES))
_TABLES = tl.constexpr(TABLES)
# The totals after the tables: work items, and where the boundary bits and the boundary positions start in the
# workspace (after the scan blocks' sums and the count area).
_S_ITEMS, _S_BITS, _S_POSITIONS = (tl.constexpr(i) for i in range(3))
_A_MASKS = tl.constexpr(ARG_MASKS)
_A_COPY_TICKET = tl.constexpr(ARG_COPY_TICKET)
_A_SUM_STRIDE = tl.constexpr(ARG_SUM_STRIDE)
_A_SEQ = tl.constexpr(ARG_SEQ)
_RECORDS_READY = tl.constexpr(RECORDS_READY_WORD)
_STALLED = tl.constexpr(STALLED_WORD)
_REGION_WORDS = tl.constexpr(REGION_WORDS)
_QREGION_WORDS = tl.constexpr(QREGION_WORDS)
_A_ROW_CHUNK = tl.constexpr(ARG_ROW_CHUNK)
_SURE = tl.constexpr(2.0**-60)  # taps in (_SURE, _FINITE) give bilinear values > 0 (see _tile_class)
_FINITE = tl.constexpr(2.0**100)
_NARROW_PIXELS = tl.constexpr(2**31 - 1)  # frames up to this many pixels: compress in int32 (tests lower it)
_RECORD_WORDS = tl.constexpr(8)  # an item's record: slot, index in slot, rowstart, L, C0, count words, count base, H
_NO_SPEC = ["Q", "slots", "count_word", "string_word", "strings_start", "record_word", "nprog"]
_COPY_BLOCK = tl.constexpr(1024)  # int64 words per step of the records' copy to the host


@triton.jit
def _source_coord(scale, t):
    """torch's source coordinate of output row or column t (align_corners=False, clamped at 0): the one formula for
    _pixel's taps and weights and for the taps _item_taps / _tile_class decide tiles from."""
    return tl.maximum(tl.fma(scale, t.to(tl.float32) + 0.5, -0.5), 0.0)


@triton.jit
def _pixel(y, x, valid, src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, ylo, yhi, xlo, xhi, scale_h, scale_w):
    """Canvas pixels (y, x) of the mask: upsampled logit > 0 (torch bilinear, align_corners=False). y is a row of
    rows (or one row) and x a column of columns: the bilinear weights are separable, so each row's and each
    column's taps and weights are computed once and broadcast; only the loads and the fmas are per pixel."""
    yy = y - oy
    xx = x - ox
    inside = valid & (yy >= ylo) & (yy < yhi) & (xx >= xlo) & (xx < xhi)
    sh = _source_coord(scale_h, yy)
    sw = _source_coord(scale_w, xx)
    i0h = sh.to(tl.int32)
    i0w = sw.to(tl.int32)
    i1h = tl.minimum(i0h + 1, ih - 1)
    i1w = tl.minimum(i0w + 1, iw - 1)
    h1 = sh - i0h.to(tl.float32)
    w1 = sw - i0w.to(tl.float32)
    h0 = 1.0 - h1
    w0 = 1.0 - w1
    row0 = src + (r0 + i0h).to(tl.int64) * s_mh
    row1 = src + (r0 + i1h).to(tl.int64) * s_mh
    col0 = (c0 + i0w).to(tl.int64) * s_mw
    col1 = (c0 + i1w).to(tl.int64) * s_mw
    v00 = tl.load(row0 + col0, mask=inside, other=0.0).to(tl.float32)
    v01 = tl.load(row0 + col1, mask=inside, other=0.0).to(tl.float32)
    v10 = tl.load(row1 + col0, mask=inside, other=0.0).to(tl.float32)
    v11 = tl.load(row1 + col1, mask=inside, other=0.0).to(tl.float32)
    w0 = tl.broadcast_to(w0, v00.shape)
    h0 = tl.broadcast_to(h0, v00.shape)
    top = tl.fma(w0, v00, w1 * v01)
    bottom = tl.fma(w0, v10, w1 * v11)
    value = tl.fma(h0, top, h1 * bottom)
    return inside & (value > 0.0)


@triton.jit
def _tap_index(scale, t, n):
    """_pixel's first tap index (source row or column, before the crop offset) of output coordinate t (int32)."""
    return tl.minimum(_source_coord(scale, t).to(tl.int32), n - 1)


@triton.jit
def _item_taps(
    t0, t1, k0, rowstart, cstart, ncols, H, W, src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, yhi, xhi, sc_h, sc_w,
    TC: tl.constexpr, SR: tl.constexpr, SC: tl.constexpr,
):  # fmt: skip
    """The sure signs of the taps of a work item (strip rows t0..t1, strip columns k0..k0 + TC), for _tile_class:
    the inside pixels' end row e and end column kb (a strip starts at its region's first row and column; its last
    row, yhi, and a full-height region's extra column, xhi, are outside; a strip's wrap row, row 0 of the next
    column past a strip that reaches the frame's bottom, is never inside: such a strip starts below row 0, so its
    region or its crop does too), the first tap row ra, and `sure`: per tap row ra + i, bit i when all of its taps
    lie in (_SURE, _FINITE) and bit 32 + i when all are <= 0. Taps past SR rows or SC columns: no bits."""
    tl.static_assert(SR <= 32)  # a bit per tap row in each half of an int64
    e = tl.minimum(tl.minimum(yhi + oy, H) - rowstart, t1)
    kb = tl.minimum(tl.minimum(tl.minimum(xhi + ox, W) - cstart, ncols), k0 + TC)
    ra = _tap_index(sc_h, rowstart + t0 - oy, ih)
    sure = tl.zeros((), tl.int64)
    if SR > 0:  # noqa: SIM102 (a compile-time branch: SR = 0 compiles no tap block)
        if (t0 < e) & (k0 < kb):
            rb = tl.minimum(_tap_index(sc_h, rowstart + e - 1 - oy, ih) + 1, ih - 1)
            ca = _tap_index(sc_w, cstart + k0 - ox, iw)
            cb = tl.minimum(_tap_index(sc_w, cstart + kb - 1 - ox, iw) + 1, iw - 1)
            rr = ra + tl.arange(0, SR)[:, None]
            cc = ca + tl.arange(0, SC)[None, :]
            taps = (rr <= rb) & (cc <= cb)
            v = tl.load(src + (r0 + rr).to(tl.int64) * s_mh + (c0 + cc).to(tl.int64) * s_mw, mask=taps, other=0.0)
            v = v.to(tl.float32)
            kind = tl.where(taps, ((v > _SURE) & (v < _FINITE)).to(tl.int32) + (v <= 0.0).to(tl.int32) * 256, 0)
            per_row = tl.sum(kind, axis=1)  # past SC columns a row has more taps (cb - ca + 1) than are tallied
            n = cb - ca + 1
            bits = (per_row % 256 == n).to(tl.int64) | ((per_row // 256 == n).to(tl.int64) << 32)
            sure = tl.sum(bits << tl.arange(0, SR).to(tl.int64), axis=0)
    return e, kb, ra, sure


@triton.jit
def _tile_class(rg, k0, rowstart, e, kb, ra, sure, oy, ih, sc_h, TR: tl.constexpr, SR: tl.constexpr):
    """Whether every inside pixel of the tile at strip rows rg.. of an item (_item_taps) is surely set (1) or surely
    clear (0), else -1; and its inside rows (tile rows 0..hi). A bilinear value is a combination of its four taps
    with weights >= 0, at least one of them >= 1/2 (h0 = 1 - h1, w0 = 1 - w1), and each of torch's three fmas adds
    two terms of one sign: if every tap lies in (_SURE, _FINITE) the value is > 0 (no underflow to 0, no overflow
    to inf); if every tap is <= 0 it is <= 0 or NaN, never > 0. The taps of the tile's inside pixels lie between
    those of its first and last inside row (and the item's columns): _pixel's tap indices come from the same
    _source_coord and are monotone in the pixel."""
    hi = tl.minimum(e - rg, TR)
    cls = tl.full((), -1, tl.int32)
    if (hi <= 0) | (k0 >= kb):
        cls = tl.full((), 0, tl.int32)  # nothing inside: every bit clear
    elif SR > 0:
        first = _tap_index(sc_h, rowstart + rg - oy, ih) - ra
        last = tl.minimum(_tap_index(sc_h, rowstart + rg + hi - 1 - oy, ih) + 1, ih - 1) - ra
        if last < SR:
            rows = ((tl.full((), 2, tl.int64) << (last - first)) - 1) << first  # tap rows first..last
            if (sure & rows) == rows:
                cls = tl.full((), 1, tl.int32)
            elif ((sure >> 32) & rows) == rows:
                cls = tl.full((), 0, tl.int32)
    return cls, hi


@triton.jit
def _boundaries(
    rg, k, k0, carry, rowstart, L, cstart, ncols, H, HW, src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, ylo, yhi, xlo, xhi,
    sc_h, sc_w, e, kb, ra, sure, TR: tl.constexpr, SR: tl.constexpr,
):  # fmt: skip
    """Run boundaries of a [TC, TR] tile of candidate positions (strips k = k0.., strip rows rg..) as one int64
    word per strip (bit i: strip row rg + i) and the carry for the next tile (its last row's value). Consecutive
    strip rows are consecutive flat positions, so a pixel's predecessor is the bit below it in the word of values
    (or the carry): one reduction per tile, no shuffle of the evaluated pixels (whether it crosses warps is
    Triton's layout choice: 3.6 puts a tile's columns on a warp's lanes and its rows on the warps). A tile that its
    item's taps decide (_tile_class) gets its word of values without evaluating a pixel."""
    tl.static_assert(TR <= 64)  # a tile column's boundaries are the bits of one int64
    cls, hi = _tile_class(rg, k0, rowstart, e, kb, ra, sure, oy, ih, sc_h, TR, SR)
    if cls >= 0:
        ones = tl.where(hi >= 64, -1, (tl.full((), 1, tl.int64) << tl.minimum(hi, 63)) - 1)  # tile rows 0..hi
        values = tl.where((k < kb) & (cls > 0), ones, 0)
    else:
        t = rg + tl.arange(0, TR)
        r = rowstart + t[None, :]
        c = cstart + k[:, None]
        inb = (t[None, :] < L) & (k[:, None] < ncols) & (c.to(tl.int64) * H + r < HW)
        # A strip's wrap row (r = H: row 0 of column c + 1) is never inside (see _item_taps); as row r its
        # pixels are outside too (yy >= Hp >= yhi), so the rows need no wrapping.
        cur = _pixel(r, c, inb, src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, ylo, yhi, xlo, xhi, sc_h, sc_w)
        values = tl.sum(cur.to(tl.int64) << tl.arange(0, TR).to(tl.int64)[None, :], axis=1)  # 0 outside the strip
    # The tile's rows inside the strip and the frame (inb, per strip: a prefix of the rows).
    inside = tl.minimum(L - rg, HW - ((cstart + k).to(tl.int64) * H + rowstart + rg))
    inside = tl.where(k < ncols, tl.minimum(tl.maximum(inside, 0), TR), 0)
    bits = (values ^ ((values << 1) | carry.to(tl.int64))) & ((tl.full((), 1, tl.int64) << inside) - 1)
    return bits, (values >> (TR - 1)) & 1


@triton.jit
def _prev_row(
    k, t0, rowstart, cstart, ncols, H, src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, ylo, yhi, xlo, xhi, sc_h, sc_w
):
    """Value of the pixel just before strip row t0 of strips k (for t0 = 0 the one before the strip's start)."""
    c = cstart + k
    r = rowstart + t0 - 1  # below H: a chunk never starts at the strip's wrap row
    py = tl.where(r >= 0, r, H - 1) + k * 0
    px = tl.where(r >= 0, c, c - 1)
    v = _pixel(py, px, (k < ncols) & (px >= 0), src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, ylo, yhi, xlo, xhi, sc_h, sc_w)
    return v.to(tl.int32)


@triton.jit
def _popcount(word):
    """Set bits of each int64 word (SWAR, on the unsigned bits: shifts must not carry the sign)."""
    x = word.to(tl.uint64, bitcast=True)
    x = x - ((x >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    return ((x * 0x0101010101010101) >> 56).to(tl.int64)


@triton.jit
def source(b, q, args_ptr, metai_ptr, masks_w):
    """Image metadata, source pointer, strides and bilinear scales of query q of image b."""
    mi = metai_ptr + b * 10
    H = tl.load(mi)
    W = tl.load(mi + 1)
    Hp = tl.load(mi + 2)
    Wp = tl.load(mi + 3)
    ox = tl.load(mi + 4)
    oy = tl.load(mi + 5)
    r0 = tl.load(mi + 6)
    r1 = tl.load(mi + 7)
    c0 = tl.load(mi + 8)
    c1 = tl.load(mi + 9)
    masks_ptr = tl.load(args_ptr + _A_MASKS).to(masks_w.dtype)
    s_mb = tl.load(args_ptr + _A_MASKS + 1)
    s_mq = tl.load(args_ptr + _A_MASKS + 2)
    s_mh = tl.load(args_ptr + _A_MASKS + 3)
    s_mw = tl.load(args_ptr + _A_MASKS + 4)
    src = masks_ptr + b * s_mb + q * s_mq
    sc_h = tl.math.div_rn((r1 - r0).to(tl.float32), Hp.to(tl.float32))
    sc_w = tl.math.div_rn((c1 - c0).to(tl.float32), Wp.to(tl.float32))
    return H, W, Hp, Wp, ox, oy, r0, r1, c0, c1, src, s_mh, s_mw, sc_h, sc_w


@triton.jit
def row_chunk(args_ptr):
    """Rows per work item of this call (int32), from the argument block."""
    return tl.load(args_ptr + _A_ROW_CHUNK).to(tl.int32)


@triton.jit
def _region(rp):
    """A query's REGION_WORDS at rp (query_region's order)."""
    return (
        tl.load(rp), tl.load(rp + 1), tl.load(rp + 2), tl.load(rp + 3),
        tl.load(rp + 4), tl.load(rp + 5), tl.load(rp + 6), tl.load(rp + 7),
    )  # fmt: skip


@triton.jit
def query_region(
    rp, rch, H, W, Hp, Wp, ox, oy, r0, r1, c0, c1, src, s_mh, s_mw, sc_h, sc_w, SRC_BLOCK: tl.constexpr,
    TC: tl.constexpr,
):  # fmt: skip
    """The candidate strip of a query's mask (whether it is selected or not: the selection runs alongside; the
    image's metadata, the mask's source and scales are source's) into its QREGION_WORDS at rp: the bounding box
    of its positive source logits inside the letterbox crop (a bilinear value can only be > 0 next to a positive
    tap, since weights are >= 0), mapped to output rows/cols with a margin, as REGION_WORDS, then its work items
    and count words at rch rows per item."""
    ih = r1 - r0
    iw = c1 - c0
    n_src = ih * iw
    rmin = ih
    rmax = tl.full((), -1, tl.int32)
    cmin = iw
    cmax = tl.full((), -1, tl.int32)
    for start in range(0, n_src, SRC_BLOCK):
        o = start + tl.arange(0, SRC_BLOCK)
        ov = o < n_src
        rr = o // iw
        cc = o - rr * iw
        v = tl.load(src + (r0 + rr).to(tl.int64) * s_mh + (c0 + cc).to(tl.int64) * s_mw, mask=ov, other=0.0)
        pos = ov & (v.to(tl.float32) > 0.0)
        rmin = tl.minimum(rmin, tl.min(tl.where(pos, rr, ih), axis=0))
        rmax = tl.maximum(rmax, tl.max(tl.where(pos, rr, -1), axis=0))
        cmin = tl.minimum(cmin, tl.min(tl.where(pos, cc, iw), axis=0))
        cmax = tl.maximum(cmax, tl.max(tl.where(pos, cc, -1), axis=0))
    # Output rows/cols whose taps can reach a positive source pixel, with a margin for rounding.
    ylo = tl.maximum(((rmin.to(tl.float32) - 0.5) / sc_h - 0.5).to(tl.int32) - 2, 0)
    yhi = tl.minimum(((rmax.to(tl.float32) + 1.5) / sc_h - 0.5).to(tl.int32) + 3, Hp)
    xlo = tl.maximum(((cmin.to(tl.float32) - 0.5) / sc_w - 0.5).to(tl.int32) - 2, 0)
    xhi = tl.minimum(((cmax.to(tl.float32) + 1.5) / sc_w - 0.5).to(tl.int32) + 3, Wp)
    R0 = ylo + oy
    R1 = yhi + oy
    C0 = xlo + ox
    C1 = xhi + ox
    # Candidate positions: strips of rows R0..R1 (R1 = H meaning row 0 of the next column) per column, or, for a
    # full-height region, whole columns plus one more (whose row 0 may end the last run).
    full = (R0 == 0) & (R1 == H)
    rowstart = tl.where(full, 0, R0)
    L = tl.where(full, H, R1 - R0 + 1)
    ncols = tl.where(full, tl.minimum(C1 + 1, W) - C0, C1 - C0)
    ncols = tl.where((rmax >= 0) & (yhi > ylo) & (xhi > xlo), ncols, 0)
    chunks = tl.cdiv(L, rch)
    tl.store(rp, rowstart)
    tl.store(rp + 1, L)
    tl.store(rp + 2, C0)
    tl.store(rp + 3, ncols)
    tl.store(rp + 4, ylo)
    tl.store(rp + 5, yhi)
    tl.store(rp + 6, xlo)
    tl.store(rp + 7, xhi)
    tl.store(rp + 8, tl.cdiv(ncols, TC) * chunks)
    tl.store(rp + 9, ncols * chunks)


@triton.jit
def sum_stride(args_ptr):
    """Scan-block sums per slot (a fixed stride at the workspace's start: slot s's at s * stride), from the
    argument block: at least the most blocks a slot of this call's frames can have."""
    return tl.load(args_ptr + _A_SUM_STRIDE)


@triton.jit
def reset_slot(args_ptr, tab_ptr, s, slots, BLOCK: tl.constexpr):
    """Run by the selection's program of slot s's query (every slot has one), off the ranking's path, before the
    count pass adds into them: the slot's boundary total and its scan-block sums zeroed."""
    tl.store(tab_ptr + _T_NB * slots + s, tl.zeros((), tl.int64))
    ws_ptr, ws_cap = workspace_buffer(args_ptr)
    stride = sum_stride(args_ptr)
    first = s * stride
    end = tl.minimum(first + stride, ws_cap)  # past the capacity the count pass stores nothing (re-run)
    for e0 in range(first, end, BLOCK):
        e = e0 + tl.arange(0, BLOCK)
        tl.store(ws_ptr + e, tl.zeros((BLOCK,), tl.int64), mask=e < end)


@triton.jit
def _slot_work(i, Q, slots, query_ptr, qregion_ptr):
    """Slots i (a block of them): their query (-1 without a detection) and its work items and count words."""
    iv = i < slots
    q = tl.load(query_ptr + i, mask=iv, other=-1)
    src = qregion_ptr + ((i // Q) * Q + q) * _QREGION_WORDS
    active = iv & (q >= 0)
    items = tl.load(src + _REGION_WORDS, mask=active, other=0).to(tl.int64)
    cntw = tl.load(src + _REGION_WORDS + 1, mask=active, other=0).to(tl.int64)
    return q, items, cntw


@triton.jit
def _locate(it, Q, slots, query_ptr, qregion_ptr, PBLOCK: tl.constexpr):
    """Work item `it` of the batch, straight from the selection's queries and their regions (nothing is laid out
    before the count pass): its slot, the slot's query, first item and count-area offset, and the batch's work
    items and count words."""
    s = tl.zeros((), tl.int64)
    q_s = tl.zeros((), tl.int64)
    first = tl.zeros((), tl.int64)
    cbase = tl.zeros((), tl.int64)
    run_items = tl.zeros((), tl.int64)
    run_cntw = tl.zeros((), tl.int64)
    for start in range(0, slots, PBLOCK):
        i = start + tl.arange(0, PBLOCK)
        q, items, cntw = _slot_work(i, Q, slots, query_ptr, qregion_ptr)
        istart = run_items + tl.cumsum(items, axis=0) - items
        mine = (istart <= it) & (it < istart + items)  # at most one slot: the one holding item `it`
        s += tl.sum(tl.where(mine, i, 0), axis=0)
        q_s += tl.sum(tl.where(mine, q, 0).to(tl.int64), axis=0)
        first += tl.sum(tl.where(mine, istart, 0), axis=0)
        cbase += tl.sum(tl.where(mine, run_cntw + tl.cumsum(cntw, axis=0) - cntw, 0), axis=0)
        run_items += tl.sum(items, axis=0)
        run_cntw += tl.sum(cntw, axis=0)
    return s, q_s, first, cbase, run_items, run_cntw


@triton.jit
def _item_words(rch, TR: tl.constexpr, TC: tl.constexpr):
    """Workspace words of a work item in the bits section: a word per column per tile, then its record."""
    return tl.cdiv(rch, TR) * TC + _RECORD_WORDS


@triton.jit
def _positions(sums_words, count_words, items, rch, TR: tl.constexpr, TC: tl.constexpr):
    """Where the boundary positions start in the workspace: after the scan blocks' sums, the count area and the
    boundary bits (a word per column per tile of every item)."""
    return sums_words + count_words + items * _item_words(rch, TR, TC)


@triton.jit
def _item(local, L, rch, TC: tl.constexpr):
    """Columns, row range and index in the slot's counts of the slot's work item `local` (rch rows per item)."""
    chunks = tl.cdiv(L, rch)
    g = local // chunks
    c = local - g * chunks
    k0 = (g * TC).to(tl.int32)
    k = k0 + tl.arange(0, TC)
    t0 = (c * rch).to(tl.int32)
    t1 = tl.minimum(L, t0 + rch)
    # index of (column k, chunk c) in the slot's counts: column-major, so the counts are in flat position order
    cloc = k.to(tl.int64) * chunks + c
    return k, k0, t0, t1, cloc, chunks


@triton.jit
def _count_items(
    args_ptr, masks_w, Q, slots, metai_ptr, query_ptr, qregion_ptr, tab_ptr, nprog, count_word, record_word,
    TR: tl.constexpr, TC: tl.constexpr, PBLOCK: tl.constexpr, SBLOCK: tl.constexpr, SR: tl.constexpr,
    SC: tl.constexpr, USE_ASM: tl.constexpr,
):  # fmt: skip
    """This program's work items (items pid, pid + nprog, ... of the batch, found from the selection's queries and
    their regions): evaluate every candidate pixel of the tiles that the item's taps do not decide, keep each
    tile's run boundaries as bits (one int64 word per column), count them per (column, row chunk) into the count
    area and add them to their scan block's sum; each item also leaves its record for the write pass."""
    ws_ptr, ws_cap = workspace_buffer(args_ptr)
    rch = row_chunk(args_ptr)
    stride = sum_stride(args_ptr)
    sums_words = slots * stride
    it = tl.program_id(0).to(tl.int64)
    s, q, first, cbase, total_items, count_words = _locate(it, Q, slots, query_ptr, qregion_ptr, PBLOCK)
    # timeline: count located (s)
    while it < total_items:
        # timeline: count item begin (s) @it
        b = s // Q
        rowstart, L, C0, ncols, ylo, yhi, xlo, xhi = _region(qregion_ptr + (b * Q + q) * _QREGION_WORDS)
        H, W, _Hp, _Wp, ox, oy, r0, r1, c0, c1, src, s_mh, s_mw, sc_h, sc_w = source(
            b, q, args_ptr, metai_ptr, masks_w
        )  # fmt: skip
        k, k0, t0, t1, cloc, chunks = _item(it - first, L, rch, TC)
        positions = _positions(sums_words, count_words, total_items, rch, TR, TC)
        fits = positions <= ws_cap
        cidx = sums_words + cbase + cloc
        words = ws_ptr + sums_words + count_words + it * _item_words(rch, TR, TC) + tl.arange(0, TC)
        # The item's record for the write pass (it starts from it: no search for the slot, no table lookups).
        record = ws_ptr + sums_words + count_words + (it + 1) * _item_words(rch, TR, TC) - _RECORD_WORDS
        tl.store(record, s, mask=fits)
        tl.store(record + 1, it - first, mask=fits)
        tl.store(record + 2, rowstart, mask=fits)
        tl.store(record + 3, L, mask=fits)
        tl.store(record + 4, C0, mask=fits)
        tl.store(record + 5, ncols * chunks, mask=fits)
        tl.store(record + 6, sums_words + cbase, mask=fits)
        tl.store(record + 7, H, mask=fits)
        HW = H.to(tl.int64) * W
        carry = _prev_row(
            k, t0, rowstart, C0, ncols, H, src, s_mh, s_mw, r0, c0, r1 - r0, c1 - c0, oy, ox, ylo, yhi, xlo, xhi,
            sc_h, sc_w,
        ).to(tl.int64)  # fmt: skip
        e, kb, ra, sure = _item_taps(
            t0, t1, k0, rowstart, C0, ncols, H, W, src, s_mh, s_mw, r0, c0, r1 - r0, c1 - c0, oy, ox, yhi, xhi, sc_h,
            sc_w, TC, SR, SC,
        )  # fmt: skip
        # timeline: count item taps (sure) @it
        store_all = tl.arange(0, TC) < tl.where(fits, TC, 0)  # the words of every column or of none
        colcnt = tl.zeros((TC,), tl.int64)
        for rg in range(t0, t1, TR):
            word, carry = _boundaries(
                rg, k, k0, carry, rowstart, t1, C0, ncols, H, HW, src, s_mh, s_mw, r0, c0, r1 - r0, c1 - c0, oy, ox,
                ylo, yhi, xlo, xhi, sc_h, sc_w, e, kb, ra, sure, TR, SR,
            )  # fmt: skip
            colcnt += _popcount(word)
            tl.store(words + (rg - t0) // TR * TC, word, mask=store_all)
        kv = k < tl.where(fits, ncols, 0)
        tl.store(ws_ptr + cidx, colcnt, mask=kv)
        # Into the scan blocks' sums: usually all the item's counts fall into one block (one atomic add). Relaxed:
        # only later kernels read the totals, so nothing waits for the adds (acq_rel cost ~1 us per item).
        found = tl.sum(colcnt, axis=0)
        # timeline: count item tiles (found) @it
        sums = ws_ptr + s * stride
        lo = tl.min(cloc, axis=0) // SBLOCK  # lane 0's block
        if lo == (tl.min(cloc, axis=0) + (TC - 1) * chunks) // SBLOCK:
            tl.atomic_add(sums + lo, found, mask=fits, sem="relaxed")
        else:
            tl.atomic_add(sums + cloc // SBLOCK, colcnt, mask=kv, sem="relaxed")
        tl.atomic_add(tab_ptr + _T_NB * slots + s, found, sem="relaxed")
        # timeline: count item done (found) @it
        it += nprog
        if it < total_items:
            s, q, first, cbase, _items, _words = _locate(it, Q, slots, query_ptr, qregion_ptr, PBLOCK)
    if tl.program_id(0) == nprog - 1:  # every program has the batch's totals; the last one (fewest items) stores them
        totals = tab_ptr + _TABLES * slots
        tl.store(totals + _S_ITEMS, total_items)
        tl.store(totals + _S_BITS, sums_words + count_words)
        tl.store(totals + _S_POSITIONS, _positions(sums_words, count_words, total_items, rch, TR, TC))
        _records_to_host(args_ptr, Q, slots, count_word, record_word, USE_ASM)


@triton.jit
def _records_to_host(args_ptr, Q, slots, count_word, record_word, USE_ASM: tl.constexpr):
    """The detection counts and every slot's record (the selection wrote them) into the pinned host twin, then,
    after a system-scope fence, the call's sequence number at RECORDS_READY_WORD: the host builds the detections'
    arrays from them while the masks are still being made (compress copies only the strings and spans)."""
    out64_ptr, _cap = result_buffer(args_ptr, args_ptr)
    host64_ptr = host_result_buffer(args_ptr, args_ptr)
    _copy_words(host64_ptr, out64_ptr, count_word, count_word + slots // Q, _COPY_BLOCK)
    first = record_word // 2  # int32 words: record_word is even, so the records are whole int64 words
    _copy_words(host64_ptr, out64_ptr, first, first + 3 * slots, _COPY_BLOCK)
    tl.debug_barrier()  # every thread's host writes before any thread's fence
    seq = fence_system(tl.load(args_ptr + _A_SEQ), USE_ASM)
    tl.store(host64_ptr + _RECORDS_READY, seq)


@triton.jit(do_not_specialize=_NO_SPEC)
def count_kernel(
    args_ptr, masks_w, Q, slots, metai_ptr, query_ptr, qregion_ptr, tab_ptr, nprog, count_word, record_word,
    TR: tl.constexpr, TC: tl.constexpr, PBLOCK: tl.constexpr, SBLOCK: tl.constexpr, SR: tl.constexpr,
    SC: tl.constexpr, USE_ASM: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    """Run boundaries per (column, row chunk) of every work item, into the count area; per scan block and per
    slot totals; the batch's totals for the passes after this one; the counts and records to the host."""
    wait_for_previous_kernel(PDL)
    # timeline: count start
    _count_items(
        args_ptr, masks_w, Q, slots, metai_ptr, query_ptr, qregion_ptr, tab_ptr, nprog, count_word, record_word,
        TR, TC, PBLOCK, SBLOCK, SR, SC, USE_ASM,
    )  # fmt: skip


@triton.jit
def _column_starts(
    tab_ptr, slots, s, counts_ptr, sums_ptr, n, e0, chunks, SBLOCK: tl.constexpr, TC: tl.constexpr,
    CH: tl.constexpr,
):  # fmt: skip
    """Where the boundaries of each of an item's TC columns start in the boundary area (slot s's counts e0 + i *
    chunks for column i, of its n counts, column-major): the boundaries of the slots before s, the sums of s's
    scan blocks before e0's, the counts of e0's block before e0 (one sum), and of the item's counts from e0 up to
    each column's (a row per column: counts e0 + i * chunks onwards)."""
    j0 = e0 // SBLOCK
    i = tl.arange(0, SBLOCK)
    e = j0 * SBLOCK + i
    v = tl.load(counts_ptr + e, mask=e < e0, other=0) + tl.load(sums_ptr + i, mask=i < j0, other=0)
    for b0 in range(SBLOCK, j0, SBLOCK):  # a slot of more than SBLOCK scan blocks
        v += tl.load(sums_ptr + b0 + i, mask=b0 + i < j0, other=0)
    for b0 in range(0, s, SBLOCK):
        v += tl.load(tab_ptr + _T_NB * slots + b0 + i, mask=b0 + i < s, other=0)
    row = e0 + tl.arange(0, TC).to(tl.int64)[:, None] * chunks
    rows = tl.zeros((TC,), tl.int64)
    for c0 in range(0, chunks, CH):
        c = c0 + tl.arange(0, CH)[None, :]
        rows += tl.sum(tl.load(counts_ptr + row + c, mask=(c < chunks) & (row + c < n), other=0), axis=1)
    return tl.sum(v, axis=0) + tl.cumsum(rows, axis=0) - rows


@triton.jit
def _write_items(
    args_ptr, slots, tab_ptr, nprog, TR: tl.constexpr, TC: tl.constexpr, PBLOCK: tl.constexpr,
    SBLOCK: tl.constexpr, CH: tl.constexpr, NT: tl.constexpr,
):  # fmt: skip
    """This program's work items: the flat positions of the boundaries the count pass's bits mark, sorted, each
    column's first at the number of the slot's boundaries before it (from the count area and its scan blocks'
    sums: `_column_starts`); tiles without a boundary are skipped. Program 0 also places each slot's boundaries
    (an exclusive prefix sum of their numbers, for the compression) and writes the workspace size the call needs
    into the header."""
    out64_ptr, _cap = result_buffer(args_ptr, args_ptr)
    ws_ptr, ws_cap = workspace_buffer(args_ptr)
    stride = sum_stride(args_ptr)
    totals = tab_ptr + _TABLES * slots
    total_items = tl.load(totals + _S_ITEMS)
    positions = tl.load(totals + _S_POSITIONS)
    rch = row_chunk(args_ptr)
    pid = tl.program_id(0)
    if pid == 0:
        run = tl.zeros((), tl.int64)
        for start in range(0, slots, PBLOCK):
            i = start + tl.arange(0, PBLOCK)
            v = tl.load(tab_ptr + _T_NB * slots + i, mask=i < slots, other=0)
            tl.store(tab_ptr + _T_PBASE * slots + i, run + tl.cumsum(v, axis=0) - v, mask=i < slots)
            tl.store(tab_ptr + _T_PUB * slots + i, tl.zeros_like(v), mask=i < slots)  # for compress's parts
            run += tl.sum(v, axis=0)
        tl.store(out64_ptr, positions + run)
        # timeline: write placed (run)
    bits = tl.load(totals + _S_BITS)
    iw = _item_words(rch, TR, TC)
    room = ws_cap - positions  # boundaries past it are not stored: the header asks for more, and the call re-runs
    for it in range(pid, tl.where(positions <= ws_cap, total_items, 0), nprog):  # else the count pass stored nothing
        record = ws_ptr + bits + (it + 1) * iw - _RECORD_WORDS  # written by the count pass
        s = tl.load(record)
        rowstart = tl.load(record + 2)
        C0 = tl.load(record + 4)
        H = tl.load(record + 7)
        k, k0, t0, t1, _cloc, chunks = _item(tl.load(record + 1), tl.load(record + 3), rch, TC)
        words = ws_ptr + bits + it * iw + tl.arange(0, TC)
        # Which of the first NT tiles hold a boundary (most hold none): one load of their words, issued before the
        # column starts' loads, so that a tile without a boundary costs neither a load nor a reduction of its own.
        tl.static_assert(NT <= 32)  # a bit per tile in an int32
        tiles = tl.arange(0, NT)
        ahead = tl.load(words[None, :] + tiles[:, None] * TC, mask=(t0 + tiles * TR < t1)[:, None], other=0)
        busy = tl.sum(tl.where(tl.max((ahead != 0).to(tl.int32), axis=1) != 0, 1 << tiles, 0), axis=0)
        shift = tl.arange(0, TR).to(tl.int64)[None, :]
        below = (tl.full((), 1, tl.int64) << shift) - 1  # the bits of the rows before each row
        colstart = _column_starts(
            tab_ptr, slots, s, ws_ptr + tl.load(record + 6), ws_ptr + s * stride, tl.load(record + 5),
            k0.to(tl.int64) * chunks + t0 // rch, chunks, SBLOCK, TC, CH,
        )  # fmt: skip
        # timeline: write located (colstart) @it
        col = (C0 + k).to(tl.int64)[:, None] * H + rowstart
        for rg in range(t0, t1, TR):
            tile = (rg - t0) // TR
            if (tile >= NT) | (((busy >> tl.minimum(tile, NT - 1)) & 1) != 0):  # past the first NT: load and see
                word = tl.load(words + tile * TC)
                # [strips, rows]: a boundary's rank in its strip is the popcount of the bits below it (no scan)
                pos = colstart[:, None] + _popcount(word[:, None] & below)
                bit = ((word[:, None] >> shift) & 1) != 0
                tl.store(ws_ptr + positions + pos, col + rg + shift, mask=bit & (pos < room))
                colstart += _popcount(word)
        # timeline: write item end (colstart) @it


@triton.jit(do_not_specialize=_NO_SPEC)
def write_kernel(
    args_ptr, slots, tab_ptr, nprog, TR: tl.constexpr, TC: tl.constexpr, PBLOCK: tl.constexpr, SBLOCK: tl.constexpr,
    CH: tl.constexpr, NT: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    """Flat positions of the boundaries of every work item, sorted, into the slot's boundary area."""
    wait_for_previous_kernel(PDL)
    # timeline: write start
    _write_items(args_ptr, slots, tab_ptr, nprog, TR, TC, PBLOCK, SBLOCK, CH, NT)
    # timeline: write end


@triton.jit
def _bound(base, idx, nb, HW):
    """Boundary idx of a mask with nb boundaries, with the implicit 0 before and H*W after (in HW's type)."""
    v = tl.load(base + idx, mask=(idx >= 0) & (idx < nb), other=0).to(HW.dtype)
    return tl.where(idx < 0, 0, tl.where(idx >= nb, HW, v))


@triton.jit
def _delta(base, i, nb, HW, GROUPS: tl.constexpr):
    """pycocotools' value for counts i (delta vs count i - 2 when i > 2) and its number of characters:
    5-bit groups until the rest is the sign extension of the last group's bit 4. In i's integer type (int32 when
    the frame has fewer than 2**31 pixels: every value then fits, and the work is half; GROUPS: the most
    characters a value of that type can need)."""
    b0 = _bound(base, i, nb, HW)
    b1 = _bound(base, i - 1, nb, HW)
    b2 = _bound(base, i - 2, nb, HW)
    b3 = _bound(base, i - 3, nb, HW)
    x = (b0 - b1) - tl.where(i > 2, b2 - b3, 0)
    ax = tl.where(x < 0, -x - 1, x)
    used = tl.full(x.shape, 1, tl.int32)  # int32: the block's sums and prefix sums of lengths are half the work
    for g in tl.static_range(1, GROUPS):
        used += (ax >= (1 << (5 * g - 1))).to(tl.int32)
    return x, used


@triton.jit
def _characters(out8_ptr, first, x, used):
    """The characters of counts x (used of them each, the first at byte `first`): one store per 5-bit group."""
    for g in range(0, tl.max(used, axis=0)):
        c = ((x >> (5 * g)) & 31) + 48 + tl.where(g < used - 1, 32, 0)
        tl.store(out8_ptr + first + g, c.to(tl.uint8), mask=g < used)


@triton.jit
def _part_length(bptr, i0, i1, nb, HW, CBLK: tl.constexpr, GROUPS: tl.constexpr):
    """Characters of counts i0 .. i1 of a mask (nb boundaries at bptr, in nb's and HW's type)."""
    length = tl.zeros((), tl.int64)
    for j0 in range(i0, i1, CBLK):
        i = j0 + tl.arange(0, CBLK).to(nb.dtype)
        _x, used = _delta(bptr, i, nb, HW, GROUPS)
        length += tl.sum(tl.where(i < i1, used, 0), axis=0)
    return length


@triton.jit
def _part_characters(bptr, i0, i1, nb, HW, out8_ptr, first, CBLK: tl.constexpr, GROUPS: tl.constexpr):
    """The characters of counts i0 .. i1 of a mask into the result buffer from byte `first` on."""
    for j0 in range(i0, i1, CBLK):
        i = j0 + tl.arange(0, CBLK).to(nb.dtype)
        x, used = _delta(bptr, i, nb, HW, GROUPS)
        used = tl.where(i < i1, used, 0)
        _characters(out8_ptr, first + tl.cumsum(used, axis=0) - used, x, used)
        first += tl.sum(used, axis=0)


@triton.jit
def _part(bptr, i0, i1, nb, HW, out8_ptr, pub_ptr, t, a, A, part, base, PMAX: tl.constexpr, CBLK: tl.constexpr,
          SPINS: tl.constexpr, WIDE: tl.constexpr):  # fmt: skip
    """Part `part` of a string: counts i0 .. i1 (nb boundaries at bptr). Its number of characters goes to pub_ptr[t]
    (+ 1: zero is not yet), then it sums those of the string's earlier parts (words a + j A, j < part) and writes its
    characters after them. Returns its first byte, its length and whether the earlier parts' lengths all came."""
    GROUPS: tl.constexpr = 13 if WIDE else 7  # 5-bit groups of the widest value: 64 / 32 bits
    if i1 - i0 <= CBLK:  # one block: the counts are loaded once
        i = i0 + tl.arange(0, CBLK).to(nb.dtype)
        x, used = _delta(bptr, i, nb, HW, GROUPS)
        used = tl.where(i < i1, used, 0)
        length = tl.sum(used, axis=0).to(tl.int64)
        # timeline: compress length (length)
        tl.store(pub_ptr + t, length + 1)
        before, ok = _earlier_parts(pub_ptr, a, A, part, PMAX, SPINS)
        first = base + before
        # timeline: compress claimed (first)
        _characters(out8_ptr, first + tl.cumsum(used, axis=0) - used, x, used)
    else:
        length = _part_length(bptr, i0, i1, nb, HW, CBLK, GROUPS)
        tl.store(pub_ptr + t, length + 1)
        before, ok = _earlier_parts(pub_ptr, a, A, part, PMAX, SPINS)
        first = base + before
        _part_characters(bptr, i0, i1, nb, HW, out8_ptr, first, CBLK, GROUPS)
    return first, length, ok


@triton.jit
def _earlier_parts(pub_ptr, a, A, part, PMAX: tl.constexpr, SPINS: tl.constexpr):
    """The characters of a string's parts before `part` (their words a + j A), once each has published them, and
    whether they all did within SPINS more reads (they run on earlier programs, so they always do: a bound that
    turns a bug into an error instead of a hang; under the interpreter, which has run them all, one read)."""
    j = tl.arange(0, PMAX)
    need = j < part
    v = tl.load(pub_ptr + a + j * A, mask=need, other=1, volatile=True)
    spins = 0
    while (tl.min(v, axis=0) == 0) & (spins < SPINS):
        v = tl.load(pub_ptr + a + j * A, mask=need, other=1, volatile=True)
        spins += 1
    return tl.sum(tl.maximum(v - 1, 0), axis=0), tl.min(v, axis=0) != 0


@triton.jit
def _copy_words(dst_ptr, src_ptr, first, end, BLOCK: tl.constexpr):
    """int64 words first .. end of the result buffer into its host twin (.cg: other threads wrote them)."""
    for w0 in range(first, end, BLOCK):
        w = w0 + tl.arange(0, BLOCK)
        tl.store(dst_ptr + w, tl.load(src_ptr + w, mask=w < end, cache_modifier=".cg"), mask=w < end)


@triton.jit
def _copy_bytes(dst64_ptr, src64_ptr, dst8_ptr, src8_ptr, first, end, BLOCK: tl.constexpr):
    """Bytes first .. end of the result buffer into its host twin: the whole words between as words, the bytes of
    the words at either end one by one (a neighbouring part of the string writes the rest of those words)."""
    lo = (first + 7) // 8
    hi = end // 8
    if lo <= hi:
        _copy_words(dst64_ptr, src64_ptr, lo, hi, BLOCK)
        edge = tl.arange(0, 16)
        at = tl.where(edge < 8, first + edge, hi * 8 + edge - 8)
        keep = tl.where(edge < 8, at < lo * 8, at < end)
    else:  # inside one word
        edge = tl.arange(0, 16)
        at = first + edge
        keep = at < end
    tl.store(dst8_ptr + at, tl.load(src8_ptr + at, mask=keep, cache_modifier=".cg"), mask=keep)


@triton.jit
def _batch_counts(out64_ptr, metai_ptr, count_word, B, b_own, IBLOCK: tl.constexpr):
    """The batch's detections, those of the images before b_own, those of the last image, and whether any image has
    2**31 pixels or more (its counts then take the int64 path: up to 13 characters each)."""
    total = tl.zeros((), tl.int64)
    before = tl.zeros((), tl.int64)
    last = tl.zeros((), tl.int64)
    wide = tl.zeros((), tl.int32)
    for b0 in range(0, B, IBLOCK):
        b = b0 + tl.arange(0, IBLOCK)
        n = tl.load(out64_ptr + count_word + b, mask=b < B, other=0)
        h = tl.load(metai_ptr + b * 10, mask=b < B, other=0).to(tl.int64)
        hw = h * tl.load(metai_ptr + b * 10 + 1, mask=b < B, other=0)
        wide = tl.maximum(wide, tl.max((hw > _NARROW_PIXELS).to(tl.int32), axis=0))
        total += tl.sum(n, axis=0)
        before += tl.sum(tl.where(b < b_own, n, 0), axis=0)
        last += tl.sum(tl.where(b == B - 1, n, 0), axis=0)
    return total, before, last, wide


@triton.jit
def _detection_slot(out64_ptr, count_word, B, Q, a, IBLOCK: tl.constexpr):
    """The slot of the batch's a-th detection (image by image)."""
    s = tl.zeros((), tl.int64) + a
    if B > 1:
        s = tl.zeros((), tl.int64)
        run = tl.zeros((), tl.int64)
        for b0 in range(0, B, IBLOCK):
            b = b0 + tl.arange(0, IBLOCK)
            n = tl.load(out64_ptr + count_word + b, mask=b < B, other=0)
            first = run + tl.cumsum(n, axis=0) - n
            mine = (first <= a) & (a < first + n)
            s += tl.sum(tl.where(mine, b * Q + a - first, 0), axis=0)
            run += tl.sum(n, axis=0)
    return s


@triton.jit(do_not_specialize=_NO_SPEC)
def compress_kernel(
    args_ptr, u8_w, flag_ptr, Q, slots, metai_ptr, count_word, string_word, strings_start, tab_ptr,
    CBLK: tl.constexpr, PMAX: tl.constexpr, PART_MIN: tl.constexpr, IBLOCK: tl.constexpr, SPINS: tl.constexpr,
    USE_ASM: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    """The COCO counts strings of every detection, each cut into parts (at least PART_MIN counts each), then copied
    with their spans into the pinned host twin. Program s codes the first part of slot s's string when the slot has
    a detection; the programs past the last image's detections (their slots have none) help: helper r codes part
    1 + r // A of the batch's detection r % A (A detections), so a detection's parts run on programs in the order
    of the parts, and a part waits only for the characters of parts before it (_earlier_parts): programs that are
    earlier in the grid, which also the interpreter (programs in order) has run. Strings are placed at upper bounds
    of their lengths (8 bytes per count, 16 when a frame has 2**31 pixels or more: a prefix over the slots'
    boundaries), so no part waits for a later one; the host slices each string by its span. Program 0 copies the
    sizes the call needed into the host header. Every program that wrote to the host fences at system scope before
    its end ticket; the last one writes the call's sequence number into the pinned flag: once the host sees the
    number, all bytes have landed."""
    wait_for_previous_kernel(PDL)
    # timeline: compress start
    out64_ptr, _cap = result_buffer(args_ptr, args_ptr)
    out8_ptr, out_cap = result_buffer(args_ptr, u8_w)
    ws_ptr, ws_cap = workspace_buffer(args_ptr)
    host64_ptr = host_result_buffer(args_ptr, args_ptr)
    host8_ptr = host_result_buffer(args_ptr, u8_w)
    pid = tl.program_id(0).to(tl.int64)
    B = slots // Q
    b_own = pid // Q
    A, before, n_last, wide = _batch_counts(out64_ptr, metai_ptr, count_word, B, b_own, IBLOCK)
    ws_needed = tl.load(out64_ptr)  # written by the write pass
    nb_total = tl.load(tab_ptr + _T_PBASE * slots + slots - 1) + tl.load(tab_ptr + _T_NB * slots + slots - 1)
    per_count = tl.where(wide > 0, 16, 8)
    out_needed = strings_start + per_count * (nb_total + slots)
    wrote = (pid == 0).to(tl.int32)
    if wrote != 0:
        tl.store(host64_ptr + tl.arange(0, 2), tl.where(tl.arange(0, 2) == 0, ws_needed, out_needed))
    first_helper = slots - Q + n_last  # the last image's slots without a detection
    helpers = slots - first_helper
    nb = tl.load(tab_ptr + _T_NB * slots + pid)  # loaded with the counts: the own slot's, most programs' critical path
    if pid - b_own * Q < tl.load(out64_ptr + count_word + b_own):  # the first part of its own slot's string
        s = pid
        b = b_own
        a = before + pid - b_own * Q
        part = tl.zeros((), tl.int64)
    else:
        r = tl.maximum(pid - first_helper, 0)
        a = r % tl.maximum(A, 1)
        s = _detection_slot(out64_ptr, count_word, B, Q, a, IBLOCK)
        b = s // Q
        part = tl.where((pid >= first_helper) & (A > 0), 1 + r // tl.maximum(A, 1), PMAX)  # else: not a helper
        nb = tl.load(tab_ptr + _T_NB * slots + s)
    m = nb + 1  # counts
    helped = tl.where(a < helpers, tl.cdiv(helpers - a, tl.maximum(A, 1)), 0)
    parts = tl.minimum(tl.minimum(1 + helped, PMAX), tl.cdiv(m, PART_MIN))
    if (part < parts) & (ws_needed <= ws_cap) & (out_needed <= out_cap):
        HW = tl.load(metai_ptr + b * 10).to(tl.int64) * tl.load(metai_ptr + b * 10 + 1)
        pbase = tl.load(tab_ptr + _T_PBASE * slots + s)
        bptr = ws_ptr + tl.load(tab_ptr + _TABLES * slots + _S_POSITIONS) + pbase
        base = strings_start + per_count * (pbase + s)
        chunk = tl.cdiv(m, parts)
        i0 = part * chunk
        i1 = tl.minimum(m, i0 + chunk)
        pub_ptr = tab_ptr + _T_PUB * slots
        t = part * A + a  # the part's word: below slots (parts past the first run on the last image's idle slots)
        # timeline: compress loaded (nb)
        if HW <= _NARROW_PIXELS:  # every position and count fits int32
            first, length, ok = _part(
                bptr, i0.to(tl.int32), i1.to(tl.int32), nb.to(tl.int32), HW.to(tl.int32), out8_ptr, pub_ptr, t, a, A,
                part, base, PMAX, CBLK, SPINS, False,
            )  # fmt: skip
        else:
            first, length, ok = _part(
                bptr, i0, i1, nb, HW, out8_ptr, pub_ptr, t, a, A, part, base, PMAX, CBLK, SPINS, True
            )  # fmt: skip
        if ok == 0:  # a bug: reported, not waited on forever
            tl.store(host64_ptr + _STALLED, tl.load(args_ptr + _A_SEQ))
        # timeline: compress coded (length)
        tl.debug_barrier()  # every thread's characters before any thread reads them back
        _copy_bytes(host64_ptr, out64_ptr, host8_ptr, out8_ptr, first, first + length, CBLK)
        if part == parts - 1:  # the string's span (bytes from the buffer's start), with the string's last part
            span = tl.where(tl.arange(0, 2) == 0, base, first + length)
            tl.store(host64_ptr + string_word + 2 * s + tl.arange(0, 2), span)
        # timeline: compress copied (first)
        wrote = tl.full((), 1, tl.int32)
    tl.debug_barrier()  # the block's host writes before any thread's fence
    one = tl.full((), 1, tl.int64)
    if wrote != 0:
        one = fence_system(one, USE_ASM)
    # timeline: compress fenced (one)
    if tl.atomic_add(args_ptr + _A_COPY_TICKET, one) == tl.num_programs(0) - 1:
        seq = fence_system(tl.load(args_ptr + _A_SEQ), USE_ASM)
        tl.store(flag_ptr, seq)
        # timeline: compress flag (seq)
