"""Triton selection kernel: DESIGN.md steps 1-6 for a whole batch in one launch, with the mask regions alongside.

Scores are sigmoid(logit) evaluated in float64 and rounded once to float32, as the reference computes
them (libdevice exp on the GPU; float64 division is always IEEE round-to-nearest); the first pass skips
the float64 work for blocks whose float32 estimate is far below every threshold. Order keys are the
float bits of the score (NaN -> -1), compared with the flat index as tie-break. Fast path: when at most Q
pairs beat the smallest threshold, those pairs are exactly the candidates (every one of them is inside
the top Q). Otherwise the Q-th key is found by a 32-step bisection over the key bits plus an index cut
among ties. The (<= Q) candidates are ranked by counting, mapped, thresholded and capped; boxes use the
reference's float32 operation order.

The same launch finds every query's candidate strip for the mask passes (kernels/triton_masks.py,
`query_region`) in programs of its own while the selection runs (one kernel less), each also zeroing what the
count pass adds into for its query's slot; the count pass finds its work from the slots' queries and those strips.
"""

from __future__ import annotations

import triton
import triton.language as tl

try:  # triton >= 3.0 exposes the dispatching libdevice module here
    from triton.language.extra import libdevice
except ImportError:  # pragma: no cover - older layouts
    from triton.language.extra.cuda import libdevice

from kernels.triton_layout import (
    ARG_BOXES,
    ARG_IMAGES,
    ARG_LOGITS,
    ARG_MAP,
    ARG_MAX_DET,
    ARG_NUM_CLASSES,
    ARG_THR,
    result_buffer,
)
from kernels.triton_masks import QREGION_WORDS, query_region, reset_slot, row_chunk, source
from kernels.triton_sync import wait_for_previous_kernel

__all__ = ["select_kernel"]

_A_LOGITS = tl.constexpr(ARG_LOGITS)
_A_BOXES = tl.constexpr(ARG_BOXES)
_A_THR = tl.constexpr(ARG_THR)
_A_MAP = tl.constexpr(ARG_MAP)
_A_NUM_CLASSES = tl.constexpr(ARG_NUM_CLASSES)
_A_MAX_DET = tl.constexpr(ARG_MAX_DET)
_A_IMAGES = tl.constexpr(ARG_IMAGES)
_QREGION_WORDS = tl.constexpr(QREGION_WORDS)


@triton.jit
def _sigmoid(x, USE_LIBDEVICE: tl.constexpr):
    """The reference's score: sigmoid in float64 (exp, IEEE division), rounded once to float32."""
    xd = x.to(tl.float64)
    if USE_LIBDEVICE:  # noqa: SIM108 (constexpr branch: libdevice cannot run in the interpreter)
        e = libdevice.exp(-xd)
    else:
        e = tl.exp(-xd)
    return (1.0 / (1.0 + e)).to(tl.float32)


@triton.jit
def _pair(logit_base, f, valid, C, s_lq, s_lc, USE_LIBDEVICE: tl.constexpr):
    """Score and order key of flat pairs f (query * C + class) of one image."""
    qi = f // C
    ci = f - qi * C
    x = tl.load(logit_base + qi * s_lq + ci * s_lc, mask=valid, other=float("nan")).to(tl.float32)
    score = _sigmoid(x, USE_LIBDEVICE)
    key = tl.where(score != score, -1, score.to(tl.int32, bitcast=True))
    return score, key, qi, ci


@triton.jit
def _keep(score, ci, valid, map_ptr, M, num_classes, thr_ptr, K, thr_scalar):
    """Steps 3-4: output class and whether the pair survives mapping and threshold."""
    has_map = M >= 0
    in_range = ci < M
    mapped = tl.load(map_ptr + ci, mask=valid & in_range, other=-1)  # in_range is False without a mapping (M = -1)
    ok_map = in_range & (mapped >= 0)
    ok = tl.where(has_map, ok_map, ci < num_classes) & valid
    out_class = tl.where(has_map, tl.where(ok_map, mapped, 0), ci.to(tl.int64))
    per_class = K >= 0
    ok_thr = out_class < K
    limit = tl.load(
        thr_ptr + out_class, mask=ok & ok_thr, other=float("nan")
    )  # ok_thr is False without per-class (K = -1)
    limit = tl.where(per_class, limit, thr_scalar)
    ok = ok & tl.where(per_class, ok_thr, True) & (score > limit)
    return ok, out_class


