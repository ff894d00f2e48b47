"""The one place that sets numba compilation options for every kernel.

Exactness rules (a test parses the package and enforces them):

* every CPU kernel is compiled with ``**NJIT``, ``**NJIT_PARALLEL`` or
  ``**NJIT_INLINE`` and every
  CUDA kernel with ``**CUDA_JIT``; none sets its own options;
* ``fastmath`` is never on: the kernels are integer, but fastmath would also
  license reassociation of any float helper;
* ``cache=True`` so a second process pays no compile time; the cache lives in
  ``__pycache__`` beside each module (or ``NUMBA_CACHE_DIR``).

Integer widths are pinned by explicit casts (``np.int32(...)``/``np.int64``)
in the kernel bodies: numba widens mixed integer arithmetic to int64, and
fixed-width integers wrap silently, so every intermediate states its type.
"""

NJIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
NJIT_PARALLEL = dict(NJIT, parallel=True)
#: Small helpers on hot paths: inlined into their callers at numba IR level.
NJIT_INLINE = dict(NJIT, inline="always")
CUDA_JIT = dict(fastmath=False)

#: Backends every kernel offers.
BACKENDS = ("numpy", "cpu", "cuda")

#: int16 activation range (inclusive).
INT16_MIN = -32768
INT16_MAX = 32767


def check_backend(backend):
    if backend not in BACKENDS:
        from refcodec.errors import BackendError
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend
