"""kernels.icm: the encoder's map smoothing, numba and its plain twin identical."""

import numpy as np
import pytest

from kernels import icm
from kernels.errors import KernelError


def cases(rng):
    span = 16
    cost = rng.uniform(0.1, 12.0, (3, 2 * span + 1))
    for hq, wq in ((1, 1), (1, 7), (5, 1), (3, 4), (9, 13)):
        C = 9
        cand = np.arange(-4, 5)
        J = rng.normal(0, 30, (C, hq, wq))
        Q = rng.integers(-4, 5, (hq, wq))
        yield Q, J, cand, cost
        per_block = np.clip(Q[None] + np.array([-1, 0, 1])[:, None, None], -8, 8)
        yield Q, J[:3], per_block, cost
    Q = np.zeros((4, 5), np.int64)                          # ties everywhere: the first candidate wins
    yield Q, np.zeros((3, 4, 5)), np.array([-1, 0, 1]), np.ones((3, 2 * span + 1))


@pytest.mark.parametrize("sweeps", [0, 1, 3])
def test_numba_equals_plain_twin(rng, sweeps):
    for Q, J, cand, cost in cases(rng):
        a = icm.smooth_map(Q, J, cand, cost, sweeps, backend="numpy")
        b = icm.smooth_map(Q, J, cand, cost, sweeps, backend="cpu")
        assert a.dtype == b.dtype == np.int64 and np.array_equal(a, b)
        if sweeps == 0:
            assert np.array_equal(b, Q)


def test_smoothing_lowers_the_cost(rng):
    """Every sweep can only lower J + map bits (each block takes its best value)."""
    span = 16
    cost = np.tile(np.abs(np.arange(-span, span + 1)) * 2.0 + 0.5, (3, 1))
    J = rng.normal(0, 3, (9, 6, 7))
    cand = np.arange(-4, 5)
    Q0 = cand[np.argmin(J, axis=0)]

    def total(Q):
        d = np.array([[Q[i, j] - icm._predictor(Q, i, j) for j in range(Q.shape[1])] for i in range(Q.shape[0])])
        ctx = np.zeros(d.shape, int)
        ctx[:, 1:] += d[:, :-1] != 0
        ctx[1:, :] += d[:-1, :] != 0
        return np.take_along_axis(J, (Q + 4)[None], 0).sum() + cost[ctx, d + span].sum()
    Q1 = icm.smooth_map(Q0, J, cand, cost, 3)
    assert total(Q1) <= total(Q0) and not np.array_equal(Q1, Q0)


def test_no_cuda_twin():
    with pytest.raises(KernelError, match="numpy or cpu"):
        icm.smooth_map(np.zeros((1, 1)), np.zeros((1, 1, 1)), np.zeros(1), np.ones((3, 3)), 1, backend="cuda")
