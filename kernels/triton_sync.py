"""Ordering primitives shared by the kernels: the system-scope fence and programmatic dependent launch.

Programmatic dependent launch (Hopper and later): a kernel launched with it may start before the kernel ahead of
it on the stream has completed; it must wait (griddepcontrol.wait) before touching anything that kernel writes.
Every kernel after the first of a call waits first thing, unconditionally (a program that returned without
waiting could let its kernel complete before the one it depends on). The next kernel launches as this one's
programs exit, so its launch overlaps this one's tail and memory flush: 1.5-2.5% off the call's GPU time on the
H200. Letting it launch earlier (griddepcontrol.launch_dependents right after the wait) was slower, up to 10% at
4K: the waiting programs of the next kernel take SM slots, and the persistent count / write kernels then start
unevenly spread (docs/TRITON.md). Compiled out under the interpreter.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["fence_system", "wait_for_previous_kernel"]


@triton.jit
def wait_for_previous_kernel(PDL: tl.constexpr):
    """With PDL: wait until the previous kernel on the stream has completed and its writes are visible."""
    if PDL:
        tl.extra.cuda.gdc_wait()


@triton.jit
def fence_system(x, USE_ASM: tl.constexpr):
    """x, after a system-scope acquire-release fence: every earlier write of this thread (and every write it has
    observed) is visible to the host before any later one. The kernels' pattern is message passing (host writes,
    fence, ticket; the last ticket, fence, flag), for which acq_rel suffices; fence.sc (sequential consistency
    among fences) is a heavier barrier that nothing here needs. The interpreter runs programs one after another on
    the host: nothing to fence there."""
    if USE_ASM:
        x = tl.inline_asm_elementwise(
            "fence.acq_rel.sys; mov.b64 $0, $1;", "=l,l", [x], dtype=tl.int64, is_pure=False, pack=1
        )
    return x
