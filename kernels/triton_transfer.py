"""Triton copy kernels between the pinned host buffers and the device, used in place of copy nodes.

In a CUDA graph a kernel node costs the driver almost nothing to launch while every copy node costs 1.5-2 us
warm and 2-3.5 us on a cold host (measured on the H100, docs/TRITON.md), so the argument upload and the
result copy back are kernels reading / writing pinned host memory directly (mapped into the GPU's address
space under unified addressing). The copy back ends with the call's sequence number in a pinned flag, written
by the last program after every program's system-scope fence: once the host sees it, all bytes have landed.
A kernel also copies exactly the bytes the call produced (the header says how many), where a copy node copies
a size fixed at capture.
"""

from __future__ import annotations

import triton
import triton.language as tl

from kernels.triton_layout import ARG_COPY_TICKET, ARG_SEQ, host_result_buffer, result_buffer
from kernels.triton_sync import fence_system, wait_for_previous_kernel

__all__ = ["copy_back_kernel", "upload_kernel"]

_A_SEQ = tl.constexpr(ARG_SEQ)
_A_COPY_TICKET = tl.constexpr(ARG_COPY_TICKET)


@triton.jit(do_not_specialize=["words"])
def upload_kernel(src_ptr, dst_ptr, words, BLOCK: tl.constexpr):
    """The argument block from pinned host memory into its device twin (.cv: never a cached host line)."""
    # timeline: upload start
    for start in range(0, words, BLOCK):
        o = start + tl.arange(0, BLOCK)
        tl.store(dst_ptr + o, tl.load(src_ptr + o, mask=o < words, cache_modifier=".cv"), mask=o < words)
        # timeline: upload end


@triton.jit(do_not_specialize=["nprog"])
def copy_back_kernel(
    args_ptr, flag_ptr, nprog, BLOCK: tl.constexpr, USE_ASM: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    """The used part of the result buffer (header word 1: bytes the call needs; at most its capacity) into its
    pinned host twin (both named by the argument block), then the sequence number into the pinned flag (the
    last program to finish, after every program fenced its writes)."""
    wait_for_previous_kernel(PDL)
    src_ptr, cap_bytes = result_buffer(args_ptr, args_ptr)
    dst_ptr = host_result_buffer(args_ptr, args_ptr)
    cap_words = cap_bytes // 8
    words = tl.minimum((tl.load(src_ptr + 1, cache_modifier=".cg") + 7) // 8, cap_words)
    for start in range(tl.program_id(0) * BLOCK, words, nprog * BLOCK):
        o = start + tl.arange(0, BLOCK)
        tl.store(dst_ptr + o, tl.load(src_ptr + o, mask=o < words, cache_modifier=".cg"), mask=o < words)
    tl.debug_barrier()  # the block's writes before any thread's fence
    one = fence_system(tl.full((), 1, tl.int64), USE_ASM)
    if tl.atomic_add(args_ptr + _A_COPY_TICKET, one) == nprog - 1:
        seq = fence_system(tl.load(args_ptr + _A_SEQ), USE_ASM)
        tl.store(flag_ptr, seq)
