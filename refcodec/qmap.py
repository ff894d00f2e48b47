"""Clause 6.7: the spatial quality map.

One integer ``Q`` in [-8, 8] per block of 2^k x 2^k latent positions
(``k = qmap_block_log2``; a latent position covers 16 x 16 pixels).  The
block grid is ``ceil(Hy / 2^k) x ceil(Wy / 2^k)``.

Coding: the map is coded as ``V = Q / 2^s`` (``s = qmap_step_log2``; every Q
a multiple of 2^s), by the differences ``dV = V - pred`` in raster order, one
rANS substream (``q_data``).  The predictor:

    pred(0, 0) = 0
    pred(0, j) = V(0, j-1)                      first row: left
    pred(i, 0) = V(i-1, 0)                      first column: top
    pred(i, j) = (V(i, j-1) + V(i-1, j)) >> 1   elsewhere: floor of the mean

Each dV is coded with the y table row of its context c: without
``qmap_context`` the one row ``qmap_sigma_row``; with it, c = (left dV != 0) +
(upper dV != 0) picks ``qmap_sigma_row``, ``qmap_sigma_row1`` or
``qmap_sigma_row2`` (kernels.rans.grid_contexts).  A decoded Q = V * 2^s
outside [-8, 8] makes the stream non-conforming.  (With s = 0 and no
context: the first edition's coding, unchanged.)

Direct coding (third edition, ``qmap_direct``): the values V themselves, in
raster order, all with one table built from the header's frequencies
``qmap_freq[a]`` (u(8), >= 1) of V = V_min + a, a < A (:func:`direct_tables`:
cdf[a] = F_a * 65535 // F over the prefix sums F_a, the escape symbol
frequency 1).  A V outside [V_min, V_min + A - 1] (an escaped value) makes
the stream non-conforming.  Rate-distortion maps take a few values with
little spatial order (about log2(3) bits per block with Q in {-1, 0, 1}),
which a difference under a Gaussian row codes in ~1.8 bits.

Effect (clause 6.4): at a latent position whose block has quality Q, the log2
gain of every channel grows by Q / 4 (``Q << 14`` in 2^-16 units): the
residual is quantized with a step ``2^(-Q/4)`` times the gain unit's, and the
sigma index moves by ``2 Q`` table levels (8 levels per octave).

Encoder strategies (not normative): ``flat``, ``activity`` (block variance
thresholds, as the JPEG AI reference software), a user map (``.npy`` of Q
values, or a PNG mask with foreground / background Q).
"""

from typing import NamedTuple

import numpy as np

from kernels import rans

from .errors import BitstreamError, RefcodecError

Q_MIN, Q_MAX = -8, 8
CLAUSE = "6.7"
#: Direct coding (third edition): at most this many values, each frequency u(8) in [1, FREQ_MAX].
DIRECT_VALUES_MAX = Q_MAX - Q_MIN + 1
FREQ_MAX = 255


class QualityMapError(RefcodecError):
    """A quality map given to the encoder is malformed (shape, values, file)."""


