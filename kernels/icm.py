"""The encoder's map smoothing: iterated conditional modes (ICM) on a
quality map whose own bits follow clause 6.7's coding.

Not normative (the decoder never runs it), but the rdo quality map of the
encoder spent a third of its time here in plain Python, so it has a numba
twin; both give the same map (the same float sums in the same order, the
same tie rule: the first candidate with the lowest cost).

Inputs: ``Q`` (hq, wq) the start map; ``J`` (C, hq, wq) float64, the cost of
candidate c at each block; ``cand`` (C, hq, wq) int64, the Q value of
candidate c at each block; ``cost`` (3, 2 span + 1) float64, the bits of a
map difference d in context k at ``cost[k, d + span]``.  A block's choice
touches its own difference, its right and lower neighbours' (the predictor
reads left and upper values) and the contexts of the differences after
those (a context is whether the left and upper differences are nonzero):
the six positions of ``TOUCHED``.
"""

import numpy as np

from numba import njit

from .config import NJIT

#: The positions (down, right) whose difference or context a block's value sets.
TOUCHED = ((0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0))


def _predictor(Q, i, j):
    if i == 0 and j == 0:
        return 0
    if i == 0:
        return int(Q[0, j - 1])
    if j == 0:
        return int(Q[i - 1, 0])
    return (int(Q[i, j - 1]) + int(Q[i - 1, j])) >> 1


def smooth_map_numpy(Q, J, cand, cost, sweeps):
    """Plain twin of the numba kernel (see the module's text)."""
    span = (cost.shape[1] - 1) // 2
    Q = Q.astype(np.int64).copy()
    hq, wq = Q.shape

    def dq(i, j):
        return Q[i, j] - _predictor(Q, i, j)

    def bits_at(i, j):
        c = int(j > 0 and dq(i, j - 1) != 0) + int(i > 0 and dq(i - 1, j) != 0)
        return cost[c, dq(i, j) + span]

    for _ in range(sweeps):
        changed = 0
        for i in range(hq):
            for j in range(wq):
                near = [(i + a, j + b) for a, b in TOUCHED if i + a < hq and j + b < wq]
                old = Q[i, j]
                best, best_v = None, old
                for c in range(cand.shape[0]):
                    Q[i, j] = cand[c, i, j]
                    s = 0.0
                    for a, b in near:
                        s += bits_at(a, b)
                    t = J[c, i, j] + s
                    if best is None or t < best:
                        best, best_v = t, cand[c, i, j]
                Q[i, j] = best_v
                changed += best_v != old
        if not changed:
            break
    return Q


@njit(**NJIT)
def _pred(Q, i, j):
    if i == 0 and j == 0:
        return np.int64(0)
    if i == 0:
        return Q[0, j - 1]
    if j == 0:
        return Q[i - 1, 0]
    return (Q[i, j - 1] + Q[i - 1, j]) >> np.int64(1)


@njit(**NJIT)
def _bits_at(Q, cost, span, i, j):
    d = Q[i, j] - _pred(Q, i, j)
    c = 0
    if j > 0 and Q[i, j - 1] - _pred(Q, i, j - 1) != 0:
        c += 1
    if i > 0 and Q[i - 1, j] - _pred(Q, i - 1, j) != 0:
        c += 1
    return cost[c, d + span]


@njit(**NJIT)
def _smooth_map(Q, J, cand, cost, sweeps):
    span = (cost.shape[1] - 1) // 2
    hq, wq = Q.shape
    da = np.array([0, 0, 1, 0, 1, 2])
    db = np.array([0, 1, 0, 2, 1, 0])
    for _ in range(sweeps):
        changed = 0
        for i in range(hq):
            for j in range(wq):
                old = Q[i, j]
                best = np.inf
                best_v = old
                first = True
                for c in range(cand.shape[0]):
                    Q[i, j] = cand[c, i, j]
                    s = 0.0
                    for n in range(6):
                        a, b = i + da[n], j + db[n]
                        if a < hq and b < wq:
                            s += _bits_at(Q, cost, span, a, b)
                    t = J[c, i, j] + s
                    if first or t < best:
                        best, best_v, first = t, cand[c, i, j], False
                Q[i, j] = best_v
                if best_v != old:
                    changed += 1
        if changed == 0:
            break
    return Q


def smooth_map(Q, J, cand, cost, sweeps, backend="cpu"):
    """ICM on ``J`` plus the map's bits: the smoothed map, int64 (hq, wq).
    ``cand`` may be 1-D (the same candidates at every block).  ``backend``
    "numpy" or "cpu" (an encoder's search, sequential by nature: no CUDA
    twin; an encoder on the "cuda" backend runs it on the CPU)."""
    if backend not in ("numpy", "cpu"):
        from .errors import error
        raise error("backend", f"the map smoothing runs on numpy or cpu, not {backend!r}")
    Q = np.ascontiguousarray(Q, np.int64)
    J = np.ascontiguousarray(J, np.float64)
    cand = np.asarray(cand, np.int64)
    if cand.ndim == 1:
        cand = np.broadcast_to(cand[:, None, None], J.shape)
    cand = np.ascontiguousarray(cand)
    cost = np.ascontiguousarray(cost, np.float64)
    if backend == "numpy":
        return smooth_map_numpy(Q, J, cand, cost, int(sweeps))
    return _smooth_map(Q.copy(), J, cand, cost, int(sweeps))
