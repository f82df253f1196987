"""Triton mask kernels: DESIGN.md steps 7-8 for every selected detection of a batch, four launches in all.

A slot is (image b, output rank j); slots at or past the image's detection count exit at once. No mask is
ever materialised. `region_kernel` (one program per slot) finds the bounding box of positive source
logits (a bilinear value can only be > 0 next to a positive tap, since weights are >= 0), maps it to
output rows/cols with a margin and records the strip of candidate positions. A pixel p (flat column-major
in the H x W canvas) starts a run when its value differs from pixel p - 1. `count_kernel` (programs per
slot x column group) counts those run boundaries per column; `write_kernel` writes their flat int64
positions in sorted order (column prefix sums give every column its place); `compress_kernel` (one
program per slot) turns them into COCO counts and the pycocotools string inside the packed result buffer
at an offset claimed with an atomic cursor. Workspace slices are prefix sums over slots, so no claims
race; when the workspace is too small nothing is written and the needed size goes into the header for
the host to re-run: never a silent truncation. Every value is evaluated with torch's exact fma recipe.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["compress_kernel", "count_kernel", "region_kernel", "write_kernel"]

REGION_WORDS = 8  # int32 per slot: rowstart, strip length L, first column, ncols, ylo, yhi, xlo, xhi
_NO_SPEC = ["s_mb", "s_mq", "s_mh", "s_mw", "Q", "slots", "ws_cap", "out_cap", "count_word", "string_word", "groups"]


@triton.jit
def _pixel(y, x, valid, src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, ylo, yhi, xlo, xhi, scale_h, scale_w):
    """Canvas pixel (y, x) of the mask: upsampled logit > 0 (torch bilinear, align_corners=False)."""
    yy = y - oy
    xx = x - ox
    inside = valid & (yy >= ylo) & (yy < yhi) & (xx >= xlo) & (xx < xhi)
    sh = tl.maximum(tl.fma(scale_h, yy.to(tl.float32) + 0.5, -0.5), 0.0)
    sw = tl.maximum(tl.fma(scale_w, xx.to(tl.float32) + 0.5, -0.5), 0.0)
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
    top = tl.fma(w0, v00, w1 * v01)
    bottom = tl.fma(w0, v10, w1 * v11)
    value = tl.fma(h0, top, h1 * bottom)
    return inside & (value > 0.0)


@triton.jit
def _first_prev(k, rowstart, cstart, ncols, H, src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, ylo, yhi, xlo, xhi, sc_h, sc_w):
    """Value of the pixel just before each strip's first candidate position (strip k)."""
    c = cstart + k
    py = tl.where(rowstart >= 1, rowstart - 1, H - 1) + k * 0
    px = tl.where(rowstart >= 1, c, c - 1)
    v = _pixel(py, px, (k < ncols) & (px >= 0), src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, ylo, yhi, xlo, xhi, sc_h, sc_w)
    return v.to(tl.int32)


@triton.jit
def _boundaries(
    t, k, carry, rowstart, L, cstart, ncols, H, HW, src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, ylo, yhi, xlo, xhi,
    sc_h, sc_w, TR: tl.constexpr, GATHER: tl.constexpr,
):  # fmt: skip
    """Run boundaries of a [TR, TC] tile of candidate positions (strip row t, strip k), their flat positions and
    the carry for the next tile (its last row). Consecutive strip rows are consecutive flat positions, so with
    GATHER a pixel's predecessor is the row above in the tile (or the carry); otherwise it is evaluated again."""
    r = rowstart + t[:, None]
    c = cstart + k[None, :]
    p = c.to(tl.int64) * H + r
    inb = (t[:, None] < L) & (k[None, :] < ncols) & (p < HW)
    wrap = r >= H  # position c * H + H is row 0 of column c + 1
    y = tl.where(wrap, 0, r) + c * 0
    x = tl.where(wrap, c + 1, c)
    cur = _pixel(y, x, inb, src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, ylo, yhi, xlo, xhi, sc_h, sc_w).to(tl.int32)
    local = tl.arange(0, TR)[:, None] + k[None, :] * 0
    if GATHER:
        prev = tl.gather(cur, tl.maximum(local - 1, 0), 0)
        prev = tl.where(local == 0, carry[None, :], prev)
    else:
        py = tl.where(r >= 1, r - 1, H - 1) + c * 0
        px = tl.where(r >= 1, c, c - 1)
        prev = _pixel(py, px, inb & (px >= 0), src, s_mh, s_mw, r0, c0, ih, iw, oy, ox, ylo, yhi, xlo, xhi, sc_h, sc_w)
        prev = prev.to(tl.int32)
    last = tl.sum(tl.where(local == TR - 1, cur, 0), axis=0)
    return inb & (cur != prev), p, last


