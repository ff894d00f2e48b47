"""Integer convolution on CUDA: one thread per output pixel, looping over
output channels (SPEC.md clause 7.1; definitions in kernels/conv.py)."""

import numpy as np
from numba import cuda

from .. import conv
from ..config import CUDA_JIT
from . import device, grid_2d, require_cuda

_requantize = device(conv._requantize)


@cuda.jit(**CUDA_JIT)
def _conv2d_kernel(x, w, b, shift, lo, hi, out):
    y, xo = cuda.grid(2)
    h, wd, cin = x.shape
    cout, k, _, _ = w.shape
    if y >= h or xo >= wd:
        return
    p = k // 2
    for co in range(cout):
        acc = np.int32(b[co])
        for ky in range(k):
            yy = y + ky - p
            if yy < 0 or yy >= h:
                continue
            for kx in range(k):
                xx = xo + kx - p
                if xx < 0 or xx >= wd:
                    continue
                for ci in range(cin):
                    acc += np.int32(x[yy, xx, ci]) * np.int32(w[co, ky, kx, ci])
        out[y, xo, co] = _requantize(np.int64(acc), shift[co], lo, hi)


def conv2d_cuda(x, w, b, shift, lo, hi):
    require_cuda()
    h, wd, _ = x.shape
    out = cuda.device_array((h, wd, w.shape[0]), np.int16)
    grid, block = grid_2d(h, wd)
    _conv2d_kernel[grid, block](cuda.to_device(np.ascontiguousarray(x)), cuda.to_device(np.ascontiguousarray(w)),
                                cuda.to_device(b), cuda.to_device(shift), np.int32(lo), np.int32(hi), out)
    return out.copy_to_host()
