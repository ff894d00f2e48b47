"""Shared fixtures.

The ``backend`` fixture runs a test on numpy, numba CPU and numba CUDA.  CUDA
runs on a real GPU when one is present, on the simulator when
``NUMBA_ENABLE_CUDASIM=1`` (as in CI), and is skipped otherwise.
"""

import os
import sys
import zlib

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def cuda_available():
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


CUDA = cuda_available()
SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
ALL_BACKENDS = ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not CUDA, reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set"))]


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def rng(request):
    # one seed per test, stable across runs and machines
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def first_mismatch(a, b):
    """Index and values of the first differing element (for messages)."""
    idx = np.argwhere(a != b)
    if idx.size == 0:
        return None
    i = tuple(idx[0])
    return f"first difference at {i}: {a[i]} != {b[i]} (shape {a.shape})"
