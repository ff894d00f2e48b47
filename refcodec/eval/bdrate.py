"""Bjontegaard delta rate (VCEG-M33), piecewise cubic interpolation.

The log10 rate of each curve is interpolated as a function of quality with a
monotone piecewise cubic Hermite interpolant (PCHIP), as the JVET common
test conditions do, and integrated over the quality interval both curves
cover.  BD-rate = 10^(mean difference) - 1, in percent: negative means the
test curve needs fewer bits than the anchor at equal quality.
"""

import numpy as np
from scipy.interpolate import PchipInterpolator


def _curve(rates, quality):
    r = np.log10(np.asarray(rates, np.float64))
    q = np.asarray(quality, np.float64)
    order = np.argsort(q)
    q, r = q[order], r[order]
    if np.any(np.diff(q) <= 0):
        raise ValueError("quality values of a curve must be distinct")
    return q, r


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
    ra, qa = _curve_by_rate(anchor_rates, anchor_quality)
    rt, qt = _curve_by_rate(test_rates, test_quality)
    lo, hi = max(ra[0], rt[0]), min(ra[-1], rt[-1])
    if lo >= hi:
        return float("nan")
    return float((PchipInterpolator(rt, qt).integrate(lo, hi) - PchipInterpolator(ra, qa).integrate(lo, hi))
                 / (hi - lo))


def _curve_by_rate(rates, quality):
    r = np.log10(np.asarray(rates, np.float64))
    q = np.asarray(quality, np.float64)
    order = np.argsort(r)
    return r[order], q[order]
