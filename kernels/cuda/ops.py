"""CUDA drivers of kernels/ops.py: one thread per (row, column), running the
CPU backend's per-pixel bodies compiled as device functions."""

import numpy as np
from numba import cuda

from .. import conv, ops
from ..config import CUDA_JIT
from . import device, grid_2d, require_cuda


_d2s_px = device(ops._depth_to_space_px)
_abs_sat_px = device(ops._abs_sat_px)
_mul_shift_px = device(ops._mul_shift_px, _requantize=device(conv._requantize))
_clamp_px = device(ops._clamp_px)


@cuda.jit(**CUDA_JIT)
def _d2s_kernel(x, r, out):
    y, xx = cuda.grid(2)
    if y < x.shape[0] and xx < x.shape[1]:
        _d2s_px(x, r, out, y, xx)


@cuda.jit(**CUDA_JIT)
def _abs_sat_kernel(x, out):
    y, xx = cuda.grid(2)
    if y < x.shape[0] and xx < x.shape[1]:
        _abs_sat_px(x, out, y, xx)


@cuda.jit(**CUDA_JIT)
def _mul_shift_kernel(x, n, t, lo, hi, out):
    y, xx = cuda.grid(2)
    if y < x.shape[0] and xx < x.shape[1]:
        _mul_shift_px(x, n, t, lo, hi, out, y, xx)


@cuda.jit(**CUDA_JIT)
def _clamp_kernel(x, lo, hi, out):
    y, xx = cuda.grid(2)
    if y < x.shape[0] and xx < x.shape[1]:
        _clamp_px(x, lo, hi, out, y, xx)


def depth_to_space_cuda(x, r):
    require_cuda()
    h, w, crr = x.shape
    out = cuda.device_array((h * r, w * r, crr // (r * r)), np.int16)
    grid, block = grid_2d(h, w)
    _d2s_kernel[grid, block](cuda.to_device(x), np.int32(r), out)
    return out.copy_to_host()


def abs_sat_cuda(x):
    require_cuda()
    out = cuda.device_array(x.shape, np.int16)
    grid, block = grid_2d(x.shape[0], x.shape[1])
    _abs_sat_kernel[grid, block](cuda.to_device(x), out)
    return out.copy_to_host()


def mul_shift_cuda(x, n, t, lo, hi):
    require_cuda()
    out = cuda.device_array(x.shape, np.int16)
    grid, block = grid_2d(x.shape[0], x.shape[1])
    _mul_shift_kernel[grid, block](cuda.to_device(x), cuda.to_device(n), cuda.to_device(t),
                                   np.int32(lo), np.int32(hi), out)
    return out.copy_to_host()


def clamp_cuda(x, lo, hi):
    require_cuda()
    out = cuda.device_array(x.shape, np.int16)
    grid, block = grid_2d(x.shape[0], x.shape[1])
    _clamp_kernel[grid, block](cuda.to_device(x), np.int32(lo), np.int32(hi), out)
    return out.copy_to_host()