def grid(hy, wy, block_log2):
    b = 1 << block_log2
    return -(-hy // b), -(-wy // b)


def step_log2_of(Q):
    """The largest qmap_step_log2 (0 ... 2) that divides every Q of the map."""
    Q = np.asarray(Q, np.int64)
    for s in (2, 1):
        if not np.any(Q % (1 << s)):
            return s
    return 0


def predictor(Q, i, j):
    if i == 0 and j == 0:
        return 0
    if i == 0:
        return int(Q[0, j - 1])
    if j == 0:
        return int(Q[i - 1, 0])
    return (int(Q[i, j - 1]) + int(Q[i - 1, j])) >> 1


def differences(Q, step_log2=0):
    """dV = V - pred of V = Q / 2^step_log2, raster order (int32)."""
    Q = np.asarray(Q, np.int64) >> step_log2
    d = np.empty(Q.shape, np.int64)
    for i in range(Q.shape[0]):
        for j in range(Q.shape[1]):
            d[i, j] = Q[i, j] - predictor(Q, i, j)
    return d.astype(np.int32).reshape(-1)


def reconstruct(dq, hq, wq, step_log2=0):
    """Q from the decoded differences; raises BitstreamError if a Q leaves [-8, 8]."""
    V = np.zeros((hq, wq), np.int64)
    d = dq.reshape(hq, wq).astype(np.int64)
    for i in range(hq):
        for j in range(wq):
            v = d[i, j] + predictor(V, i, j)
            if not Q_MIN <= v << step_log2 <= Q_MAX:
                raise BitstreamError(f"quality map value {v << step_log2} at block ({i}, {j}) outside "
                                     f"[{Q_MIN}, {Q_MAX}]", field="q_data", clause=CLAUSE)
            V[i, j] = v
    return (V << step_log2).astype(np.int32)


def encode_qmap(Q, ctx_rows, y_tables, step_log2=0, backend="cpu"):
    """q_data of the map Q: ``ctx_rows``, the table row of each context (one int: the same row for all)."""
    d = differences(Q, step_log2).reshape(np.shape(Q))
    rows = [ctx_rows] * 3 if np.ndim(ctx_rows) == 0 else ctx_rows
    return rans.encode_grid(d, rows, y_tables, backend=backend)


def decode_qmap(data, hq, wq, ctx_rows, y_tables, step_log2=0, backend="cpu", direct=None):
    """Q (hq, wq) from q_data; ``ctx_rows``: the header's row of each context (one int: the same for all);
    ``direct``: (V_min, frequencies) of the third edition's direct coding (ctx_rows unused)."""
    if direct is not None:
        return decode_direct(data, hq, wq, *direct, step_log2=step_log2, backend=backend)
    rows = [ctx_rows] * 3 if np.ndim(ctx_rows) == 0 else list(ctx_rows)
    names = ("qmap_sigma_row", "qmap_sigma_row1", "qmap_sigma_row2")
    for r, name in zip(rows, names):
        if r >= y_tables[0].shape[0]:
            raise BitstreamError(f"{name} {r} names no table row (the model has {y_tables[0].shape[0]})",
                                 field=name, clause="5.2")
    dq = rans.decode_grid(data, hq, wq, rows, y_tables, backend=backend)
    return reconstruct(dq.reshape(-1), hq, wq, step_log2)


def direct_tables(v_min, freqs):
    """The one-row table of the direct coding (clause 6.7): symbol a < A is
    V = v_min + a with cdf[a] = F_a * 65535 // F (F_a the sum of the first a
    frequencies, F of all A), symbol A the escape, frequency 1.  Every
    frequency >= 1 and F <= 17 * 255 make every step >= 15: the row rises
    strictly, as clause 6.1 requires.  The products fit 32 bits."""
    f = np.asarray(freqs, np.int64)
    if not (1 <= f.size <= DIRECT_VALUES_MAX and f.min() >= 1 and f.max() <= FREQ_MAX):
        raise ValueError("direct map coding: 1 ... 17 frequencies in [1, 255] expected")
    F = np.concatenate([[0], np.cumsum(f)])
    cdf = np.zeros((1, f.size + 2), np.int32)
    cdf[0, :f.size + 1] = F * 65535 // F[-1]
    cdf[0, f.size + 1] = 1 << rans.PRECISION
    return rans.Tables(cdf, np.array([f.size + 1], np.int32), np.array([v_min], np.int32))


def direct_freqs(Q, step_log2=0):
    """The encoder's frequency table for the direct coding of Q: (V_min,
    frequencies), each value's count scaled so that the commonest is 255
    (at least 1, so every value of V_min ... V_max stays codable)."""
    V = np.asarray(Q, np.int64).reshape(-1) >> step_log2
    v_min = int(V.min())
    c = np.bincount(V - v_min).astype(np.float64)
    return v_min, tuple(int(x) for x in np.maximum(1, np.round(c * FREQ_MAX / c.max())))


def encode_direct(Q, v_min, freqs, step_log2=0, backend="cpu"):
    """q_data of the map Q, directly coded (third edition)."""
    V = (np.asarray(Q, np.int64).reshape(-1) >> step_log2).astype(np.int32)
    if V.size and (V.min() < v_min or V.max() > v_min + len(freqs) - 1):
        raise ValueError("direct map coding: a value outside the table's range")
    return rans.encode(V, np.zeros(V.size, np.int32), np.array([0, V.size], np.int64),
                       direct_tables(v_min, freqs), backend=backend)[0]


def decode_direct(data, hq, wq, v_min, freqs, step_log2=0, backend="cpu"):
    """Q (hq, wq) from a directly coded q_data; raises BitstreamError for a
    value outside V_min ... V_min + A - 1 (an escape)."""
    n = hq * wq
    V = rans.decode(data, [len(data)], np.array([0, n], np.int64), np.zeros(n, np.int32),
                    direct_tables(v_min, freqs), backend=backend)
    bad = np.flatnonzero((V < v_min) | (V > v_min + len(freqs) - 1))
    if bad.size:
        i, j = divmod(int(bad[0]), wq)
        raise BitstreamError(f"quality map value V = {int(V[bad[0]])} at block ({i}, {j}) outside the direct "
                             f"coding's range [{v_min}, {v_min + len(freqs) - 1}]", field="q_data", clause=CLAUSE)
    return (V.astype(np.int32) << step_log2).reshape(hq, wq)


def direct_bits(Q, step_log2=0, table=None):
    """(bits, (V_min, freqs)): the information content of Q's direct coding
    under ``table`` (V_min, freqs) or the encoder's own table of Q, the
    header's V_min, A and frequencies included."""
    v_min, freqs = table if table is not None else direct_freqs(Q, step_log2)
    V = np.asarray(Q, np.int64).reshape(-1) >> step_log2
    bits = float(direct_tables(v_min, freqs).symbol_bits(V, np.zeros(V.size, np.int64)).sum())
    return bits + 8 * (2 + len(freqs)), (v_min, freqs)


def _row_bits(d, y_tables):
    """bits[r]: the information content of the values d under each table row r (escapes included)."""
    tables = rans.as_tables(y_tables)
    d = np.asarray(d, np.int64).reshape(-1)
    return np.array([float(tables.symbol_bits(d, np.full(d.size, r)).sum()) for r in range(tables[0].shape[0])])


def fit_rows(d, y_tables):
    """The rows that code the differences d (a 2-D grid, raster order) best:
    ``(row, bits)`` for one row, and ``(rows, bits)`` for the three context
    rows (the header's two extra bytes not counted)."""
    d = np.asarray(d)
    one = _row_bits(d, y_tables)
    ctx = rans.grid_contexts(d)
    per = [_row_bits(d.reshape(-1)[ctx == c], y_tables) for c in range(rans.GRID_CONTEXTS)]
    return ((int(np.argmin(one)), float(one.min())),
            (tuple(int(np.argmin(b)) for b in per), sum(float(b.min()) for b in per)))


#: The encoder's choices of map coding: the cheapest (``auto``), the first
#: edition's (``first``: no step, one row), the step alone (``step``: one
#: row), the step with contexts (``context``), or the third edition's
#: values under a table of frequencies (``direct``).
MAP_CODINGS = ("auto", "first", "step", "context", "direct")


class MapSyntax(NamedTuple):
    """How a map is coded (clause 6.7): its step, contexts and rows, or the
    direct coding's (V_min, frequencies); ``bits``: q_data's information
    content plus the header bytes beyond the one qmap_sigma_row every
    difference coding has."""
    step_log2: int
    context: bool
    ctx_rows: tuple
    bits: float
    direct: tuple = None


def map_syntax(Q, y_tables, coding="auto"):
    """The coding of the map Q (a MapSyntax); ``coding`` one of MAP_CODINGS."""
    if coding == "first":
        row = best_sigma_row(Q, y_tables)
        return MapSyntax(0, False, (row,) * 3, float(_row_bits(differences(Q), y_tables)[row]))
    s = step_log2_of(Q)
    if coding == "direct" or coding == "auto":
        d_bits, table = direct_bits(Q, s)
        direct = MapSyntax(s, False, (0,) * 3, d_bits - 8, table)   # - 8: no qmap_sigma_row
        if coding == "direct":
            return direct
    (row, one_bits), (rows, ctx_bits) = fit_rows(differences(Q, s).reshape(np.shape(Q)), y_tables)
    if coding == "context":
        return MapSyntax(s, True, rows, ctx_bits + 16)          # 16: two more header bytes
    best = MapSyntax(s, False, (row,) * 3, one_bits)
    if coding == "auto":
        if ctx_bits + 16 < best.bits:
            best = MapSyntax(s, True, rows, ctx_bits + 16)
        if direct.bits < best.bits:
            best = direct
    return best


def encode_map(Q, syntax, y_tables, backend="cpu"):
    """q_data of the map Q coded as ``syntax`` (a MapSyntax)."""
    if syntax.direct is not None:
        return encode_direct(Q, *syntax.direct, step_log2=syntax.step_log2, backend=backend)
    return encode_qmap(Q, syntax.ctx_rows, y_tables, syntax.step_log2, backend=backend)


def best_sigma_row(Q, y_tables):
    """The table row that codes the map's differences (first edition: no
    step, one row) in the fewest bits (information content, escapes
    included; ties to the lower row)."""
    return int(np.argmin(_row_bits(differences(Q), y_tables)))


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