@triton.jit
def _active(s, Q, out64_ptr, count_word):
    """Whether slot s holds a detection (its rank is below its image's detection count)."""
    b = s // Q
    return (s - b * Q) < tl.load(out64_ptr + count_word + b)


@triton.jit
def _slot(s, Q, metai_ptr, query_ptr, masks_ptr, s_mb, s_mq):
    """Image metadata, source pointer and bilinear scales of an active slot s."""
    b = s // Q
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
    q = tl.load(query_ptr + s).to(tl.int64)
    src = masks_ptr + b * s_mb + q * s_mq
    sc_h = tl.math.div_rn((r1 - r0).to(tl.float32), Hp.to(tl.float32))
    sc_w = tl.math.div_rn((c1 - c0).to(tl.float32), Wp.to(tl.float32))
    return H, W, Hp, Wp, ox, oy, r0, r1, c0, c1, src, sc_h, sc_w


@triton.jit
def _prefix(ptr, stride, s, slots, BLOCK: tl.constexpr):
    """(sum of ptr[i * stride] for i < s, sum over all i < slots) as int64."""
    before = tl.zeros((), tl.int64)
    total = tl.zeros((), tl.int64)
    for start in range(0, slots, BLOCK):
        i = start + tl.arange(0, BLOCK)
        v = tl.load(ptr + i.to(tl.int64) * stride, mask=i < slots, other=0).to(tl.int64)
        before += tl.sum(tl.where(i < s, v, 0), axis=0)
        total += tl.sum(v, axis=0)
    return before, total


@triton.jit(do_not_specialize=_NO_SPEC)
def region_kernel(
    masks_ptr, s_mb, s_mq, s_mh, s_mw, Q, metai_ptr, query_ptr, out64_ptr, count_word, region_ptr, nb_ptr,
    SRC_BLOCK: tl.constexpr,
):  # fmt: skip
    s = tl.program_id(0).to(tl.int64)
    rp = region_ptr + s * 8
    tl.store(nb_ptr + s, 0)
    if _active(s, Q, out64_ptr, count_word):
        H, W, Hp, Wp, ox, oy, r0, r1, c0, c1, src, sc_h, sc_w = _slot(s, Q, metai_ptr, query_ptr, masks_ptr, s_mb, s_mq)
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
        # Candidate positions: strips of rows R0..R1 (R1 = H meaning row 0 of the next column) per column, or,
        # for a full-height region, whole columns plus one more (whose row 0 may end the last run).
        full = (R0 == 0) & (R1 == H)
        rowstart = tl.where(full, 0, R0)
        L = tl.where(full, H, R1 - R0 + 1)
        ncols = tl.where(full, tl.minimum(C1 + 1, W) - C0, C1 - C0)
        ncols = tl.where((rmax >= 0) & (yhi > ylo) & (xhi > xlo), ncols, 0)
        tl.store(rp, rowstart)
        tl.store(rp + 1, L)
        tl.store(rp + 2, C0)
        tl.store(rp + 3, ncols)
        tl.store(rp + 4, ylo)
        tl.store(rp + 5, yhi)
        tl.store(rp + 6, xlo)
        tl.store(rp + 7, xhi)
    else:
        tl.store(rp + 3, 0)  # ncols = 0: inactive slots take no workspace


@triton.jit
def _region(region_ptr, s):
    rp = region_ptr + s * 8
    return (
        tl.load(rp), tl.load(rp + 1), tl.load(rp + 2), tl.load(rp + 3),
        tl.load(rp + 4), tl.load(rp + 5), tl.load(rp + 6), tl.load(rp + 7),
    )  # fmt: skip


