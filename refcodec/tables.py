"""Integer CDF tables for the entropy coder (built at model export).

The tables are normative *data*: they are computed once, in float64, when a
model is exported, and stored in the model file.  Decoding never evaluates
erf, exp or log; it only reads these integers (SPEC.md clause 8.3).
"""

import math

import numpy as np

from kernels.rans import PRECISION


def quantize_pmf(pmf, precision=PRECISION):
    """Integer frequencies summing to 2^precision, every one >= 1.

    Each symbol first gets 1 + floor(p * (T - n)); the remainder goes, one
    count each, to the symbols with the largest fractional parts (ties to
    the lower index), so the result is deterministic.
    """
    pmf = np.asarray(pmf, np.float64)
    pmf = pmf / pmf.sum()
    total = 1 << precision
    n = pmf.size
    if n > total:
        raise ValueError("more symbols than the precision can give frequency 1")
    scaled = pmf * (total - n)
    freq = 1 + np.floor(scaled).astype(np.int64)
    rest = total - int(freq.sum())
    order = np.lexsort((np.arange(n), -(scaled - np.floor(scaled))))
    freq[order[:rest]] += 1
    return freq


def cdf_from_freq(freq):
    return np.concatenate([[0], np.cumsum(freq)]).astype(np.int32)


def gaussian_tables(sigmas, tail=4.0, max_half_width=1024):
    """Discretized zero-mean Gaussians N(0, sigma^2) on the integers.

    Row k covers the values [-K_k, K_k], ``K_k = min(ceil(tail * sigma_k), max_half_width)``,
    plus an escape symbol holding the mass of |v| > K_k.  Returns
    ``(cdf, cdf_len, offset)`` as the coder expects.
    """
    rows = []
    for sigma in sigmas:
        K = max(1, min(int(math.ceil(tail * sigma)), max_half_width))
        v = np.arange(-K, K + 1, dtype=np.float64)
        upper = np.array([0.5 * math.erfc(-(t + 0.5) / (sigma * math.sqrt(2))) for t in v])
        lower = np.array([0.5 * math.erfc(-(t - 0.5) / (sigma * math.sqrt(2))) for t in v])
        rows.append((-K, upper - lower))
    return pack_tables(rows, escape_floor=0.0)


def pack_tables(rows, escape_floor=0.0):
    """Coder tables from ``rows`` = [(offset, pmf over offset, offset + 1, ...)]:
    each row gets an escape symbol holding the missing mass (at least
    ``escape_floor``), is quantized to 2^16 and packed into
    ``(cdf, cdf_len, offset)`` (unused entries repeat 2^16)."""
    freqs = [(off, quantize_pmf(np.concatenate([p, [max(1.0 - p.sum(), escape_floor)]]))) for off, p in rows]
    width = max(f.size for _, f in freqs) + 1
    cdf = np.zeros((len(freqs), width), np.int32)
    cdf_len = np.zeros(len(freqs), np.int32)
    offset = np.zeros(len(freqs), np.int32)
    for r, (off, f) in enumerate(freqs):
        c = cdf_from_freq(f)
        cdf[r, :c.size] = c
        cdf[r, c.size:] = c[-1]
        cdf_len[r] = f.size
        offset[r] = off
    return cdf, cdf_len, offset
