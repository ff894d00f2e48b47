"""Clause 6.4: the gain unit in fixed point.

From ``beta_code`` (16 bits) and the model's gain vectors ``G`` (int32,
K x M, log2 gain in units of 2^-16) the decoder derives, per channel c:

* ``lg[c]``: the log2 gain, interpolated between the two trained rate points
  around beta (integer division, floor)::

      t  = beta_code * (K - 1);  k = min(t // 65535, K - 2);  f = t - k * 65535
      lg = G[k] + ((G[k+1] - G[k]) * f) // 65535

* ``sigma_shift[c]``: the sigma-index offset in the precision p_s of h_s's
  sigma output (SIGMA_PER_OCTAVE table levels per octave)::

      sigma_shift = (SIGMA_PER_OCTAVE * lg * 2^p_s + 2^15) >> 16

* ``inv_gain[c]``: 2^IG_P / gain, from the model's exp2 table
  (``EXP2[i] = round(2^30 * 2^(i / 1024))``)::

      e = -lg;  a = e >> 16;  b = e & 0xFFFF;  m = EXP2[b >> 6]
      inv_gain = (m + 2^(13 - a)) >> (14 - a)      if 14 - a > 0
               = m << (a - 14)                     otherwise

Widths: everything fits int64 (|lg| <= 8 * 2^16 by the model check).
"""

import numpy as np

from .arch import SIGMA_PER_OCTAVE


def log2_gain_fp(G, beta_code):
    G = G.astype(np.int64)
    K = G.shape[0]
    t = int(beta_code) * (K - 1)
    k = min(t // 65535, K - 2)
    f = t - k * 65535
    return G[k] + ((G[k + 1] - G[k]) * f) // 65535


def sigma_shift(lg, p_s):
    return (SIGMA_PER_OCTAVE * lg * (1 << p_s) + (1 << 15)) >> 16


def inverse_gain(lg, exp2, exp2_bits=10):
    e = -lg.astype(np.int64)
    a = e >> 16
    b = e & 0xFFFF
    m = exp2[b >> (16 - exp2_bits)].astype(np.int64)
    sh = 14 - a
    out = np.empty_like(m)
    pos = sh > 0
    out[pos] = (m[pos] + (np.int64(1) << (sh[pos] - 1))) >> sh[pos]
    out[~pos] = m[~pos] << (-sh[~pos])
    return out