@triton.jit(do_not_specialize=_NO_SPEC)
def count_kernel(
    masks_ptr, s_mb, s_mq, s_mh, s_mw, Q, slots, metai_ptr, query_ptr, out64_ptr, count_word, region_ptr, nb_ptr,
    ws_ptr, ws_cap, groups, TR: tl.constexpr, TC: tl.constexpr, PBLOCK: tl.constexpr, GATHER: tl.constexpr,
):  # fmt: skip
    """Boundaries per column of column groups g, g + groups, ... of slot s, into the column-count area."""
    s = tl.program_id(0).to(tl.int64)
    g0 = tl.program_id(1)
    # Inactive slots and column groups past the region exit after two loads.
    ncols = tl.where(_active(s, Q, out64_ptr, count_word), tl.load(region_ptr + s * 8 + 3), 0)
    if g0 * TC < ncols:
        H, W, _Hp, _Wp, ox, oy, r0, r1, c0, c1, src, sc_h, sc_w = _slot(
            s, Q, metai_ptr, query_ptr, masks_ptr, s_mb, s_mq
        )
        rowstart, L, C0, _n, ylo, yhi, xlo, xhi = _region(region_ptr, s)
        colbase, total_cols = _prefix(region_ptr + 3, 8, s, slots, PBLOCK)
        HW = H.to(tl.int64) * W
        nb = tl.zeros((), tl.int64)
        for cg in range(g0 * TC, ncols, groups * TC):
            k = cg + tl.arange(0, TC)
            colcnt = tl.zeros((TC,), tl.int64)
            carry = _first_prev(
                k, rowstart, C0, ncols, H, src, s_mh, s_mw, r0, c0, r1 - r0, c1 - c0, oy, ox, ylo, yhi, xlo, xhi,
                sc_h, sc_w,
            )  # fmt: skip
            for rg in range(0, L, TR):
                t = rg + tl.arange(0, TR)
                bnd, _p, carry = _boundaries(
                    t, k, carry, rowstart, L, C0, ncols, H, HW, src, s_mh, s_mw, r0, c0, r1 - r0, c1 - c0, oy, ox,
                    ylo, yhi, xlo, xhi, sc_h, sc_w, TR, GATHER,
                )  # fmt: skip
                colcnt += tl.sum(bnd.to(tl.int64), axis=0)
            tl.store(ws_ptr + colbase + k, colcnt, mask=k < tl.where(total_cols <= ws_cap, ncols, 0))
            nb += tl.sum(colcnt, axis=0)
        tl.atomic_add(nb_ptr + s, nb)


@triton.jit(do_not_specialize=_NO_SPEC)
def write_kernel(
    masks_ptr, s_mb, s_mq, s_mh, s_mw, Q, slots, metai_ptr, query_ptr, out64_ptr, count_word, region_ptr, nb_ptr,
    ws_ptr, ws_cap, groups, TR: tl.constexpr, TC: tl.constexpr, PBLOCK: tl.constexpr, GATHER: tl.constexpr,
):  # fmt: skip
    """Flat positions of the boundaries of the same column groups, sorted, into the slot's boundary area."""
    s = tl.program_id(0).to(tl.int64)
    g0 = tl.program_id(1)
    # Inactive slots and column groups past the region exit after two loads.
    ncols = tl.where(_active(s, Q, out64_ptr, count_word), tl.load(region_ptr + s * 8 + 3), 0)
    if g0 * TC < ncols:
        H, W, _Hp, _Wp, ox, oy, r0, r1, c0, c1, src, sc_h, sc_w = _slot(
            s, Q, metai_ptr, query_ptr, masks_ptr, s_mb, s_mq
        )
        rowstart, L, C0, _n, ylo, yhi, xlo, xhi = _region(region_ptr, s)
        colbase, total_cols = _prefix(region_ptr + 3, 8, s, slots, PBLOCK)
        nb_before, total_nb = _prefix(nb_ptr, 1, s, slots, PBLOCK)
        if total_cols + total_nb <= ws_cap:
            HW = H.to(tl.int64) * W
            bptr = ws_ptr + total_cols + nb_before
            for cg in range(g0 * TC, ncols, groups * TC):
                # Boundaries of this slot's columns before cg.
                before = tl.zeros((), tl.int64)
                for i0 in range(0, cg, PBLOCK):
                    i = i0 + tl.arange(0, PBLOCK)
                    before += tl.sum(tl.load(ws_ptr + colbase + i, mask=i < cg, other=0), axis=0)
                k = cg + tl.arange(0, TC)
                cc = tl.load(ws_ptr + colbase + k, mask=k < ncols, other=0)
                colstart = before + tl.cumsum(cc, axis=0) - cc
                carry = _first_prev(
                    k, rowstart, C0, ncols, H, src, s_mh, s_mw, r0, c0, r1 - r0, c1 - c0, oy, ox, ylo, yhi, xlo, xhi,
                    sc_h, sc_w,
                )  # fmt: skip
                for rg in range(0, L, TR):
                    t = rg + tl.arange(0, TR)
                    bnd, p, carry = _boundaries(
                        t, k, carry, rowstart, L, C0, ncols, H, HW, src, s_mh, s_mw, r0, c0, r1 - r0, c1 - c0, oy,
                        ox, ylo, yhi, xlo, xhi, sc_h, sc_w, TR, GATHER,
                    )  # fmt: skip
                    bi = bnd.to(tl.int64)
                    pos = tl.cumsum(bi, axis=0) - bi + colstart[None, :]
                    tl.store(bptr + pos, p, mask=bnd)
                    colstart += tl.sum(bi, axis=0)