@triton.jit
def _count_ge(logit_base, n, C, s_lq, s_lc, T, USE_LIBDEVICE: tl.constexpr, BLOCK: tl.constexpr):
    total = tl.zeros((), tl.int64)
    for start in range(0, n, BLOCK):
        f = start + tl.arange(0, BLOCK)
        valid = f < n
        _s, key, _q, _c = _pair(logit_base, f, valid, C, s_lq, s_lc, USE_LIBDEVICE)
        total += tl.sum((valid & (key >= T)).to(tl.int64), axis=0)
    return total


@triton.jit
def _round_half_even(x):
    """torch.round of a finite non-negative float32 below 2**31, as int32."""
    t = x.to(tl.int32)
    d = x - t.to(tl.float32)
    up = (d > 0.5) | ((d == 0.5) & ((t & 1) == 1))
    return t + up.to(tl.int32)


@triton.jit
def _box_coord(v, denorm, pad, scale, offset, limit):
    """Step 6 for one coordinate, in the reference's operation order (no fused multiply-add)."""
    v = v * denorm
    v = v - pad
    v = tl.math.div_rn(v, scale)
    v = v + offset
    v = tl.where(v != v, 0.0, v)
    v = tl.minimum(tl.maximum(v, 0.0), limit)
    return _round_half_even(v)


@triton.jit
def _pack(key, f):
    """Candidate as one int64 ordered like DESIGN.md step 2: score bits high (>= 0: NaN never passes a
    threshold), flat index low and reversed, so a larger value comes first."""
    return (key.to(tl.int64) << 32) | (2147483647 - f.to(tl.int64))


@triton.jit
def _unpack(packed, C):
    """(score, query, class) of packed candidates."""
    f = 2147483647 - (packed & 0xFFFFFFFF)
    q = f // C
    return (packed >> 32).to(tl.int32).to(tl.float32, bitcast=True), q, f - q * C


@triton.jit
def _inputs(args_ptr, logits_w, boxes_w):
    """The caller's logits/boxes (addresses from the argument block, typed like the witnesses) and strides."""
    logits = tl.load(args_ptr + _A_LOGITS).to(logits_w.dtype)
    boxes = tl.load(args_ptr + _A_BOXES).to(boxes_w.dtype)
    return (
        logits, tl.load(args_ptr + _A_LOGITS + 1), tl.load(args_ptr + _A_LOGITS + 2),
        tl.load(args_ptr + _A_LOGITS + 3), boxes, tl.load(args_ptr + _A_BOXES + 1),
        tl.load(args_ptr + _A_BOXES + 2), tl.load(args_ptr + _A_BOXES + 3),
    )  # fmt: skip


@triton.jit
def _thresholds(args_ptr, thr_w, map_w, metaf_ptr):
    """Per-class threshold pointer and K (-1: scalar), the scalar, mapping pointer and M (-1: none)."""
    thr_ptr = tl.load(args_ptr + _A_THR).to(thr_w.dtype)
    map_ptr = tl.load(args_ptr + _A_MAP).to(map_w.dtype)
    return thr_ptr, tl.load(args_ptr + _A_THR + 1), tl.load(metaf_ptr), map_ptr, tl.load(args_ptr + _A_MAP + 1)


@triton.jit
def _may_pass(x, cut):
    """Whether a logit's score may exceed the smallest threshold: its float32 estimate (within 1e-4 relative of
    the exact score) is not far below it. NaN never passes; blocks without any are skipped."""
    return (1.0 / (1.0 + tl.exp(-x))) >= cut


