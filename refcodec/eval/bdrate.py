"""Bjontegaard delta rate (VCEG-M33), piecewise cubic interpolation.

The log10 rate of each curve is interpolated as a function of quality with a
monotone piecewise cubic Hermite interpolant (PCHIP), as the JVET common
test conditions do, and integrated over the quality interval both curves
cover.  BD-rate = 10^(mean difference) - 1, in percent: negative means the
test curve needs fewer bits than the anchor at equal quality.
"""

import numpy as np
from scipy.interpolate import PchipInterpolator


def _curve(rates, quality, by_rate=False):
    """(x, y) sorted by x: x = quality, y = log10 rate (or the reverse with by_rate)."""
    r = np.log10(np.asarray(rates, np.float64))
    q = np.asarray(quality, np.float64)
    x, y = (r, q) if by_rate else (q, r)
    order = np.argsort(x)
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise ValueError("the points of a curve must be distinct")
    return x, y


def bd_rate(anchor_rates, anchor_quality, test_rates, test_quality):
    qa, ra = _curve(anchor_rates, anchor_quality)
    qt, rt = _curve(test_rates, test_quality)
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if lo >= hi:
        return float("nan")
    ia = PchipInterpolator(qa, ra).integrate(lo, hi)
    it = PchipInterpolator(qt, rt).integrate(lo, hi)
    return float((10 ** ((it - ia) / (hi - lo)) - 1) * 100)


def bd_psnr(anchor_rates, anchor_quality, test_rates, test_quality):
    """Mean quality difference at equal rate (dB), PCHIP on log rate."""
    ra, qa = _curve(anchor_rates, anchor_quality, by_rate=True)
    rt, qt = _curve(test_rates, test_quality, by_rate=True)
    lo, hi = max(ra[0], rt[0]), min(ra[-1], rt[-1])
    if lo >= hi:
        return float("nan")
    return float((PchipInterpolator(rt, qt).integrate(lo, hi) - PchipInterpolator(ra, qa).integrate(lo, hi))
                 / (hi - lo))
