"""CUDA driver of the rANS coder of kernels/rans.py: one thread per substream.

The per-substream bodies ``_encode_one`` / ``_decode_one`` are the very
Python functions the CPU backend compiles with ``@njit``: here the same code
objects are compiled as CUDA device functions, with their helper calls
(``_put``, ``_encode_span``, ...) bound to the device versions.  The two backends
therefore cannot drift apart.
"""

import numpy as np
from numba import cuda

from .. import rans
from ..config import CUDA_JIT
from . import device as _device, require_cuda


_put = _device(rans._put)
_put_bits = _device(rans._put_bits, _put=_put)
_put_entry = _device(rans._put_entry, _put=_put)
_encode_escape = _device(rans._encode_escape, _put_bits=_put_bits, _put_entry=_put_entry)
_lookup = _device(rans._lookup)
_encode_span = _device(rans._encode_span, _put_entry=_put_entry, _lookup=_lookup)
_encode_flush = _device(rans._encode_flush)
_encode_one = _device(rans._encode_one, _encode_span=_encode_span, _encode_escape=_encode_escape,
                      _encode_flush=_encode_flush)
_advance = _device(rans._advance)
_get_bits = _device(rans._get_bits, _advance=_advance)
_decode_escape = _device(rans._decode_escape, _get_bits=_get_bits)
_decode_symbol = _device(rans._decode_symbol, _advance=_advance, _decode_escape=_decode_escape)
_end_status = _device(rans._end_status)
_decode_one = _device(rans._decode_one, _decode_symbol=_decode_symbol, _end_status=_end_status)
_decode_grid = _device(rans._decode_grid, _decode_symbol=_decode_symbol, _end_status=_end_status)


@cuda.jit(**CUDA_JIT)
def _encode_kernel(values, rows, starts, rt, st, buf, region, first):
    s = cuda.grid(1)
    if s < starts.size - 1:
        _encode_one(s, values, rows, starts, rt, st, buf, region, first)


@cuda.jit(**CUDA_JIT)
def _decode_kernel(w, wstart, starts, rows, cdf, cdf_len, offset, lut, values, status):
    s = cuda.grid(1)
    if s < starts.size - 1:
        _decode_one(s, w, wstart, starts, rows, cdf, cdf_len, offset, lut, values, status)


@cuda.jit(**CUDA_JIT)
def _decode_grid_kernel(w, h, wd, ctx_rows, cdf, cdf_len, offset, lut, values, status):
    if cuda.grid(1) == 0:
        _decode_grid(w, h, wd, ctx_rows, cdf, cdf_len, offset, lut, values, status)


def _launch(n):
    threads = 32
    return (max(1, (n + threads - 1) // threads),), (threads,)


def encode_cuda(values, rows, starts, tables, region):
    """``tables``: a :class:`kernels.rans.Tables`."""
    require_cuda()
    S = starts.size - 1
    buf = cuda.device_array(max(1, int(region[-1])), np.uint16)
    first = cuda.device_array(S, np.int64)
    grid, block = _launch(S)
    table = [cuda.to_device(a) for a in tables.encoder]
    _encode_kernel[grid, block](cuda.to_device(values), cuda.to_device(rows), cuda.to_device(starts),
                                *table, buf, cuda.to_device(region), first)
    host = buf.copy_to_host()
    first = first.copy_to_host()
    return [host[first[s]:region[s + 1]].astype("<u2").tobytes() for s in range(S)]


def decode_cuda(w, wstart, starts, rows, cdf, cdf_len, offset, lut):
    require_cuda()
    S = starts.size - 1
    values = cuda.to_device(np.zeros(max(1, int(starts[-1])), np.int32))
    status = cuda.to_device(np.zeros(S, np.int32))
    wd = cuda.to_device(w if w.size else np.zeros(1, np.uint16))
    grid, block = _launch(S)
    _decode_kernel[grid, block](wd, cuda.to_device(wstart), cuda.to_device(starts), cuda.to_device(rows),
                                cuda.to_device(cdf), cuda.to_device(cdf_len), cuda.to_device(offset),
                                cuda.to_device(lut), values, status)
    return values.copy_to_host()[:int(starts[-1])], status.copy_to_host()


def decode_grid_cuda(w, h, wd, ctx_rows, cdf, cdf_len, offset, lut):
    """One thread: each value's table row depends on the values before it."""
    require_cuda()
    values = cuda.to_device(np.zeros(max(1, h * wd), np.int32))
    status = cuda.to_device(np.zeros(1, np.int32))
    _decode_grid_kernel[1, 1](cuda.to_device(w), h, wd, cuda.to_device(ctx_rows), cuda.to_device(cdf),
                              cuda.to_device(cdf_len), cuda.to_device(offset), cuda.to_device(lut), values, status)
    return values.copy_to_host()[:h * wd], status.copy_to_host()
