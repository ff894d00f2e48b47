"""Integer 2-D convolution (SPEC.md clause 7.1).

Layout: activations are channels-last, ``x[y, x, c]``; weights are
``w[cout, ky, kx, cin]``.  Stride 1, zero padding ``k // 2`` on each side,
odd ``k``.

Definition, for every output position (y, x) and output channel c::

    acc  = b[c] + sum_{ky, kx, ci} w[c, ky, kx, ci] * xpad[y + ky, x + kx, ci]
    r    = shift[c]                                   (0 <= r <= 31)
    out  = clamp((acc + (2^(r-1) if r > 0 else 0)) >> r, lo, hi)

``>>`` is the arithmetic shift, so the rounding is half up (toward +inf on
ties).  Requires (the no-overflow bound, checked when a model is loaded by
:func:`accumulator_bound`)::

    sum |w[c]| * max|x| + |b[c]| + 2^(r-1) <= 2^31 - 1

so that ``acc`` and ``acc + rounding`` fit int32 and every backend, whatever
its summation order, gets the same exact integer.

Bit widths: x int16; w int16 (W16 mode) or int8 (W8 mode); b int32;
products fit int32 (|w*x| <= 2^30); acc fits int32 (by the bound);
out int16 within [lo, hi] (``lo = 0`` fuses a ReLU).
"""

import numpy as np
from numba import njit, prange

from .config import INT16_MAX, INT16_MIN, NJIT, NJIT_INLINE, NJIT_PARALLEL, check_backend
from .simd import BLOCKS, MAX_PIXELS, madd_6x16, madd_8x16, madd_8x32, madd_12x8, variant_for


def _check_args(x, w, b, shift, lo, hi):
    from .errors import error
    if x.ndim != 3 or w.ndim != 4 or x.dtype != np.int16:
        raise error("argument", f"conv2d: x must be int16 (H, W, Cin), got {x.dtype} {x.shape}")
    cout, k, k2, cin = w.shape
    if k != k2 or k % 2 != 1 or cin != x.shape[2]:
        raise error("argument", f"conv2d: weight shape {w.shape} does not fit input {x.shape}")
    if w.dtype not in (np.int16, np.int8):
        raise error("argument", f"conv2d: weights must be int16 or int8, got {w.dtype}")
    if b.shape != (cout,) or b.dtype != np.int32 or shift.shape != (cout,) or shift.dtype != np.int32:
        raise error("argument", "conv2d: bias and shift must be int32 arrays of length Cout")
    if shift.size and (shift.min() < 0 or shift.max() > 31):
        raise error("argument", "conv2d: shifts must lie in [0, 31]")
    if not (INT16_MIN <= lo <= hi <= INT16_MAX):
        raise error("argument", f"conv2d: clamp bounds [{lo}, {hi}] outside int16")


def accumulator_bound(w, b, shift, in_max):
    """Largest possible |acc| + rounding offset for each output channel.

    ``in_max`` is the largest |x| the layer can receive (32768 for int16).
    Returned as Python ints (exact); the layer is safe when every value is
    at most 2^31 - 1.
    """
    w64 = np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1)
    out = []
    for c in range(w.shape[0]):
        r = int(shift[c])
        out.append(int(w64[c]) * int(in_max) + abs(int(b[c])) + ((1 << (r - 1)) if r > 0 else 0))
    return out


# --------------------------------------------------------------------------
# numpy: the oracle.  Exact int64 arithmetic, written to be read.
# --------------------------------------------------------------------------

def requantize_numpy(acc, shift, lo, hi):
    """Round-half-up right shift by ``shift[c]`` then clamp to [lo, hi]; acc int64 (..., C)."""
    r = shift.astype(np.int64)
    rounding = np.where(r > 0, np.left_shift(np.int64(1), np.maximum(r - 1, 0)), 0)
    return np.clip((acc + rounding) >> r, lo, hi).astype(np.int16)


def conv2d_numpy(x, w, b, shift, lo=INT16_MIN, hi=INT16_MAX):
    h, wd, cin = x.shape
    cout, k, _, _ = w.shape
    p = k // 2
    xp = np.pad(x.astype(np.int64), ((p, p), (p, p), (0, 0)))
    acc = np.zeros((h, wd, cout), np.int64) + b.astype(np.int64)
    w64 = w.astype(np.int64)
    for ky in range(k):
        for kx in range(k):
            patch = xp[ky:ky + h, kx:kx + wd, :]                 # (h, wd, cin)
            acc += patch @ w64[:, ky, kx, :].T                   # (h, wd, cout)
    return requantize_numpy(acc, shift, lo, hi)


