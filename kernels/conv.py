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
from .simd import LANES, PIXELS, madd_4x16


def _check_args(x, w, b, shift, lo, hi):
    from refcodec.errors import RefcodecError
    if x.ndim != 3 or w.ndim != 4 or x.dtype != np.int16:
        raise RefcodecError(f"conv2d: x must be int16 (H, W, Cin), got {x.dtype} {x.shape}")
    cout, k, k2, cin = w.shape
    if k != k2 or k % 2 != 1 or cin != x.shape[2]:
        raise RefcodecError(f"conv2d: weight shape {w.shape} does not fit input {x.shape}")
    if w.dtype not in (np.int16, np.int8):
        raise RefcodecError(f"conv2d: weights must be int16 or int8, got {w.dtype}")
    if b.shape != (cout,) or b.dtype != np.int32 or shift.shape != (cout,) or shift.dtype != np.int32:
        raise RefcodecError("conv2d: bias and shift must be int32 arrays of length Cout")
    if shift.size and (shift.min() < 0 or shift.max() > 31):
        raise RefcodecError("conv2d: shifts must lie in [0, 31]")
    if not (INT16_MIN <= lo <= hi <= INT16_MAX):
        raise RefcodecError(f"conv2d: clamp bounds [{lo}, {hi}] outside int16")


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
# numba CPU.  Each output row is one prange task: its k x k x Cin patches are
# gathered into a contiguous int16 matrix P (im2col of one row, K = k*k*Cin
# padded to even), and kernels.simd.madd_4x16 computes 4 pixels x 16 output
# channels at a time from P and the pair-interleaved weights (AVX2
# vpmaddwd on x86).  Requantization is done in int64 from the int32 sums.
# --------------------------------------------------------------------------

def interleave_weights(w):
    """(Cout, k, k, Cin) int16/int8 -> int16 (ceil(Cout/16), Kp/2, 16, 2) with
    Wi[cb, kp, c, j] = w[cb*16 + c].flat[2*kp + j] (zero padded)."""
    cout = w.shape[0]
    K = w[0].size
    kp = K + (K % 2)
    nblk = -(-cout // LANES)
    w2 = np.zeros((nblk * LANES, kp), np.int16)
    w2[:cout, :K] = w.reshape(cout, -1)
    return np.ascontiguousarray(w2.reshape(nblk, LANES, kp // 2, 2).transpose(0, 2, 1, 3))


@njit(**NJIT)
def _im2col_row(x, y, k, P):
    """P[xo, (ky*k + kx)*cin + ci] = x[y + ky - k//2, xo + kx - k//2, ci]; P is
    zero-filled by the caller, so the padding taps are left alone.  Each tap
    copies a run of whole pixels (kx fixed, xo varying) as one slice."""
    h, wd, cin = x.shape
    p = k // 2
    for ky in range(k):
        yy = y + ky - p
        if yy < 0 or yy >= h:
            continue
        for kx in range(k):
            j = (ky * k + kx) * cin
            x0 = max(0, p - kx)                 # first output column whose tap is inside
            x1 = min(wd, wd + p - kx)           # one past the last
            for xo in range(x0, x1):
                P[xo, j:j + cin] = x[yy, xo + kx - p, :]


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


@njit(**NJIT_PARALLEL)
def _conv2d_cpu(x, Wi, b, shift, k, lo, hi, out):
    h, wd, cin = x.shape
    cout = out.shape[2]
    nblk, khalf = Wi.shape[0], Wi.shape[1]
    for y in prange(h):
        P = np.zeros((wd + PIXELS, 2 * khalf), np.int16)
        _im2col_row(x, y, k, P)
        acc = np.empty((PIXELS, LANES), np.int32)
        for x0 in range(0, wd, PIXELS):
            for cb in range(nblk):
                madd_4x16(P, x0, Wi, cb, acc)
                for p in range(min(PIXELS, wd - x0)):
                    for c in range(min(LANES, cout - cb * LANES)):
                        co = cb * LANES + c
                        v = _requantize(np.int64(acc[p, c]) + np.int64(b[co]), shift[co], lo, hi)
                        out[y, x0 + p, co] = np.int16(v)


def conv2d_cpu(x, w, b, shift, lo=INT16_MIN, hi=INT16_MAX, Wi=None):
    """numba CPU convolution; ``Wi`` may carry :func:`interleave_weights` of w
    (a model does that once when it is loaded)."""
    if Wi is None:
        Wi = interleave_weights(w)
    out = np.empty((x.shape[0], x.shape[1], w.shape[0]), np.int16)
    _conv2d_cpu(np.ascontiguousarray(x), Wi, b, shift, np.int64(w.shape[1]), np.int64(lo), np.int64(hi), out)
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