@triton.jit(do_not_specialize=["Q", "C", "nsplit", "count_word", "record_word"])
def select_kernel(
    args_ptr, logits_w, boxes_w, masks_w, thr_w, map_w, metai_ptr, metaf_ptr, query_ptr, cand_ptr, qregion_ptr,
    tab_ptr, Q, C, nsplit, count_word, record_word,
    USE_LIBDEVICE: tl.constexpr, BLOCK: tl.constexpr, CB: tl.constexpr, SRC_BLOCK: tl.constexpr,
    TC: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    """Grid (B, nsplit + Q). Program (b, p < nsplit) scans pair blocks p, p + nsplit, ... of image b for
    candidates; the last of them to finish (a ticket) ranks them and writes the records and each slot's query.
    Program (b, nsplit + q) meanwhile zeroes the counters of slot b Q + q that the count pass adds into and finds
    the candidate strip of query q's mask, if any of its scores may pass (the mask passes need it only for selected
    queries, which the selection has not picked yet); the count pass finds its work from both."""
    wait_for_previous_kernel(PDL)
    # timeline: select start
    b = tl.program_id(0).to(tl.int64)
    part = tl.program_id(1)
    logits_ptr, s_lb, s_lq, s_lc, boxes_ptr, s_bb, s_bq, s_bc = _inputs(args_ptr, logits_w, boxes_w)
    thr_ptr, K, thr_scalar, map_ptr, M = _thresholds(args_ptr, thr_w, map_w, metaf_ptr)
    n = Q.to(tl.int64) * C
    logit_base = logits_ptr + b * s_lb

    # Smallest threshold any class can have (NaN never passes, so it is ignored); +inf when none.
    min_thr = tl.where(thr_scalar != thr_scalar, float("inf"), thr_scalar)
    if K >= 0:
        min_thr = tl.full((), float("inf"), tl.float32)
        for start in range(0, K, BLOCK):
            k = start + tl.arange(0, BLOCK)
            t = tl.load(thr_ptr + k, mask=k < K, other=float("inf"))
            t = tl.where(t != t, float("inf"), t)
            min_thr = tl.minimum(min_thr, tl.min(t, axis=0))
    cut = tl.where(min_thr < 1e-30, -1.0, min_thr * 0.9999)  # tiny thresholds: no skipping

    if part < nsplit:
        _select(
            args_ptr, b, part, logit_base, s_lq, s_lc, boxes_ptr + b * s_bb, s_bq, s_bc, thr_ptr, K, thr_scalar,
            map_ptr, M, min_thr, cut, metaf_ptr, query_ptr, cand_ptr, tab_ptr, n, Q, C, nsplit,
            count_word, record_word, USE_LIBDEVICE, BLOCK, CB,
        )  # fmt: skip
    else:
        q = (part - nsplit).to(tl.int64)
        reset_slot(args_ptr, tab_ptr, b * Q + q, tl.num_programs(0) * Q, BLOCK)
        rp = qregion_ptr + (b * Q + q) * _QREGION_WORDS
        # The mask's source and the image's metadata are loaded with the query's logits, not after their test:
        # one dependent load less before the mask's.
        rch = row_chunk(args_ptr)
        H, W, Hp, Wp, ox, oy, r0, r1, c0, c1, src, s_mh, s_mw, sc_h, sc_w = source(b, q, args_ptr, metai_ptr, masks_w)
        may = tl.zeros((), tl.int32)
        for start in range(0, C, BLOCK):
            c = start + tl.arange(0, BLOCK)
            x = tl.load(logit_base + q * s_lq + c * s_lc, mask=c < C, other=float("-inf")).to(tl.float32)
            may += tl.sum(_may_pass(x, cut).to(tl.int32), axis=0)
        if may > 0:
            query_region(
                rp, rch, H, W, Hp, Wp, ox, oy, r0, r1, c0, c1, src, s_mh, s_mw, sc_h, sc_w, SRC_BLOCK, TC
            )  # fmt: skip
            # timeline: select region done
        else:  # never selected (the count pass reads only selected queries' words): no columns, no work anyway
            tl.store(rp + 3, 0)
            tl.store(rp + _QREGION_WORDS - 2, 0)
            tl.store(rp + _QREGION_WORDS - 1, 0)


@triton.jit
def _select(
    args_ptr, b, part, logit_base, s_lq, s_lc, box_base, s_bq, s_bc, thr_ptr, K, thr_scalar, map_ptr, M, min_thr,
    cut, metaf_ptr, query_ptr, cand_ptr, tab_ptr, n, Q, C, nsplit, count_word, record_word,
    USE_LIBDEVICE: tl.constexpr, BLOCK: tl.constexpr, CB: tl.constexpr,
):  # fmt: skip
    """Program `part` of image b's selection: its candidates; the last of the image ranks them."""
    out64_ptr, _cap = result_buffer(args_ptr, args_ptr)  # header words
    out32_ptr, _cap = result_buffer(args_ptr, query_ptr)  # records (int32)
    outf_ptr, _cap = result_buffer(args_ptr, metaf_ptr)  # records (float32)
    num_classes = tl.load(args_ptr + _A_NUM_CLASSES)
    max_det = tl.load(args_ptr + _A_MAX_DET)
    if (b == 0) & (part == 0):
        tl.store(out64_ptr, 0)

    # Fast path: every pair above the smallest threshold, claimed with the image's candidate counter (its
    # order is scheduling-dependent; the ranking below does not depend on it). Writes stop at Q.
    cand_base = cand_ptr + b * Q
    counter = args_ptr + _A_IMAGES + 2 * b
    for start in range(part * BLOCK, n, nsplit * BLOCK):
        f = start + tl.arange(0, BLOCK)
        valid = f < n
        qf = f // C
        x = tl.load(logit_base + qf * s_lq + (f - qf * C) * s_lc, mask=valid, other=float("-inf")).to(tl.float32)
        # Blocks far below min_thr skip float64 (NaN logits never pass, but their block is scored exactly).
        maybe = _may_pass(x, cut) | (x != x)
        if tl.sum(maybe.to(tl.int32), axis=0) > 0:
            score = _sigmoid(x, USE_LIBDEVICE)
            cand = (valid & (score > min_thr)).to(tl.int64)
            found = tl.sum(cand, axis=0)
            if found > 0:
                first = tl.atomic_add(counter, found, sem="relaxed")  # the ticket below orders the claims
                pos = first + tl.cumsum(cand, axis=0) - cand
                packed = _pack(score.to(tl.int32, bitcast=True), f)
                tl.store(cand_base + pos, packed, mask=(cand == 1) & (pos < Q))
    tl.debug_barrier()  # every thread's candidate stores come before the ticket (released with it)
    # timeline: select claimed
    if tl.atomic_add(counter + 1, 1) == nsplit - 1:
        ncand = tl.load(counter, cache_modifier=".cg")  # the last program of image b: every claim is done
        # timeline: select counted (ncand)
        if ncand > Q:
            # General path. Top-Q cut: key > T, plus the first `need` pairs (by index) whose key equals T.
            lo = tl.full((), -1, tl.int64)
            hi = tl.full((), 0x7F800001, tl.int64)
            for _step in range(32):
                if hi - lo > 1:
                    mid = lo + (hi - lo) // 2
                    if _count_ge(logit_base, n, C, s_lq, s_lc, mid, USE_LIBDEVICE, BLOCK) >= Q:
                        lo = mid
                    else:
                        hi = mid
            T = lo
            need = Q - _count_ge(logit_base, n, C, s_lq, s_lc, T + 1, USE_LIBDEVICE, BLOCK)
            ncand = tl.zeros((), tl.int64)
            ties = tl.zeros((), tl.int64)
            for start in range(0, n, BLOCK):
                f = start + tl.arange(0, BLOCK)
                valid = f < n
                score, key, _q, _c = _pair(logit_base, f, valid, C, s_lq, s_lc, USE_LIBDEVICE)
                eq = (valid & (key == T)).to(tl.int64)
                tie_rank = ties + tl.cumsum(eq, axis=0) - eq
                top = (key > T) | ((eq == 1) & (tie_rank < need))
                cand = (valid & top & (score > min_thr)).to(tl.int64)
                pos = ncand + tl.cumsum(cand, axis=0) - cand
                tl.store(cand_base + pos, _pack(key, f), mask=cand == 1)
                ties += tl.sum(eq, axis=0)
                ncand += tl.sum(cand, axis=0)
            tl.debug_barrier()
        _rank_and_write(
            b, ncand, cand_base, C, map_ptr, M, num_classes, thr_ptr, K, thr_scalar, max_det, box_base, s_bq, s_bc,
            metaf_ptr + 4 + b * 10, Q, out64_ptr, out32_ptr, outf_ptr, query_ptr, count_word, record_word, CB,
        )  # fmt: skip
        # timeline: select ranked


@triton.jit
def _candidates(cand_base, i0, ncand, C, map_ptr, M, num_classes, thr_ptr, K, thr_scalar, CB: tl.constexpr):
    """Candidates i0 .. i0 + CB of an image (written by other programs: .cg): packed value, score, query, whether
    kept (mapping and threshold) and output class."""
    i = i0 + tl.arange(0, CB)
    valid = i < ncand
    packed = tl.load(cand_base + i, mask=valid, other=0, cache_modifier=".cg")
    score, query, cls = _unpack(packed, C)
    keep, out_class = _keep(score, cls, valid, map_ptr, M, num_classes, thr_ptr, K, thr_scalar)
    return packed, score, query, keep, out_class


@triton.jit
def _rank_and_write(
    b, ncand, cand_base, C, map_ptr, M, num_classes, thr_ptr, K, thr_scalar, max_det, box_base, s_bq, s_bc, mf,
    Q, out64_ptr, out32_ptr, outf_ptr, query_ptr, count_word, record_word, CB: tl.constexpr,
):  # fmt: skip
    """Rank the kept candidates by counting the kept ones before each (packed: score desc, index asc); write
    the records, each selected query at its slot and -1 at the image's other slots; returns the detections."""
    slots = tl.num_programs(0) * Q
    nkept = tl.zeros((), tl.int64)
    dw = tl.load(mf)
    dh = tl.load(mf + 1)
    pl = tl.load(mf + 2)
    pt = tl.load(mf + 3)
    sx = tl.load(mf + 4)
    sy = tl.load(mf + 5)
    ox = tl.load(mf + 6)
    oy = tl.load(mf + 7)
    width = tl.load(mf + 8)
    height = tl.load(mf + 9)
    for i0 in range(0, ncand, CB):
        pi, si, qi, keep_i, class_i = _candidates(
            cand_base, i0, ncand, C, map_ptr, M, num_classes, thr_ptr, K, thr_scalar, CB
        )  # fmt: skip
        # timeline: select candidates (pi)
        # Boxes of every kept candidate, loaded while the ranks are counted (most of them are written).
        bp = box_base + qi * s_bq
        cx = tl.load(bp, mask=keep_i, other=0.0).to(tl.float32)
        cy = tl.load(bp + s_bc, mask=keep_i, other=0.0).to(tl.float32)
        w = tl.load(bp + 2 * s_bc, mask=keep_i, other=0.0).to(tl.float32)
        h = tl.load(bp + 3 * s_bc, mask=keep_i, other=0.0).to(tl.float32)
        nkept += tl.sum(keep_i.to(tl.int64), axis=0)
        if ncand <= CB:  # one block (the usual case): rank against itself, no second load
            rank = tl.sum((keep_i[None, :] & (pi[None, :] > pi[:, None])).to(tl.int64), axis=1)
        else:
            rank = tl.zeros((CB,), tl.int64)
            for j0 in range(0, ncand, CB):
                pj, _s, _q, keep_j, _c = _candidates(
                    cand_base, j0, ncand, C, map_ptr, M, num_classes, thr_ptr, K, thr_scalar, CB
                )  # fmt: skip
                rank += tl.sum((keep_j[None, :] & (pj[None, :] > pi[:, None])).to(tl.int64), axis=1)
        # timeline: select rank (rank)
        out = keep_i & (rank < max_det)
        slot = b * Q + rank
        box = out32_ptr + record_word + slot * 4
        tl.store(box, _box_coord(cx - 0.5 * w, dw, pl, sx, ox, width), mask=out)
        tl.store(box + 1, _box_coord(cy - 0.5 * h, dh, pt, sy, oy, height), mask=out)
        tl.store(box + 2, _box_coord(cx + 0.5 * w, dw, pl, sx, ox, width), mask=out)
        tl.store(box + 3, _box_coord(cy + 0.5 * h, dh, pt, sy, oy, height), mask=out)
        tl.store(out32_ptr + record_word + 4 * slots + slot, class_i.to(tl.int32), mask=out)
        tl.store(outf_ptr + record_word + 5 * slots + slot, si, mask=out)
        tl.store(query_ptr + slot, qi.to(tl.int32), mask=out)
    count = tl.minimum(nkept, max_det)
    # timeline: select written (count)
    tl.store(out64_ptr + count_word + b, count)
    for j0 in range(0, Q, CB):
        j = j0 + tl.arange(0, CB)
        tl.store(query_ptr + b * Q + j, tl.full((CB,), -1, tl.int32), mask=(j >= count) & (j < Q))
    return count
