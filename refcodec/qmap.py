"""Clause 6.7: the spatial quality map.

One integer ``Q`` in [-8, 8] per block of 2^k x 2^k latent positions
(``k = qmap_block_log2``; a latent position covers 16 x 16 pixels).  The
block grid is ``ceil(Hy / 2^k) x ceil(Wy / 2^k)``.

Coding: ``dQ = Q - pred`` in raster order, one rANS substream (``q_data``),
every value with the y table row ``qmap_sigma_row``.  The predictor:

    pred(0, 0) = 0
    pred(0, j) = Q(0, j-1)                      first row: left
    pred(i, 0) = Q(i-1, 0)                      first column: top
    pred(i, j) = (Q(i, j-1) + Q(i-1, j)) >> 1   elsewhere: floor of the mean

A decoded Q outside [-8, 8] makes the stream non-conforming.

Effect (clause 6.4): at a latent position whose block has quality Q, the log2
gain of every channel grows by Q / 4 (``Q << 14`` in 2^-16 units): the
residual is quantized with a step ``2^(-Q/4)`` times the gain unit's, and the
sigma index moves by ``2 Q`` table levels (8 levels per octave).

Encoder strategies (not normative): ``flat``, ``activity`` (block variance
thresholds, as the JPEG AI reference software), a user map (``.npy`` of Q
values, or a PNG mask with foreground / background Q).
"""

import numpy as np

from kernels import rans

from .errors import BitstreamError, RefcodecError

Q_MIN, Q_MAX = -8, 8
CLAUSE = "6.7"


class QualityMapError(RefcodecError):
    """A quality map given to the encoder is malformed (shape, values, file)."""


