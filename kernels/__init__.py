"""numba kernels of refcodec: integer convolution, depth-to-space, integer
nonlinearities and the rANS entropy coder.

Every kernel takes ``backend="numpy" | "cpu" | "cuda"``:

* ``numpy`` -- the plain-numpy (or plain-Python) twin, written to be read;
  it is the oracle of the tests;
* ``cpu``   -- numba ``@njit`` (``cache=True``, ``prange``, never fastmath);
* ``cuda``  -- ``numba.cuda``; a real GPU, or the simulator with
  ``NUMBA_ENABLE_CUDASIM=1``.

All three give identical integers: that is the contract the tests enforce.
"""

from .config import BACKENDS, INT16_MAX, INT16_MIN
from .conv import accumulator_bound, conv2d
from .ops import abs_sat, clamp, depth_to_space, mul_shift
from . import rans


def igdn(x, gamma, beta, r_n, t, lo=INT16_MIN, hi=INT16_MAX, backend="cpu"):
    """Simplified inverse GDN in integers (SPEC.md clause 7.5).

    ``n = conv2d(abs_sat(x), gamma, beta, r_n, 0, 32767)`` (a 1x1 integer
    convolution, clamped to [0, 32767]), then ``mul_shift(x, n, t, lo, hi)``.
    gamma: int16/int8 (C, 1, 1, C) >= 0; beta: int32 (C,) > 0.
    """
    n = conv2d(abs_sat(x, backend=backend), gamma, beta, r_n, 0, INT16_MAX, backend=backend)
    return mul_shift(x, n, t, lo, hi, backend=backend)


__all__ = ["BACKENDS", "conv2d", "accumulator_bound", "depth_to_space", "abs_sat", "mul_shift",
           "clamp", "igdn", "rans"]
