"""CUDA twins of kernels/ops.py: one thread per (row, column), looping over channels."""

import numpy as np
from numba import cuda

from ..config import CUDA_JIT
from . import grid_2d, require_cuda


@cuda.jit(**CUDA_JIT)
def _d2s_kernel(x, r, out):
    y, xx = cuda.grid(2)
    h, w, crr = x.shape
    if y >= h or xx >= w:
        return
    c = crr // (r * r)
    for ch in range(c):
        for i in range(r):
            for j in range(r):
                out[y * r + i, xx * r + j, ch] = x[y, xx, ch * r * r + i * r + j]


@cuda.jit(**CUDA_JIT)
def _abs_sat_kernel(x, out):
    y, xx = cuda.grid(2)
    h, w, c = x.shape
    if y >= h or xx >= w:
        return
    for ch in range(c):
        v = np.int32(x[y, xx, ch])
        if v < 0:
            v = -v
        if v > 32767:
            v = 32767
        out[y, xx, ch] = v


@cuda.jit(**CUDA_JIT)
def _mul_shift_kernel(x, n, t, lo, hi, out):
    y, xx = cuda.grid(2)
    h, w, c = x.shape
    if y >= h or xx >= w:
        return
    for ch in range(c):
        v = np.int32(x[y, xx, ch]) * np.int32(n[y, xx, ch])
        s = t[ch]
        if s > 0:
            v = (v + (np.int32(1) << (s - 1))) >> s
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        out[y, xx, ch] = v


@cuda.jit(**CUDA_JIT)
def _clamp_kernel(x, lo, hi, out):
    y, xx = cuda.grid(2)
    h, w, c = x.shape
    if y >= h or xx >= w:
        return
    for ch in range(c):
        v = x[y, xx, ch]
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        out[y, xx, ch] = v


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