def grid(hy, wy, block_log2):
    b = 1 << block_log2
    return -(-hy // b), -(-wy // b)


def predictor(Q, i, j):
    if i == 0 and j == 0:
        return 0
    if i == 0:
        return int(Q[0, j - 1])
    if j == 0:
        return int(Q[i - 1, 0])
    return (int(Q[i, j - 1]) + int(Q[i - 1, j])) >> 1


def differences(Q):
    """dQ = Q - pred, raster order (int32)."""
    Q = np.asarray(Q, np.int64)
    d = np.empty(Q.shape, np.int64)
    for i in range(Q.shape[0]):
        for j in range(Q.shape[1]):
            d[i, j] = Q[i, j] - predictor(Q, i, j)
    return d.astype(np.int32).reshape(-1)


def reconstruct(dq, hq, wq):
    """Q from the decoded differences; raises BitstreamError if a Q leaves [-8, 8]."""
    Q = np.zeros((hq, wq), np.int64)
    d = dq.reshape(hq, wq).astype(np.int64)
    for i in range(hq):
        for j in range(wq):
            v = d[i, j] + predictor(Q, i, j)
            if not Q_MIN <= v <= Q_MAX:
                raise BitstreamError(f"quality map value {v} at block ({i}, {j}) outside [{Q_MIN}, {Q_MAX}]",
                                     field="q_data", clause=CLAUSE)
            Q[i, j] = v
    return Q.astype(np.int32)


def encode_qmap(Q, sigma_row, y_tables, backend="cpu"):
    d = differences(Q)
    return rans.encode(d, np.full(d.size, sigma_row, np.int32), np.array([0, d.size], np.int64), y_tables,
                       backend=backend)[0]


def decode_qmap(data, hq, wq, sigma_row, y_tables, backend="cpu"):
    if sigma_row >= y_tables[0].shape[0]:
        raise BitstreamError(f"qmap_sigma_row {sigma_row} names no table row (the model has "
                             f"{y_tables[0].shape[0]})", field="qmap_sigma_row", clause="5.2")
    n = hq * wq
    dq = rans.decode(data, [len(data)], np.array([0, n], np.int64), np.full(n, sigma_row, np.int32), y_tables,
                     backend=backend)
    return reconstruct(dq, hq, wq)


def best_sigma_row(Q, y_tables):
    """The table row that codes the map's differences in the fewest bits
    (information content, escapes included; ties to the lower row)."""
    cdf, cdf_len, offset = (t.astype(np.int64) for t in y_tables)
    d = differences(Q).astype(np.int64)
    best = None
    for r in range(cdf.shape[0]):
        n, lo = cdf_len[r], offset[r]
        hi = lo + n - 2
        inside = (d >= lo) & (d <= hi)
        sym = np.where(inside, d - lo, n - 1)
        bits = float(np.sum(16 - np.log2(cdf[r, sym + 1] - cdf[r, sym])))
        if not inside.all():
            bits += float(sum(escape_bits(int(v), int(lo), int(hi)) for v in d[~inside]))
        if best is None or bits < best[0]:
            best = (bits, r)
    return best[1]


def escape_bits(d, lo, hi):
    """Bits after the escape symbol for a value d outside [lo, hi] (clause 6.1)."""
    return rans.NB_BITS + rans.escape_code(d, lo, hi)[2]


def expand(Q, block_log2, hy, wy):
    """Q per latent position (hy, wy)."""
    b = 1 << block_log2
    return np.repeat(np.repeat(Q, b, axis=0), b, axis=1)[:hy, :wy]


def check_map(Q, hq, wq):
    Q = np.asarray(Q)
    if Q.shape != (hq, wq):
        raise QualityMapError(f"quality map of shape {Q.shape} does not fit the {hq} x {wq} block grid")
    if not np.issubdtype(Q.dtype, np.integer):
        if not np.all(np.isfinite(Q)) or np.any(Q != np.round(Q)):
            raise QualityMapError("quality map values must be integers")
    if Q.size and (Q.min() < Q_MIN or Q.max() > Q_MAX):
        raise QualityMapError(f"quality map values must lie in [{Q_MIN}, {Q_MAX}] "
                              f"(got {int(Q.min())} ... {int(Q.max())})")
    return Q.astype(np.int32)


# ---------------------------------------------------------------- strategies

ACTIVITY_THRESHOLDS = (0.8, 1.5, 2.5, 4.0)


def activity_map(rgb, hy, wy, block_log2=0):
    """Variance of 4x4 luma blocks, min-pooled over each 16 x 16 latent
    position (then over the map block); Q = -(number of thresholds exceeded
    among ACTIVITY_THRESHOLDS x the mean variance)."""
    luma = np.asarray(rgb, np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    hp, wp = hy * 16, wy * 16
    luma = np.pad(luma, ((0, hp - luma.shape[0]), (0, wp - luma.shape[1])), mode="edge")
    v = luma.reshape(hp // 4, 4, wp // 4, 4).var(axis=(1, 3))
    v16 = v.reshape(hy, 4, wy, 4).min(axis=(1, 3))
    hq, wq = grid(hy, wy, block_log2)
    b = 1 << block_log2
    vp = np.pad(v16, ((0, hq * b - hy), (0, wq * b - wy)), mode="edge")
    vb = vp.reshape(hq, b, wq, b).min(axis=(1, 3))
    mean = max(float(vb.mean()), 1e-9)
    Q = -sum((vb > t * mean).astype(np.int32) for t in ACTIVITY_THRESHOLDS)
    return Q.astype(np.int32)


def mask_map(mask, hy, wy, block_log2=0, fg=6, bg=-3):
    """A PNG mask (white = region of interest) to Q: a block takes ``fg`` when
    any of its pixels is in the region, else ``bg``."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., :3].mean(axis=2)
    m = m > 127
    hp, wp = hy * 16, wy * 16
    if m.shape[0] > hp or m.shape[1] > wp:
        raise QualityMapError(f"mask of size {m.shape[1]} x {m.shape[0]} larger than the picture")
    m = np.pad(m, ((0, hp - m.shape[0]), (0, wp - m.shape[1])))
    hq, wq = grid(hy, wy, block_log2)
    b = 16 << block_log2
    m = np.pad(m, ((0, hq * b - hp), (0, wq * b - wp)))
    roi = m.reshape(hq, b, wq, b).any(axis=(1, 3))
    return check_map(np.where(roi, fg, bg), hq, wq)
