"""The one place that sets numba compilation options for every kernel.

Exactness rules (a test parses the package and enforces them):

* every CPU kernel is compiled with ``**NJIT``, ``**NJIT_PARALLEL`` or
  ``**NJIT_INLINE`` and every
  CUDA kernel with ``**CUDA_JIT``; none sets its own options;
* ``fastmath`` is never on: the kernels are integer, but fastmath would also
  license reassociation of any float helper;
* ``cache=True`` so a second process pays no compile time; the cache lives in
  ``__pycache__`` beside each module (or ``NUMBA_CACHE_DIR``).  numba stamps
  a cached function with its own file only, so editing a helper in another
  file (``simd.py``'s micro-kernels, ``conv.py``'s requantization used by
  ``ops.py``) would leave callers compiled from the old helper; here every
  kernel is stamped with the digest of the whole ``kernels`` package
  (:func:`package_digest`), so any edit recompiles them all.

Integer widths are pinned by explicit casts (``np.int32(...)``/``np.int64``)
in the kernel bodies: numba widens mixed integer arithmetic to int64, and
fixed-width integers wrap silently, so every intermediate states its type.
"""

import functools
import hashlib
import os

PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _sources(root=PACKAGE):
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(dirpath, f)


@functools.lru_cache(maxsize=8)
def _digest(root, stamps):
    h = hashlib.sha256()
    for path, _, _ in stamps:
        with open(path, "rb") as f:
            h.update(os.path.relpath(path, root).encode() + b"\0" + f.read() + b"\0")
    return h.digest()


def package_digest(root=PACKAGE):
    """SHA-256 of every ``.py`` file under ``root`` (names and contents): the
    source stamp of every cached kernel.  Memoized on the files' (mtime, size)."""
    stamps = tuple((p, st.st_mtime_ns, st.st_size) for p in _sources(root) for st in (os.stat(p),))
    return _digest(root, stamps)


def _stamp_kernels_with_the_package():
    """Put two cache locators in front of numba's own: for a function defined
    under this package they place the cache where numba would
    (``NUMBA_CACHE_DIR``, else ``__pycache__``) and stamp it with
    :func:`package_digest`; any other function falls through to numba.  If a
    numba release moves this machinery, the kernels keep numba's per-file
    stamp (and still compile and run the same)."""
    try:
        from numba.core import caching
        impl, bases = caching.CacheImpl, (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator)
        impl._locator_classes[0]
    except (ImportError, AttributeError, IndexError, TypeError):
        return
    if any(getattr(c, "_refcodec_kernels", False) for c in impl._locator_classes):
        return
    ours = []
    for base in bases:
        def from_function(cls, py_func, py_file, _base=base):
            if not os.path.abspath(py_file).startswith(PACKAGE + os.sep):
                return None
            return _base.from_function.__func__(cls, py_func, py_file)
        ours.append(type("Kernels" + base.__name__, (base,), {
            "_refcodec_kernels": True, "__module__": __name__,
            "get_source_stamp": lambda self: package_digest(),
            "from_function": classmethod(from_function)}))
    impl._locator_classes[0:0] = ours


_stamp_kernels_with_the_package()

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
        from .errors import error
        raise error("backend", f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def require_backend(backend):
    """check_backend, and for "cuda" that a GPU (or the simulator) is there:
    an error before any work, not a failure half-way."""
    check_backend(backend)
    if backend == "cuda":
        try:
            from .cuda import require_cuda
        except ImportError as e:
            from .errors import error
            raise error("backend", f"backend 'cuda' unavailable: {e}") from None
        require_cuda()
    return backend
