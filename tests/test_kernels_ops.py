"""depth_to_space, saturating abs, multiply-shift, clamp and the integer IGDN on every backend."""

import numpy as np
import pytest

from kernels import abs_sat, clamp, depth_to_space, igdn, mul_shift
from kernels.ops import depth_to_space_numpy, mul_shift_numpy

from .conftest import first_mismatch

EXTREMES = np.array([-32768, -32767, -1, 0, 1, 32766, 32767], np.int16)


def _x(rng, h, w, c):
    x = rng.integers(-32768, 32768, (h, w, c)).astype(np.int16)
    x.flat[:min(x.size, EXTREMES.size)] = EXTREMES[:min(x.size, EXTREMES.size)]
    return x


@pytest.mark.parametrize("h,w,c,r", [(1, 1, 4, 2), (3, 5, 12, 2), (2, 3, 9, 3), (4, 1, 7, 1), (1, 7, 520, 2),
                                     (2, 3, 72, 3), (3, 2, 28, 2)])
def test_depth_to_space(backend, rng, h, w, c, r):
    x = _x(rng, h, w, c)
    out = depth_to_space(x, r, backend=backend)
    ref = depth_to_space_numpy(x, r)
    assert np.array_equal(out, ref), first_mismatch(out, ref)


def test_depth_to_space_is_pixel_shuffle_order():
    # out[h*r+i, w*r+j, c] = x[h, w, c*r*r + i*r + j]
    x = np.arange(8, dtype=np.int16).reshape(1, 1, 8)
    out = depth_to_space_numpy(x, 2)
    assert out[:, :, 0].tolist() == [[0, 1], [2, 3]]
    assert out[:, :, 1].tolist() == [[4, 5], [6, 7]]


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (2, 2, 130)])
def test_abs_sat(backend, rng, shape):
    x = _x(rng, *shape)
    out = abs_sat(x, backend=backend)
    assert np.array_equal(out, np.minimum(np.abs(x.astype(np.int32)), 32767).astype(np.int16))


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (2, 3, 130)])
def test_mul_shift(backend, rng, shape):
    x = _x(rng, *shape)
    n = _x(rng, *shape)
    t = rng.integers(0, 31, shape[2]).astype(np.int32)
    for lo, hi in [(-32768, 32767), (0, 1000)]:
        out = mul_shift(x, n, t, lo, hi, backend=backend)
        ref = mul_shift_numpy(x, n, t, lo, hi)
        assert np.array_equal(out, ref), first_mismatch(out, ref)


def test_mul_shift_extreme_product_fits():
    x = np.array([[[-32768]]], np.int16)
    n = np.array([[[-32768]]], np.int16)
    out = mul_shift_numpy(x, n, np.array([30], np.int32), -32768, 32767)
    assert out[0, 0, 0] == 1  # 2^30 + 2^29 >> 30


@pytest.mark.parametrize("shape", [(1, 1, 1), (4, 3, 7)])
def test_clamp(backend, rng, shape):
    x = _x(rng, *shape)
    assert np.array_equal(clamp(x, -5, 300, backend=backend), np.clip(x, -5, 300))


@pytest.mark.parametrize("h,w,c", [(1, 1, 1), (3, 4, 7), (2, 2, 16)])
def test_igdn_identical_on_every_backend(backend, rng, h, w, c):
    x = _x(rng, h, w, c)
    gamma = rng.integers(0, 200, (c, 1, 1, c)).astype(np.int16)
    beta = rng.integers(1, 2 ** 20, c).astype(np.int32)
    r_n = rng.integers(4, 12, c).astype(np.int32)
    t = rng.integers(8, 16, c).astype(np.int32)
    ref = igdn(x, gamma, beta, r_n, t, backend="numpy")
    out = igdn(x, gamma, beta, r_n, t, backend=backend)
    assert np.array_equal(out, ref), first_mismatch(out, ref)
