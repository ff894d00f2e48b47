"""Integer convolution: numpy oracle, numba CPU and CUDA give identical integers."""

import numpy as np
import pytest

from kernels import accumulator_bound, conv2d
from kernels.conv import conv2d_cpu, conv2d_numpy, interleave_weights
from kernels.simd import BLOCKS
from refcodec.errors import RefcodecError

from .conftest import first_mismatch
from .naive import conv2d_naive

INT31 = 2 ** 31 - 1


def random_layer(rng, cin, cout, k, wdtype=np.int16, in_max=32768):
    """Weights, bias and shifts drawn at random but always inside the no-overflow bound."""
    info = np.iinfo(wdtype)
    w = rng.integers(info.min, info.max + 1, (cout, k, k, cin)).astype(wdtype)
    # scale weights down until sum|w| * in_max stays below 2^30
    while np.abs(w.astype(np.int64)).reshape(cout, -1).sum(1).max() * in_max > 2 ** 30:
        w = (w // 2).astype(wdtype)
    shift = rng.integers(0, 24, cout).astype(np.int32)
    b = rng.integers(-2 ** 29, 2 ** 29, cout).astype(np.int32)
    assert max(accumulator_bound(w, b, shift, in_max)) <= INT31
    return w, b, shift


#: Rows wide enough, and k * cin even, for the numba CPU kernel's direct
#: path (the micro-kernel reading x itself between the picture's edges).
DIRECT = [(3, 37, 6, 33, 3), (2, 40, 2, 40, 5), (3, 27, 130, 7, 1)]

SHAPES = [  # h, w, cin, cout, k
    (1, 1, 1, 1, 1), (1, 1, 3, 7, 3), (5, 7, 3, 4, 3), (2, 9, 7, 130, 1),
    (3, 5, 130, 3, 3), (4, 3, 1, 1, 5), (6, 6, 16, 8, 3), DIRECT[0],
]


@pytest.mark.parametrize("h,w,cin,cout,k", SHAPES)
@pytest.mark.parametrize("wdtype", [np.int16, np.int8])
def test_conv2d_matches_numpy_oracle(backend, rng, h, w, cin, cout, k, wdtype):
    x = rng.integers(-32768, 32768, (h, w, cin)).astype(np.int16)
    wt, b, shift = random_layer(rng, cin, cout, k, wdtype)
    for lo, hi in [(-32768, 32767), (0, 32767), (-100, 255)]:
        ref = conv2d_numpy(x, wt, b, shift, lo, hi)
        out = conv2d(x, wt, b, shift, lo, hi, backend=backend)
        assert out.dtype == np.int16 and out.shape == (h, w, cout)
        assert np.array_equal(out, ref), first_mismatch(out, ref)


@pytest.mark.parametrize("variant", sorted(BLOCKS))
def test_every_cpu_micro_kernel_matches_numpy_oracle(rng, variant):
    """Each blocking of kernels.simd (6x16, 8x16, 8x32, 12x8; the host uses one of
    them per layer) gives the oracle's integers, whatever this host's vector
    width: widths that are not multiples of 8, Cout around 16 and 32, int16
    extremes in x and w, Cout 1, 3 and 8 (the 12x8 blocking)."""
    shapes = SHAPES + [(3, 17, 5, 33, 3), (2, 13, 64, 12, 3), (2, 9, 2, 40, 1), (1, 8, 9, 16, 3),
                       (2, 23, 3, 32, 3), DIRECT[0], DIRECT[1], DIRECT[2], (3, 29, 64, 12, 3),
                       (3, 31, 16, 3, 3), (2, 25, 4, 8, 3), (2, 14, 7, 1, 1), (1, 13, 16, 3, 3)]
    for h, w, cin, cout, k in shapes:
        for wdtype in (np.int16, np.int8):
            x = rng.integers(-32768, 32768, (h, w, cin)).astype(np.int16)
            x.flat[rng.integers(0, x.size, 1 + x.size // 8)] = -32768
            x.flat[rng.integers(0, x.size, 1 + x.size // 8)] = 32767
            wt, b, shift = random_layer(rng, cin, cout, k, wdtype)
            ref = conv2d_numpy(x, wt, b, shift, -100, 32767)
            out = conv2d_cpu(x, wt, b, shift, -100, 32767, variant=variant)
            assert np.array_equal(out, ref), (h, w, cin, cout, k, first_mismatch(out, ref))
            Wi = interleave_weights(wt, variant)
            assert Wi.shape[2] == BLOCKS[variant][1]
            assert np.array_equal(conv2d_cpu(x, wt, b, shift, -100, 32767, Wi=Wi, variant=variant), ref)
    with pytest.raises(ValueError):
        conv2d_cpu(x, wt, b, shift, Wi=interleave_weights(wt, 2), variant=0)


def test_numpy_oracle_matches_naive_loops(rng):
    x = rng.integers(-32768, 32768, (4, 5, 3)).astype(np.int16)
    w, b, shift = random_layer(rng, 3, 4, 3)
    ref = np.array(conv2d_naive(x, w, b, shift, -32768, 32767))
    assert np.array_equal(conv2d_numpy(x, w, b, shift), ref)


def test_conv2d_int16_extremes(backend):
    """Largest inputs and weights the bound allows; accumulators reach 2^31 - 1."""
    x = np.array([[[-32768], [32767]], [[32767], [-32768]]], np.int16)      # 2 x 2 x 1
    w = np.full((2, 1, 1, 1), -32768, np.int16)
    w[1] = 32767
    # |acc| up to 32768 * 32768 = 2^30; bias brings it to the edge of int32
    b = np.array([2 ** 30 - 1, -(2 ** 30) + 2 ** 14], np.int32)
    shift = np.array([0, 15], np.int32)
    assert max(accumulator_bound(w, b, shift, 32768)) <= INT31
    ref = conv2d_numpy(x, w, b, shift)
    out = conv2d(x, w, b, shift, backend=backend)
    assert np.array_equal(out, ref), first_mismatch(out, ref)
    assert ref[0, 0, 0] == 32767  # saturated


def test_conv2d_rounding_is_half_up(backend):
    """(acc + 2^(r-1)) >> r: -1.5 -> -1, -2.5 -> -2, 2.5 -> 3 (ties toward +inf)."""
    x = np.array([[[-3], [-5], [5], [3]]], np.int16)
    w = np.ones((1, 1, 1, 1), np.int16)
    out = conv2d(x, w, np.zeros(1, np.int32), np.array([1], np.int32), backend=backend)
    assert out[0, :, 0].tolist() == [-1, -2, 3, 2]


def test_accumulator_bound_is_exact():
    w = np.array([[[[3, -4]]], [[[0, 0]]]], np.int16)
    b = np.array([-7, 5], np.int32)
    shift = np.array([3, 0], np.int32)
    assert accumulator_bound(w, b, shift, 100) == [7 * 100 + 7 + 4, 5]


@pytest.mark.parametrize("bad", ["dtype", "kernel", "shift", "clamp"])
def test_conv2d_rejects_bad_arguments(bad):
    x = np.zeros((2, 2, 3), np.int16)
    w = np.zeros((4, 3, 3, 3), np.int16)
    b = np.zeros(4, np.int32)
    shift = np.zeros(4, np.int32)
    lo, hi = -32768, 32767
    if bad == "dtype":
        x = x.astype(np.float32)
    elif bad == "kernel":
        w = np.zeros((4, 2, 2, 3), np.int16)
    elif bad == "shift":
        shift[0] = 32
    else:
        lo = -40000
    with pytest.raises(RefcodecError):
        conv2d(x, w, b, shift, lo, hi, backend="numpy")
