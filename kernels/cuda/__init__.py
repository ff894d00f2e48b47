"""numba.cuda twins of the CPU kernels.

Importing this package needs ``numba.cuda`` with a GPU, or the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``).  :func:`require_cuda` turns a missing GPU into a
the backend error (refcodec's BackendError) with a clear message.
"""

import types

from numba import cuda

from ..config import CUDA_JIT


def require_cuda():
    from ..errors import error
    try:
        ok = cuda.is_available()
    except Exception as exc:  # driver missing or broken
        raise error("backend", f"backend 'cuda' unavailable: {exc}") from None
    if not ok:
        raise error("backend", "backend 'cuda' unavailable: no CUDA GPU found "
                           "(set NUMBA_ENABLE_CUDASIM=1 to use the simulator)")


def grid_2d(h, w, block=(8, 16)):
    return ((h + block[0] - 1) // block[0], (w + block[1] - 1) // block[1]), block


def device(dispatcher, **helpers):
    """Compile the Python body of an ``@njit`` function as a CUDA device
    function, with the globals named in ``helpers`` replaced by device
    versions: the CPU and CUDA backends then run the very same code."""
    py = dispatcher.py_func
    g = dict(py.__globals__)
    g.update(helpers)
    fn = types.FunctionType(py.__code__, g, py.__name__, py.__defaults__, py.__closure__)
    return cuda.jit(device=True, **CUDA_JIT)(fn)
