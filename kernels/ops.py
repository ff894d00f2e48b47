"""Elementwise and data-movement integer kernels (SPEC.md clauses 7.2-7.4).

* :func:`depth_to_space` -- (H, W, C*r*r) -> (H*r, W*r, C) in PyTorch
  ``PixelShuffle`` order: ``out[h*r+i, w*r+j, c] = x[h, w, c*r*r + i*r + j]``.
* :func:`abs_sat` -- saturating absolute value ``min(|x|, 32767)``; int16 in,
  int16 out (|-32768| does not fit int16, so it saturates).
* :func:`mul_shift` -- ``clamp((x * n + 2^(t-1)) >> t, lo, hi)`` with
  per-channel t in [0, 30]; x, n int16, the product fits int32 (|x*n| <= 2^30)
  and so does the rounding sum (<= 2^30 + 2^29).
* :func:`clamp` -- ``min(max(x, lo), hi)`` (the clamped ReLU).

The simplified inverse GDN of DESIGN.md, ``x * (beta + Gamma |x|)``, is
``mul_shift(x, conv2d(abs_sat(x), Gamma, beta, r_n, 0, 32767), t)``; see
:func:`kernels.igdn`.
"""

import numpy as np
from numba import njit, prange

from .config import INT16_MAX, INT16_MIN, NJIT_INLINE, NJIT_PARALLEL, check_backend
from .conv import _requantize


def _cuda():
    from .cuda import ops
    return ops


# ---------------------------------------------------------------- numpy twins

def depth_to_space_numpy(x, r):
    h, w, crr = x.shape
    c = crr // (r * r)
    return x.reshape(h, w, c, r, r).transpose(0, 3, 1, 4, 2).reshape(h * r, w * r, c).copy()


def abs_sat_numpy(x):
    return np.minimum(np.abs(x.astype(np.int32)), INT16_MAX).astype(np.int16)


def mul_shift_numpy(x, n, t, lo, hi):
    t64 = t.astype(np.int64)
    rounding = np.where(t64 > 0, np.left_shift(np.int64(1), np.maximum(t64 - 1, 0)), 0)
    return np.clip((x.astype(np.int64) * n.astype(np.int64) + rounding) >> t64, lo, hi).astype(np.int16)


def clamp_numpy(x, lo, hi):
    return np.clip(x, lo, hi).astype(np.int16)


# ---------------------------------------------------------------- per-pixel bodies
# One pixel (all channels) each; the CPU kernels call them in a prange loop,
# kernels/cuda/ops.py compiles the same code as CUDA device functions.

@njit(**NJIT_INLINE)
def _depth_to_space_px(x, r, out, y, xx):
    c = x.shape[2] // (r * r)
    if c >= 8:      # many channels: contiguous writes (3-4x faster)
        for i in range(r):
            for j in range(r):
                for ch in range(c):
                    out[y * r + i, xx * r + j, ch] = x[y, xx, ch * r * r + i * r + j]
    else:           # a few channels (the RGB output): contiguous reads
        for ch in range(c):
            for i in range(r):
                for j in range(r):
                    out[y * r + i, xx * r + j, ch] = x[y, xx, ch * r * r + i * r + j]


@njit(**NJIT_INLINE)
def _abs_sat_px(x, out, y, xx):
    for ch in range(x.shape[2]):
        v = np.int32(x[y, xx, ch])
        if v < 0:
            v = -v
        if v > 32767:
            v = 32767
        out[y, xx, ch] = np.int16(v)


@njit(**NJIT_INLINE)
def _mul_shift_px(x, n, t, lo, hi, out, y, xx):
    for ch in range(x.shape[2]):
        v = np.int64(x[y, xx, ch]) * np.int64(n[y, xx, ch])
        out[y, xx, ch] = np.int16(_requantize(v, t[ch], lo, hi))


@njit(**NJIT_INLINE)
def _clamp_px(x, lo, hi, out, y, xx):
    for ch in range(x.shape[2]):
        v = x[y, xx, ch]
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        out[y, xx, ch] = v


# ---------------------------------------------------------------- numba CPU

@njit(**NJIT_PARALLEL)
def _depth_to_space_cpu(x, r, out):
    for y in prange(x.shape[0]):
        for xx in range(x.shape[1]):
            _depth_to_space_px(x, r, out, y, xx)


@njit(**NJIT_PARALLEL)
def _abs_sat_cpu(x, out):
    for y in prange(x.shape[0]):
        for xx in range(x.shape[1]):
            _abs_sat_px(x, out, y, xx)


@njit(**NJIT_PARALLEL)
def _mul_shift_cpu(x, n, t, lo, hi, out):
    for y in prange(x.shape[0]):
        for xx in range(x.shape[1]):
            _mul_shift_px(x, n, t, lo, hi, out, y, xx)


@njit(**NJIT_PARALLEL)
def _clamp_cpu(x, lo, hi, out):
    for y in prange(x.shape[0]):
        for xx in range(x.shape[1]):
            _clamp_px(x, lo, hi, out, y, xx)


# ---------------------------------------------------------------- dispatch

def _as3(x, name):
    from .errors import error
    if x.ndim != 3 or x.dtype != np.int16:
        raise error("argument", f"{name}: expected an int16 (H, W, C) array, got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x)


def depth_to_space(x, r, backend="cpu"):
    check_backend(backend)
    x = _as3(x, "depth_to_space")
    if r < 1 or x.shape[2] % (r * r):
        from .errors import error
        raise error("argument", f"depth_to_space: {x.shape[2]} channels not divisible by r*r = {r * r}")
    if backend == "numpy":
        return depth_to_space_numpy(x, r)
    if backend == "cuda":
        return _cuda().depth_to_space_cuda(x, r)
    h, w, crr = x.shape
    out = np.empty((h * r, w * r, crr // (r * r)), np.int16)
    _depth_to_space_cpu(x, np.int64(r), out)
    return out


def abs_sat(x, backend="cpu"):
    check_backend(backend)
    x = _as3(x, "abs_sat")
    if backend == "numpy":
        return abs_sat_numpy(x)
    if backend == "cuda":
        return _cuda().abs_sat_cuda(x)
    out = np.empty_like(x)
    _abs_sat_cpu(x, out)
    return out


def mul_shift(x, n, t, lo=INT16_MIN, hi=INT16_MAX, backend="cpu"):
    check_backend(backend)
    x = _as3(x, "mul_shift")
    n = _as3(n, "mul_shift")
    from .errors import error
    if n.shape != x.shape or t.dtype != np.int32 or t.shape != (x.shape[2],):
        raise error("argument", "mul_shift: n must match x and t be int32 per channel")
    if t.size and (t.min() < 0 or t.max() > 30):
        raise error("argument", "mul_shift: shifts must lie in [0, 30]")
    if backend == "numpy":
        return mul_shift_numpy(x, n, t, lo, hi)
    if backend == "cuda":
        return _cuda().mul_shift_cuda(x, n, t, lo, hi)
    out = np.empty_like(x)
    _mul_shift_cpu(x, n, t, np.int32(lo), np.int32(hi), out)
    return out


def clamp(x, lo, hi, backend="cpu"):
    check_backend(backend)
    x = _as3(x, "clamp")
    if backend == "numpy":
        return clamp_numpy(x, lo, hi)
    if backend == "cuda":
        return _cuda().clamp_cuda(x, lo, hi)
    out = np.empty_like(x)
    _clamp_cpu(x, np.int16(lo), np.int16(hi), out)
    return out
