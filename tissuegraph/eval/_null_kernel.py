"""Compiled kernel of the mAP null distributions (imported lazily: it imports numba).

numpy's PCG64 stream and Fisher-Yates shuffle, replayed.  copairs' ``random_binary_matrix`` shuffles every
row of a ``null_size x total`` index matrix with ``Generator.permuted`` (numpy's ``_shuffle_raw``: for
``i = total-1 .. 1`` swap positions ``i`` and ``random_interval(i)``, a masked rejection draw on PCG64's
buffered 32-bit outputs), keeps the values at the first ``num_pos`` positions, sorts them and turns them into
an AP (``copairs.compute.average_precision``).  :func:`null_aps` consumes the same stream draw for draw but
never materialises the matrix: one row of ``total`` values is shuffled in place (only the stores that can
reach the first ``num_pos`` positions are made), and its AP computed as numpy computes it (same dtypes, the
same pairwise float summation as ``ndarray.sum``).  The PCG64 outputs are generated ahead in four interleaved
lanes (each lane jumps four steps at a time), so that the 128-bit multiplications of independent steps
overlap instead of forming one serial chain.  O(total) memory, O(null_size x total) draws.

The stream is serial: where one null sample starts depends on how many draws every earlier sample rejected.
Cutting it into chunks that start from a guessed shuffle position and heal when the guessed walk meets the
true one (both take the same draws) was tried: two such walks do meet (their order is preserved), but for
``total`` in the thousands only after hundreds of samples in most cases, so nearly every chunk had to be
redone serially.  Threads are used across configurations instead (see ``_null_distributions``).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def mul128(typingctx, a, b):
    """(high, low) 64 bits of the 128-bit product a * b (one MUL instruction on x86-64)."""
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i128 = ir.IntType(128)
        i64 = ir.IntType(64)
        prod = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        hi = builder.trunc(builder.lshr(prod, ir.Constant(i128, 64)), i64)
        lo = builder.trunc(prod, i64)
        return context.make_tuple(builder, signature.return_type, (hi, lo))

    return sig, codegen


def _jit(f):
    try:
        return njit(nogil=True, cache=True)(f)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available" (read-only install)
        return njit(nogil=True)(f)


def _leaf_sum(a, lo, n):  # pragma: no cover - compiled
    # numpy's pairwise summation (loops_utils.h) for n <= 128: < 8 values in sequence, else eight accumulators
    if n < 8:
        res = a[lo] - a[lo]
        for k in range(n):
            res += a[lo + k]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    k = 8
    end = n - (n % 8)
    while k < end:
        r0 += a[lo + k]
        r1 += a[lo + k + 1]
        r2 += a[lo + k + 2]
        r3 += a[lo + k + 3]
        r4 += a[lo + k + 4]
        r5 += a[lo + k + 5]
        r6 += a[lo + k + 6]
        r7 += a[lo + k + 7]
        k += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while k < n:
        res += a[lo + k]
        k += 1
    return res


leaf_sum = _jit(_leaf_sum)


def _pairwise_sum(a, n, fl, fn, fs, vals):  # pragma: no cover - compiled
    # numpy's pairwise summation of a[0:n] in the dtype of `a` (ndarray.sum over a contiguous row is 0 + this):
    # above 128 values the range is split at n2 = n // 2 rounded down to a multiple of 8 and the two halves
    # summed recursively.  The recursion is run on an explicit stack (fl/fn/fs: frame start, length, stage;
    # vals: partial sums), as numba does not cache recursive functions.
    if n <= 128:
        return leaf_sum(a, 0, n)
    top = 1
    fl[0] = 0
    fn[0] = n
    fs[0] = 0
    nv = 0
    while top > 0:
        f = top - 1
        lo = fl[f]
        cnt = fn[f]
        if cnt <= 128:
            vals[nv] = leaf_sum(a, lo, cnt)
            nv += 1
            top -= 1
            continue
        n2 = cnt // 2
        n2 -= n2 % 8
        if fs[f] == 0:
            fs[f] = 1
            fl[top] = lo
            fn[top] = n2
            fs[top] = 0
            top += 1
        elif fs[f] == 1:
            fs[f] = 2
            fl[top] = lo + n2
            fn[top] = cnt - n2
            fs[top] = 0
            top += 1
        else:
            vals[nv - 2] = vals[nv - 2] + vals[nv - 1]
            nv -= 1
            top -= 1
    return vals[0]


pairwise_sum = _jit(_pairwise_sum)


def _mask_of(i):  # pragma: no cover - compiled
    mask = np.uint64(i)
    mask |= mask >> np.uint64(1)
    mask |= mask >> np.uint64(2)
    mask |= mask >> np.uint64(4)
    mask |= mask >> np.uint64(8)
    mask |= mask >> np.uint64(16)
    mask |= mask >> np.uint64(32)
    return mask


mask_of = _jit(_mask_of)


def _refill(lanes, jump, buf):  # pragma: no cover - compiled
    # the next 4 * (len(buf) // 8) PCG64 outputs, as 32-bit halves (low first), from 4 interleaved lanes;
    # each lane is then advanced by 4 steps (state = state * A + C mod 2**128, A = multiplier**4).
    # The four lanes are written out by hand, not looped over an array: their states stay scalar locals
    # (registers) and the four independent 128-bit multiplications overlap; this repetition is the speed.
    M32 = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    s58 = np.uint64(58)
    c63 = np.uint64(63)
    c64 = np.uint64(64)
    one = np.uint64(1)
    zero = np.uint64(0)
    Ahi = jump[0]
    Alo = jump[1]
    Chi = jump[2]
    Clo = jump[3]
    h0 = lanes[0, 0]
    l0 = lanes[0, 1]
    h1 = lanes[1, 0]
    l1 = lanes[1, 1]
    h2 = lanes[2, 0]
    l2 = lanes[2, 1]
    h3 = lanes[3, 0]
    l3 = lanes[3, 1]
    for t in range(buf.shape[0] // 8):
        x0 = h0 ^ l0
        r0 = h0 >> s58
        o0 = (x0 >> r0) | (x0 << ((c64 - r0) & c63))
        x1 = h1 ^ l1
        r1 = h1 >> s58
        o1 = (x1 >> r1) | (x1 << ((c64 - r1) & c63))
        x2 = h2 ^ l2
        r2 = h2 >> s58
        o2 = (x2 >> r2) | (x2 << ((c64 - r2) & c63))
        x3 = h3 ^ l3
        r3 = h3 >> s58
        o3 = (x3 >> r3) | (x3 << ((c64 - r3) & c63))
        q = 8 * t
        buf[q] = o0 & M32
        buf[q + 1] = o0 >> s32
        buf[q + 2] = o1 & M32
        buf[q + 3] = o1 >> s32
        buf[q + 4] = o2 & M32
        buf[q + 5] = o2 >> s32
        buf[q + 6] = o3 & M32
        buf[q + 7] = o3 >> s32
        ph0, n0 = mul128(l0, Alo)
        h0 = h0 * Alo + l0 * Ahi + ph0 + Chi
        l0 = n0 + Clo
        h0 += one if l0 < n0 else zero
        ph1, n1 = mul128(l1, Alo)
        h1 = h1 * Alo + l1 * Ahi + ph1 + Chi
        l1 = n1 + Clo
        h1 += one if l1 < n1 else zero
        ph2, n2 = mul128(l2, Alo)
        h2 = h2 * Alo + l2 * Ahi + ph2 + Chi
        l2 = n2 + Clo
        h2 += one if l2 < n2 else zero
        ph3, n3 = mul128(l3, Alo)
        h3 = h3 * Alo + l3 * Ahi + ph3 + Chi
        l3 = n3 + Clo
        h3 += one if l3 < n3 else zero
    lanes[0, 0] = h0
    lanes[0, 1] = l0
    lanes[1, 0] = h1
    lanes[1, 1] = l1
    lanes[2, 0] = h2
    lanes[2, 1] = l2
    lanes[3, 0] = h3
    lanes[3, 1] = l3


refill = _jit(_refill)


_NB = 256  # PCG64 outputs generated per refill of the draw buffer (4 interleaved lanes)


def _null_aps(lanes, jump, null_size, m, total, out):  # pragma: no cover - compiled
    # copairs.compute.random_ap(null_size, m, total, seed), sample for sample.
    # lanes: uint64[4, 2] = PCG64 states (hi, lo) after 1, 2, 3, 4 outputs of the generator (which has no
    #   buffered half); jump: uint64[4] = multiplier^4 (hi, lo) and the increment of 4 steps (hi, lo), so lane k
    #   yields outputs k, k + 4, k + 8, ... (independent chains: the CPU overlaps their multiplications).
    # The 32-bit draws are the low then the high half of each output (numpy's buffering).
    # Each sample: Fisher-Yates over a = 0..total-1 for i = total-1 .. 1, j = random_interval(i) (masked
    # rejection); only positions 0..m-1 are needed at the end, so once i < m the draws are consumed but the
    # (within-prefix) swaps skipped, and above m only a[j] = a[i] is stored (position i is never read again).
    one = np.uint64(1)
    buf = np.empty(2 * _NB, dtype=np.uint32)
    nbd = 2 * _NB
    p = nbd  # buffer empty
    a = np.empty(total, dtype=np.int32)
    pos = np.empty(m, dtype=np.int64)
    pr32 = np.empty(m, dtype=np.float32)
    pr64 = np.empty(m, dtype=np.float64)
    fl = np.zeros(64, np.int64)  # pairwise-summation stack
    fn = np.zeros(64, np.int64)
    fs = np.zeros(64, np.int64)
    v32 = np.zeros(64, np.float32)
    v64 = np.zeros(64, np.float64)
    wide = total >= 65536  # copairs' positions are uint32 then: the AP is computed in float64
    fm32 = np.float32(m)
    fm64 = np.float64(m)
    mask0 = mask_of(total - 1)
    for r in range(null_size):
        for x in range(total):
            a[x] = x
        i = total - 1
        mask = mask0
        # steps i >= m: the swap's target gets a[i]
        while i >= m:
            half = mask >> one
            stop = np.intp(half) if np.intp(half) >= m - 1 else m - 1
            while i > stop:
                if p == nbd:
                    refill(lanes, jump, buf)
                    p = 0
                w = np.intp(buf[p] & mask)
                p += 1
                acc = w <= i
                j = w if acc else i
                a[j] = a[i]
                i -= np.intp(acc)
            if i <= np.intp(half):
                mask = half
        # steps i < m: positions 0..m-1 hold their final set; the draws are still consumed
        while i > 0:
            half = mask >> one
            while i > np.intp(half):
                if p == nbd:
                    refill(lanes, jump, buf)
                    p = 0
                w = np.intp(buf[p] & mask)
                p += 1
                i -= np.intp(w <= i)
            mask = half
        # the sorted values at positions 0..m-1 and their AP (copairs.compute.average_precision)
        for k in range(m):
            pos[k] = a[k]
        if m <= 32:
            for u in range(1, m):
                val = pos[u]
                b = u - 1
                while b >= 0 and pos[b] > val:
                    pos[b + 1] = pos[b]
                    b -= 1
                pos[b + 1] = val
        else:
            pos[:] = np.sort(pos)
        if wide:
            for k in range(m):
                pr64[k] = np.float64(k + 1) / np.float64(pos[k] + 1)
            out[r] = np.float32((0.0 + pairwise_sum(pr64, m, fl, fn, fs, v64)) / fm64)
        else:
            for k in range(m):
                pr32[k] = np.float32(k + 1) / np.float32(pos[k] + 1)
            out[r] = (np.float32(0.0) + pairwise_sum(pr32, m, fl, fn, fs, v32)) / fm32


null_aps = _jit(_null_aps)
