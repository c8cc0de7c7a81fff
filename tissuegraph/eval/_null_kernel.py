"""Compiled kernel of the mAP null distributions (imported lazily: it imports numba).

numpy's PCG64 stream and Fisher-Yates shuffle, replayed.  copairs' ``random_binary_matrix`` shuffles every
row of a ``null_size x total`` index matrix with ``Generator.permuted`` (numpy's ``_shuffle_raw``: for ``i = total-1 .. 1`` swap positions ``i`` and
``random_interval(i)``, a masked rejection draw on PCG64's buffered 32-bit outputs) and keeps the values at
the first ``num_pos`` positions.  This kernel consumes the same stream draw for draw (a PCG64 step in
64-bit halves, with numpy's 32-bit buffering) but never materialises the matrix: once the shuffle has
passed position ``num_pos`` the set of values in the first ``num_pos`` positions is fixed, and each step
only moves the value at ``i`` (final) to ``j``: the draws of one null sample are recorded and the first
``num_pos`` positions are traced back through them.  Same values
as copairs (the tests compare them), O(total) draws per null sample and O(total) memory in all.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def mulhi64(typingctx, a, b):
    """High 64 bits of the 128-bit product a * b (one MUL instruction on x86-64)."""
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i128 = ir.IntType(128)
        prod = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        return builder.trunc(builder.lshr(prod, ir.Constant(i128, 64)), ir.IntType(64))

    return sig, codegen


def _null_sets(st, null_size, m, total, out):  # pragma: no cover - compiled
    # st: uint64[6] = PCG64 state (hi, lo), increment (hi, lo), has_uint32, uinteger.  Advanced in place.
    # The shuffle of one null sample draws j = random_interval(i) for i = total-1 .. 1; a draw is a 32-bit
    # value v & mask(i), rejected while > i.  The loop below walks the 32-bit stream (both halves of each
    # PCG64 output, low half first, as numpy's buffering) and handles accept/reject without a branch.
    M32 = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    one = np.uint64(1)
    zero = np.uint64(0)
    mhi = np.uint64(0x2360ED051FC65DA4)  # PCG_DEFAULT_MULTIPLIER_128
    mlo = np.uint64(0x4385DF649FCCF645)
    shi = st[0]
    slo = st[1]
    ihi = st[2]
    ilo = st[3]
    if total <= 1:  # nothing to shuffle, nothing drawn
        for r in range(null_size):
            for p in range(m):
                out[r, p] = p
        return
    J = np.zeros(total, np.int64)  # J[i] = the accepted draw of step i of the current null sample
    inset = np.zeros(total, np.int64)  # generation stamps of the positions being traced
    pos = np.zeros(m, np.int64)
    r = 0
    g = 1
    i = total - 1
    mask = np.uint64(i)
    mask |= mask >> one
    mask |= mask >> np.uint64(2)
    mask |= mask >> np.uint64(4)
    mask |= mask >> np.uint64(8)
    mask |= mask >> np.uint64(16)
    mask |= mask >> s32
    mask0 = mask
    pending = st[4] != 0  # a buffered upper half from the previous call comes first
    buf = st[5]
    while r < null_size:
        if pending:
            v = buf
            pending = False
            half = 1  # the next value is the low half of a fresh output
        else:
            nlo = slo * mlo
            nhi = shi * mlo + slo * mhi + mulhi64(slo, mlo)
            lo2 = nlo + ilo
            shi = nhi + ihi + (one if lo2 < nlo else zero)
            slo = lo2
            x = shi ^ slo
            rot = shi >> np.uint64(58)
            o = (x >> rot) | (x << ((np.uint64(64) - rot) & np.uint64(63)))
            v = o & M32
            buf = o >> s32
            half = 0  # then the upper half
        for h in range(2 - half):
            if h == 1:
                v = buf
            w = v & mask
            acc = np.intp(w <= np.uint64(i))  # 1 accepted, 0 rejected (no branch on it)
            J[i] = np.intp(w)  # a rejected draw is overwritten by the next one (i does not move)
            i -= acc
            if i == 0:  # null sample r is complete: its first m positions
                # the values that end in positions 0..m-1: follow those positions back through the swaps
                # (i, J[i]) for i = m .. total-1 (steps below m only reorder them); where a traced position
                # was the target J[i] of a swap, its value came from position i
                for p in range(m):
                    pos[p] = p
                    inset[p] = g
                for k in range(m, total):
                    jk = J[k]
                    if inset[jk] == g:
                        inset[jk] = 0
                        inset[k] = g
                        for p in range(m):
                            if pos[p] == jk:
                                pos[p] = k
                                break
                for p in range(m):
                    out[r, p] = pos[p]
                r += 1
                g += 1
                i = total - 1
                if r == null_size:
                    if h == 0 and half == 0:  # the upper half stays buffered for the next call
                        pending = True
                    break
                mask = mask0
            else:  # i fell by at most one: its mask (all bits up to its highest) halves at a power of two
                mask >>= np.uint64(np.uint64(i) <= (mask >> one))
    st[0] = shi
    st[1] = slo
    st[4] = one if pending else zero
    st[5] = buf


try:
    null_sets = njit(nogil=True, cache=True)(_null_sets)
except RuntimeError:  # numba: "cannot cache function ...: no locator available" (read-only install)
    null_sets = njit(nogil=True)(_null_sets)