@triton.jit
def _bound(base, idx, nb, HW):
    """Boundary idx of a mask with nb boundaries, with the implicit 0 before and H*W after."""
    v = tl.load(base + idx, mask=(idx >= 0) & (idx < nb), other=0)
    return tl.where(idx < 0, 0, tl.where(idx >= nb, HW, v))


@triton.jit
def _encoded(base, i, nb, HW):
    """pycocotools' characters for counts i: (chars [N, 8] int64, number used [N]); delta vs i - 2 when i > 2."""
    b0 = _bound(base, i, nb, HW)
    b1 = _bound(base, i - 1, nb, HW)
    b2 = _bound(base, i - 2, nb, HW)
    b3 = _bound(base, i - 3, nb, HW)
    x = (b0 - b1) - tl.where(i > 2, b2 - b3, 0)
    g = tl.arange(0, 8).to(tl.int64)[None, :]
    xg = x[:, None] >> (5 * g)
    c = xg & 31
    rest = xg >> 5
    done = tl.where((c & 16) != 0, rest == -1, rest == 0)
    last = tl.min(tl.where(done, g, 7), axis=1)
    chars = c + 48 + tl.where(g < last[:, None], 32, 0)
    return chars, last + 1


@triton.jit(do_not_specialize=_NO_SPEC)
def compress_kernel(
    Q, slots, metai_ptr, out64_ptr, out8_ptr, count_word, string_word, region_ptr, nb_ptr, ws_ptr, ws_cap, out_cap,
    CBLK: tl.constexpr, PBLOCK: tl.constexpr,
):  # fmt: skip
    """COCO counts string of slot s into the result buffer; program 0 also reports the workspace size needed."""
    s = tl.program_id(0).to(tl.int64)
    b = s // Q
    active = (s - b * Q) < tl.load(out64_ptr + count_word + b)
    if active | (s == 0):
        nb_before, total_nb = _prefix(nb_ptr, 1, s, slots, PBLOCK)
        _c, total_cols = _prefix(region_ptr + 3, 8, s, slots, PBLOCK)
        needed = total_cols + total_nb
        if s == 0:
            tl.store(out64_ptr, needed)
        if active & (needed <= ws_cap):
            HW = tl.load(metai_ptr + b * 10).to(tl.int64) * tl.load(metai_ptr + b * 10 + 1)
            nb = tl.load(nb_ptr + s)
            bptr = ws_ptr + total_cols + nb_before
            m = nb + 1
            g = tl.arange(0, 8).to(tl.int64)[None, :]
            length = tl.zeros((), tl.int64)
            for i0 in range(0, m, CBLK):
                i = i0 + tl.arange(0, CBLK).to(tl.int64)
                _chars, used = _encoded(bptr, i, nb, HW)
                length += tl.sum(tl.where(i < m, used, 0), axis=0)
            soff = tl.atomic_add(out64_ptr + 1, length)
            if soff + length <= out_cap:
                cursor = soff
                for i0 in range(0, m, CBLK):
                    i = i0 + tl.arange(0, CBLK).to(tl.int64)
                    chars, used = _encoded(bptr, i, nb, HW)
                    used = tl.where(i < m, used, 0)
                    first = cursor + tl.cumsum(used, axis=0) - used
                    tl.store(out8_ptr + first[:, None] + g, chars.to(tl.uint8), mask=g < used[:, None])
                    cursor += tl.sum(used, axis=0)
                tl.store(out64_ptr + string_word + 2 * s, soff)
                tl.store(out64_ptr + string_word + 2 * s + 1, length)