# --------------------------------------------------------------------------
# numba CPU.  Each output row is one prange task, in blocks of pixels.  A
# kernels.simd micro-kernel computes a block of pixels x output channels at
# a time from the pair-interleaved weights and the k x k x Cin patches
# (K = k*k*Cin, padded to even): read straight from x inside the picture
# (the k taps of one kernel row are contiguous there), gathered into a small
# im2col matrix P at its edges
# (vpmaddwd / vpdpwssd on x86; 6 x 16 on AVX2, 8 x 32 on AVX-512, 12 x 8
# for layers of at most 8 outputs, see kernels.simd.BLOCKS).  Requantization is done in int64 from the int32 sums.
# --------------------------------------------------------------------------

def interleave_weights(w, variant=None):
    """(Cout, k, k, Cin) int16/int8 -> int16 (ceil(Cout/L), Kp/2, L, 2) with
    Wi[cb, kp, c, j] = w[cb*L + c].flat[2*kp + j] (zero padded), L the lanes
    of the micro-kernel ``variant`` (by default the host's choice for Cout,
    :func:`kernels.simd.variant_for`)."""
    cout = w.shape[0]
    lanes = BLOCKS[variant_for(cout) if variant is None else variant][1]
    K = w[0].size
    kp = K + (K % 2)
    nblk = -(-cout // lanes)
    w2 = np.zeros((nblk * lanes, kp), np.int16)
    w2[:cout, :K] = w.reshape(cout, -1)
    return np.ascontiguousarray(w2.reshape(nblk, lanes, kp // 2, 2).transpose(0, 2, 1, 3))


@njit(**NJIT)
def _im2col_tile(x, y, k, xs, n, P):
    """P[i, (ky*k + kx)*cin + ci] = x[y + ky - k//2, xs + i + kx - k//2, ci]
    for i < n, 0 where that lies outside the picture.  Only a tile at an
    edge of the picture is zero-filled first (elsewhere every tap is
    copied).  For one pixel and one ky the k taps that lie inside the
    picture are one contiguous run in both x and P: one slice of the flat
    views (x and P C-contiguous) copies it."""
    h, wd, cin = x.shape
    p = k // 2
    kp = P.shape[1]
    if y < p or y + p >= h or xs < p or xs + n + p > wd:
        P[:n, :] = 0
    xf = x.reshape(-1)
    Pf = P.reshape(-1)
    for ky in range(k):
        yy = y + ky - p
        if yy < 0 or yy >= h:
            continue
        for xo in range(xs, xs + n):
            ka = max(0, p - xo)                 # first tap kx inside the picture
            kb = min(k, wd + p - xo)            # one past the last
            src = (yy * wd + xo + ka - p) * cin
            dst = (xo - xs) * kp + (ky * k + ka) * cin
            m = (kb - ka) * cin
            Pf[dst:dst + m] = xf[src:src + m]


@njit(**NJIT_INLINE)
def _requantize(acc, r, lo, hi):
    """clamp((acc + 2^(r-1)) >> r, lo, hi) for r > 0; clamp(acc) for r = 0 (acc exact, int64)."""
    if r > 0:
        acc = (acc + (np.int64(1) << (r - 1))) >> r
    if acc < lo:
        acc = lo
    elif acc > hi:
        acc = hi
    return acc


@njit(**NJIT_INLINE)
def _madd(variant, X, off, pstride, kp0, nkp, Wi, cb, acc):
    if variant == 3:
        madd_12x8(X, off, pstride, kp0, nkp, Wi, cb, acc)
    elif variant == 2:
        madd_8x32(X, off, pstride, kp0, nkp, Wi, cb, acc)
    elif variant == 1:
        madd_8x16(X, off, pstride, kp0, nkp, Wi, cb, acc)
    else:
        madd_6x16(X, off, pstride, kp0, nkp, Wi, cb, acc)


@njit(**NJIT_PARALLEL)
def _conv2d_cpu(x, Wi, b, shift, k, lo, hi, variant, out):
    h, wd, cin = x.shape
    cout = out.shape[2]
    nblk, khalf, lanes = Wi.shape[0], Wi.shape[1], Wi.shape[2]
    kp = 2 * khalf
    pixels = 6 if variant == 0 else (12 if variant == 3 else 8)      # BLOCKS[variant][0]
    pad = k // 2
    # Direct path: where all k taps of a kernel row lie inside the picture,
    # they are k * cin contiguous int16 in x, so the micro-kernel reads x
    # itself, one kernel row at a time, when those runs hold whole tap pairs
    # (k * cin even).  Elsewhere (picture edges, a last partial block, odd
    # k * cin) the block's patches are gathered into P first.
    direct = (k * cin) % 2 == 0
    seg = (k * cin) // 2
    xf = x.reshape(-1)
    # requantization without a branch per value (so that it vectorizes):
    # (acc + b + 2^(r-1)) >> r, the bias and the rounding offset added as
    # one int64 constant per channel (r = 0: no offset; exact, as above)
    bq = np.empty(cout, np.int64)
    rq = np.empty(cout, np.int64)
    for c in range(cout):
        rq[c] = shift[c]
        bq[c] = np.int64(b[c]) + ((np.int64(1) << (rq[c] - 1)) if rq[c] > 0 else np.int64(0))
    for y in prange(h):
        P = np.zeros((MAX_PIXELS, kp), np.int16)
        Pf = P.reshape(-1)
        acc = np.empty((MAX_PIXELS, lanes), np.int32)
        for x0 in range(0, wd, pixels):
            n = min(pixels, wd - x0)
            inner = direct and x0 >= pad and x0 + pixels + pad <= wd
            if not inner:
                _im2col_tile(x, y, k, x0, n, P)
            for cb in range(nblk):
                acc[:] = 0
                if inner:
                    for ky in range(k):
                        yy = y + ky - pad
                        if 0 <= yy < h:
                            _madd(variant, xf, (yy * wd + x0 - pad) * cin, cin, ky * seg, seg, Wi, cb, acc)
                else:
                    _madd(variant, Pf, 0, kp, 0, khalf, Wi, cb, acc)
                c0 = cb * lanes
                nc = min(lanes, cout - c0)
                for p in range(n):
                    o = out[y, x0 + p]
                    for c in range(nc):
                        v = (np.int64(acc[p, c]) + bq[c0 + c]) >> rq[c0 + c]
                        o[c0 + c] = np.int16(min(max(v, lo), hi))


def conv2d_cpu(x, w, b, shift, lo=INT16_MIN, hi=INT16_MAX, Wi=None, variant=None):
    """numba CPU convolution; ``Wi`` may carry :func:`interleave_weights` of w
    (a model does that once when it is loaded).  ``variant``: the micro-kernel
    (:data:`kernels.simd.BLOCKS`; every one gives the same integers), by
    default the host's choice for this layer."""
    if variant is None:
        variant = variant_for(w.shape[0]) if Wi is None else \
            {32: 2, 8: 3}.get(Wi.shape[2], variant_for(max(9, min(16, w.shape[0]))))
    if Wi is None:
        Wi = interleave_weights(w, variant)
    if Wi.shape[2] != BLOCKS[variant][1]:
        raise ValueError(f"conv2d_cpu: weights interleaved for {Wi.shape[2]} lanes, variant {variant} "
                         f"needs {BLOCKS[variant][1]}")
    out = np.empty((x.shape[0], x.shape[1], w.shape[0]), np.int16)
    _conv2d_cpu(np.ascontiguousarray(x), Wi, b, shift, np.int64(w.shape[1]), np.int64(lo), np.int64(hi),
                np.int64(variant), out)
    return out


def conv2d(x, w, b, shift, lo=INT16_MIN, hi=INT16_MAX, backend="cpu"):
    """Integer convolution on the chosen backend; see the module docstring."""
    check_backend(backend)
    _check_args(x, w, b, shift, lo, hi)
    if backend == "numpy":
        return conv2d_numpy(x, w, b, shift, lo, hi)
    if backend == "cpu":
        return conv2d_cpu(x, w, b, shift, lo, hi)
    from .cuda import conv as cuda_conv
    return cuda_conv.conv2d_cuda(x, w, b, shift, lo, hi)
