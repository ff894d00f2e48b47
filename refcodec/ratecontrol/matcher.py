"""Bit-rate matching: hit a target bpp with a few rate-only trials.

The fast method (after Jia et al., "Bit Rate Matching Algorithm Optimization
in JPEG-AI Verification Model", 2024):

1. the analysis transform runs once; its latent (y, z_hat, and the integer
   h_s output) is reused by every trial (:class:`refcodec.encoder.Analysis`);
2. a trial counts the bits of the y latent exactly from the integer tables --
   the information content ``sum 16 - log2(freq)`` of every symbol plus the
   escape bits, vectorized, no range coding and no decoding -- and adds the
   container's bytes (header, sizes, the z substream coded once, two coder
   states per substream);
3. beta is predicted from the log-linear relation ``log(bpp) = A * beta + B``
   (beta is linear in the log gain, so this is the papers' log-log relation)
   fitted on the trials so far: a secant step, regula falsi once the target is
   bracketed, always kept inside the bracket;
4. the stream is written once, at the chosen beta.

Beyond the gain unit's range (a target below the rate at beta = 0 or above
the rate at beta = 1), the flat-map search goes on with a uniform quality
map (clause 6.7, one Q for every 256 x 256 block): Q < 0 quantizes up to 4x
coarser, Q > 0 up to 4x finer.  Q is predicted from the flat search's slope
of log(bpp) against the mean log2 gain (Q adds Q / 4 to every channel's log2
gain), then beta is matched at that Q as above.  The map costs a few bytes.  ``extend=False`` turns this off.

``side="below"`` accepts only rates in [T (1 - tol), T]; ``side="both"``
accepts |R - T| <= tol T.  The baseline the papers improved on is kept as
``method="bisect"``: bisection over beta with a full encode and a full decode
per trial.
"""

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..encoder import BETA_CODE_MAX, Analysis
from ..errors import RefcodecError
from ..syntax.picture_header import HEADER_BYTES


#: Latent refinements per matched encode (``refine`` of :func:`match_fast`).
REFINE_ROUNDS = 2


class RateError(RefcodecError):
    """The target rate cannot be reached within the model's range."""


@dataclass
class MatchResult:
    data: bytes
    bpp: float
    target_bpp: float
    beta: float
    beta_code: int
    trials: int
    seconds: float
    method: str
    warnings: list = field(default_factory=list)
    #: 0, or the uniform quality map Q that took the rate beyond the gain unit's range
    extension_q: int = 0

    def as_dict(self):
        return {"bpp": self.bpp, "target_bpp": self.target_bpp, "beta": self.beta, "beta_code": self.beta_code,
                "trials": self.trials, "seconds": self.seconds, "method": self.method, "bytes": len(self.data),
                "extension_q": self.extension_q, "warnings": self.warnings}


class RateCounter:
    """Exact information content of the y symbols under the integer tables
    (kernels.rans.Tables.symbol_bits)."""

    def __init__(self, model):
        self.tables = model.y_tables

    def symbol_bits(self, q, rows):
        """Information content of each symbol (escape bits included)."""
        return self.tables.symbol_bits(q, rows)

    def bits(self, q, rows):
        return float(self.symbol_bits(q, rows).sum())


#: Measured cost of the rANS coder over the information content: the final
#: states (about 6 bytes per substream) and 0.2 % (16-bit states and
#: precision); see tests/test_ratecontrol.py.
FLUSH_BYTES = 6
CODER_EXCESS = 0.002


def _fixed_bytes(an, substreams, Q=None, block_log2=0):
    # header, substream sizes, the quality map and z substreams (coded once), the flush of each y substream
    qbytes = 0 if Q is None else 2 + 4 + len(an.qmap_stream(Q, block_log2)[0])
    return HEADER_BYTES + 4 * (1 + substreams) + len(an.z_stream()) + FLUSH_BYTES * substreams + qbytes


def estimate_bpp(an, counter, beta_code, substreams, Q=None, block_log2=0, fixed=None):
    """Stream size in bpp at beta_code: the container's bytes plus the
    information content of the y symbols under the integer tables."""
    q, rows = an.quantize(beta_code, Q, block_log2)
    if fixed is None:
        fixed = _fixed_bytes(an, substreams, Q, block_log2)
    nbytes = fixed + (1 + CODER_EXCESS) * counter.bits(q, rows) / 8
    return 8 * nbytes / (an.width * an.height)


def _miss(r, target, side):
    """How far a written rate is from the target (any rate above the target
    is a worse miss than every rate below it when side is "below")."""
    if side == "below" and r > target:
        return r                  # above every miss below the target (those are < target)
    return abs(r - target)


def _bisect_written(an, S, Q, block_log2, target, tol, side, code, data, bpp, max_trials=6):
    """(code, data, bpp, trials): the written stream closest to the target
    found by bisecting beta codes on written streams (Q fixed), starting from
    the written ``code``; stops once one is inside the window."""
    npx = an.width * an.height
    best = (code, data, bpp)
    trials = 0
    step = max(1, int(0.01 * BETA_CODE_MAX))
    lo = hi = None
    if bpp > target:
        hi = code
    else:
        lo = code
    while trials < max_trials:
        if lo is None:
            c = max(0, hi - step)
        elif hi is None:
            c = min(BETA_CODE_MAX, lo + step)
        else:
            c = (lo + hi) // 2
        if c in (lo, hi):
            break
        d = an.stream(c, S, Q, block_log2)
        r = 8 * len(d) / npx
        trials += 1
        if _miss(r, target, side) < _miss(best[2], target, side):
            best = (c, d, r)
        if _accept(r, target, tol, side):
            break
        if r > target:
            hi = c
        else:
            lo = c
        step *= 2
    return (*best, trials)


def _accept(r, target, tol, side):
    if side == "below":
        return target * (1 - tol) <= r <= target
    return abs(r - target) <= tol * target


def match_fast(rgb, target_bpp, model, tolerance=0.01, side="both", nearest=False, num_y_substreams=None,
               backend="cpu", max_trials=12, qmap=None, qmap_block_log2=None, roi_q=(6, -3), extend=True,
               refine=0, context=None, rdoq=None, monochrome=None, tune="psnr", postfilter=None):
    from ..encoder import rdo_map, resolve_qmap
    t0 = time.perf_counter()
    an = Analysis(rgb, model, backend, context=context, rdoq=rdoq, monochrome=monochrome, tune=tune,
                  postfilter=postfilter)
    S = num_y_substreams or an.default_substreams()
    counter = RateCounter(model)
    trials0 = 0
    if refine:
        # refined latents spend fewer bits at a given beta: refine at the beta
        # that matches with the current latents, then once more at the beta
        # that matches with the refined ones (refcodec.refine)
        from ..refine import refine_latents
        for _ in range(REFINE_ROUNDS):
            code0, t, _, _ = _search(an, counter, None, 0, S, target_bpp, tolerance, side, max_trials, model)
            trials0 += t
            an = Analysis(rgb, model, backend, latents=refine_latents(rgb, model, code0 / BETA_CODE_MAX, refine),
                          context=context, rdoq=rdoq, monochrome=monochrome, tune=tune, postfilter=postfilter)
    if isinstance(qmap, str) and qmap == "rdo":
        # the map trades distortion for rate at the picture's own RD slope where
        # it will be coded: find that operating point on the flat map first
        # (RDO_POINT_TRIALS trials, then the secant's prediction: the map needs the picture's RD
        # slope there, not the exact rate); the map's search starts at that point, with the flat
        # search's local slope
        flat = {}
        code0, trials0, _, _ = _search(an, counter, None, 0, S, target_bpp, tolerance, side, RDO_POINT_TRIALS,
                                       model, record=flat, check_range=False)
        if not _accept(flat.get(code0, 0.0), target_bpp, tolerance, side):
            code0 = _predict_code(flat, target_bpp, model, code0)
        info = {}
        Q, qmap_block_log2 = rdo_map(an, rgb, qmap_block_log2, beta_code=code0, info=info)
        start, slope = code0, _local_slope(flat, code0, model)
        if slope and slope > 0 and info.get("y_bits_flat"):
            # the map moves the rate at code0 by what rdo_map measured on the way: start where the
            # flat curve, moved by as much, meets the target
            npx = an.width * an.height
            flat_bpp = flat.get(code0) or target_bpp
            moved = flat_bpp + (info["y_bits"] + info["map_bits"] - info["y_bits_flat"]) / npx
            if moved > 0:
                U, C, _ = _gain_axis(model)
                start = int(min(max(C(U(code0) - math.log(moved / flat_bpp) / slope), 0), BETA_CODE_MAX))
    else:
        Q, qmap_block_log2 = resolve_qmap(an, rgb, qmap, qmap_block_log2, roi_q)
        start = slope = None
    chosen, trials, notes, outside = _search(an, counter, Q, qmap_block_log2, S, target_bpp, tolerance, side,
                                             max_trials, model, start=start, slope=slope)
    extended = bool(outside and Q is None and extend)
    if extended:
        # beyond the gain unit: a uniform quality map (RateError, or the nearest point, if even that fails)
        chosen, extra, notes, Q, qmap_block_log2, limited = _extend(an, counter, S, target_bpp, tolerance, side,
                                                                    max_trials, model, nearest, outside)
        trials += extra
    else:
        limited = bool(outside)
        if limited:
            _out_of_range(target_bpp, outside, nearest, notes)
    trials += trials0
    data = an.stream(chosen, S, Q, qmap_block_log2)
    bpp = 8 * len(data) / (an.width * an.height)
    if not _accept(bpp, target_bpp, tolerance, side) and not limited:
        # the estimate missed by more than the tolerance (a few bytes matter on a
        # small stream): search again with the measured excess, and write once more
        est = estimate_bpp(an, counter, chosen, S, Q, qmap_block_log2)
        bias = (bpp - est) * an.width * an.height / 8

        def closer(Q2, known=None):
            # search Q2's betas with the measured excess; keep the written stream if it is closer
            nonlocal chosen, data, bpp, Q, trials
            chosen2, more, _, out2 = _search(an, counter, Q2, qmap_block_log2, S, target_bpp, tolerance, side,
                                             max_trials, model, known=known, bias_bytes=bias)
            trials += more
            if not out2:
                data2 = an.stream(chosen2, S, Q2, qmap_block_log2)
                bpp2 = 8 * len(data2) / (an.width * an.height)
                if _miss(bpp2, target_bpp, side) < _miss(bpp, target_bpp, side):
                    chosen, data, bpp, Q = chosen2, data2, bpp2, Q2

        closer(Q, known={chosen: bpp})
        if extended and not _accept(bpp, target_bpp, tolerance, side):
            # the uniform map was chosen on estimates, and the written stream
            # shows the target just beyond its end of the beta range (or
            # between two of its byte counts): one Q further gives other rates
            from ..qmap import Q_MAX, Q_MIN
            v = int(Q.flat[0]) + (1 if Q.flat[0] > 0 else -1)
            if Q_MIN <= v <= Q_MAX:
                closer(np.full_like(Q, v))
        if not _accept(bpp, target_bpp, tolerance, side):
            # the written rate steps between neighbouring codes by more than the
            # estimate's excess tells (a few bytes on a small stream): bisect on
            # written streams between the closest codes on either side
            chosen, data, bpp, more = _bisect_written(an, S, Q, qmap_block_log2, target_bpp, tolerance, side,
                                                      chosen, data, bpp)
            trials += more
    if side == "below" and bpp > target_bpp and chosen > 0:
        # the estimate is exact to a few bytes; step down until the written stream is under the target
        while bpp > target_bpp and chosen > 0:
            chosen = max(0, chosen - max(1, int(0.002 * BETA_CODE_MAX)))
            trials += 1
            data = an.stream(chosen, S, Q, qmap_block_log2)
            bpp = 8 * len(data) / (an.width * an.height)
    if not limited:
        # a search's own miss is superseded by what the written stream shows
        notes[:] = [n for n in notes if not n.startswith("tolerance not met")]
        if not _accept(bpp, target_bpp, tolerance, side):
            _tolerance_missed(bpp, target_bpp, tolerance, side, an.width * an.height, notes)
    was = an.postfilter
    if an.choose_postfilter(rgb, chosen, Q, qmap_block_log2) != was:
        # the filter's flag changes no length: the same stream with the other flag
        data = an.stream(chosen, S, Q, qmap_block_log2)
    ext = int(Q.flat[0]) if extended else 0
    return MatchResult(data=data, bpp=bpp, target_bpp=target_bpp, beta=chosen / BETA_CODE_MAX, beta_code=chosen,
                       trials=trials, seconds=time.perf_counter() - t0, method="fast", warnings=notes,
                       extension_q=ext)


#: Trials of the flat search that places an rdo map (the map is chosen at
#: the picture's RD slope there, predicted from these trials; the rate is
#: matched after, with the map).
RDO_POINT_TRIALS = 2


def _predict_code(rates, target_bpp, model, fallback):
    """The code where log(bpp) reaches the target on the secant through the
    two measured codes nearest to it in rate (in the mean-log2-gain axis)."""
    U, C, _ = _gain_axis(model)
    pts = sorted(rates.items(), key=lambda cr: abs(math.log(cr[1] / target_bpp)))[:2]
    if len(pts) < 2:
        return fallback
    (c1, r1), (c2, r2) = pts
    du, dl = U(c2) - U(c1), math.log(r2) - math.log(r1)
    if du == 0 or dl == 0 or dl / du <= 0:
        return fallback
    return int(min(max(C(U(c2) + (math.log(target_bpp) - math.log(r2)) * du / dl), 0), BETA_CODE_MAX))


def _local_slope(rates, code, model):
    """d log(bpp) / d (mean log2 gain) near ``code`` from the measured
    ``rates`` {code: bpp}: the two measured codes nearest to it."""
    U = _gain_axis(model)[0]
    pts = sorted(rates.items(), key=lambda cr: abs(cr[0] - code))[:2]
    curve = model.header.get("rate_curve")
    if len(pts) < 2 and curve:
        # one point: the slope of the model's mean rate curve (measured at export) there
        b = [b for b, _ in curve]
        c1, c2 = max(0, code - 2048), min(BETA_CODE_MAX, code + 2048)
        l1, l2 = (float(np.interp(c / BETA_CODE_MAX, b, [v for _, v in curve])) for c in (c1, c2))
        pts = [(c1, math.exp(l1)), (c2, math.exp(l2))]
    if len(pts) < 2:
        return None
    (c1, r1), (c2, r2) = pts
    du = U(c2) - U(c1)
    return (math.log(r2) - math.log(r1)) / du if du and r1 > 0 and r2 > 0 else None


def _curve_code(curve, log_rate):
    """The code where the mean rate curve [[beta, ln bpp], ...] reaches log_rate."""
    b = float(np.interp(log_rate, [v for _, v in curve], [b for b, _ in curve]))
    return int(round(b * BETA_CODE_MAX))


_AXES = {}


def _gain_axis(model):
    """(U, C, span): code -> mean log2 gain, its inverse (on a 257-point grid,
    linear between), and U(max) - U(0).  Falls back to beta itself when the
    mean gain is not increasing."""
    key = id(model)
    if key not in _AXES:
        codes = np.linspace(0, BETA_CODE_MAX, 257).round()
        u = np.array([_mean_log2_gain(model, int(c)) for c in codes])
        if np.all(np.diff(u) > 0):
            def U(code):
                return _mean_log2_gain(model, int(code))

            def C(v):
                return int(round(float(np.interp(v, u, codes))))
            _AXES[key] = (U, C, float(u[-1] - u[0]), model)
        else:
            _AXES[key] = (lambda code: code / BETA_CODE_MAX, lambda v: int(round(v * BETA_CODE_MAX)), 1.0, model)
    return _AXES[key][:3]


def _mean_log2_gain(model, code):
    from ..gain import log2_gain_fp
    return float(np.mean(log2_gain_fp(model.gain_log2_fp, code))) / 65536


#: The uniform map of the range extension: one Q per 256 x 256 pixels.
EXTEND_BLOCK_LOG2 = 4


def _extend(an, counter, S, target_bpp, tolerance, side, max_trials, model, nearest, outside):
    """Match with a uniform quality map Q != 0 when the target lies beyond the
    gain unit's range: (chosen code, trials, notes, Q map, block_log2, limited)."""
    from ..qmap import Q_MAX, Q_MIN
    k = EXTEND_BLOCK_LOG2
    grid = an.qmap_grid(k)
    trials = 0
    rates = {(0, code): r for code, r in outside[2].items()}     # measured by the flat search

    def rate(v, code):
        nonlocal trials
        if (v, code) not in rates:
            trials += 1
            Qm = None if v == 0 else np.full(grid, v, np.int32)
            rates[(v, code)] = estimate_bpp(an, counter, code, S, Qm, k)
        return rates[(v, code)]

    r_lo, r_hi, flat = outside
    low = target_bpp < r_lo
    end = 0 if low else BETA_CODE_MAX        # the end of the beta range next to the target
    sign = -1 if low else 1
    r_end = r_lo if low else r_hi
    need = math.log(target_bpp) - math.log(r_end)           # in ln(bpp)
    # Q moves every channel's log2 gain by Q / 4: predict Q from the flat
    # search's slope of ln(bpp) against the mean log2 gain (no extra trial)
    other = [c for c in flat if c != end]
    slope = None
    if other:
        c = min(other, key=lambda c: abs(c - end))
        dg = _mean_log2_gain(model, c) - _mean_log2_gain(model, end)
        if dg != 0:
            slope = (math.log(flat[c]) - math.log(r_end)) / dg
    if slope is None or slope <= 0:
        # or from one probe at |Q| = 4
        slope = (math.log(rate(4 * sign, end)) - math.log(r_end)) / sign
    v = int(min(Q_MAX, max(1, math.ceil(abs(4 * need / slope) - 1e-9)))) * sign

    def passes(v):
        r = rate(v, end)
        return r <= target_bpp if low else r >= target_bpp * (1 - tolerance)

    while not passes(v) and abs(v) < Q_MAX:
        v += sign
    if not passes(v):
        notes = []
        _out_of_range(target_bpp, (rate(Q_MIN, 0), rate(Q_MAX, BETA_CODE_MAX)), nearest, notes,
                      " with the quality map")
        return end, trials, notes, np.full(grid, v, np.int32), k, True
    Q = np.full(grid, v, np.int32)
    known = {code: r for (vv, code), r in rates.items() if vv == v}
    chosen, more, notes, _ = _search(an, counter, Q, k, S, target_bpp, tolerance, side, max_trials, model,
                                     known=known)
    return chosen, trials + more, notes, Q, k, False


def _tolerance_missed(bpp, target_bpp, tolerance, side, npx, notes):
    """Say that the written stream is outside the tolerance, and by how much.

    Within the reachable range this happens when no beta gives a stream of a
    size inside the window (on a small picture one byte is ``800 / npx`` % of
    a 1 bpp stream), or when the trial budget ran out.  The stream is still
    the closest one found; the caller decides what to do with it."""
    window = f"-{tolerance:.1%} ... 0" if side == "below" else f"\u00b1{tolerance:.1%}"
    byte = 800 / (npx * target_bpp)
    notes.append(f"tolerance not met: the written stream is {bpp:.4f} bpp, {bpp / target_bpp - 1:+.2%} from the "
                 f"target {target_bpp} bpp (window {window}; one byte is {byte:.2f} % of the target here); "
                 f"using the closest point")
    warnings.warn(notes[-1])


def _out_of_range(target_bpp, reach, nearest, notes, how=""):
    text = f"{reach[0]:.4f} ... {reach[1]:.4f} bpp"
    if not nearest:
        raise RateError(f"target {target_bpp} bpp is outside the reachable range {text} for this image{how}")
    notes.insert(0, f"target {target_bpp} bpp outside the reachable range {text}{how}; using the nearest point")
    warnings.warn(notes[0])


def _search(an, counter, Q, block_log2, S, target_bpp, tolerance, side, max_trials, model, known=None,
            bias_bytes=0, start=None, slope=None, record=None, check_range=True):
    """The rate-only search over beta_code: (chosen code, trials, notes,
    outside), ``outside = (rate at beta 0, rate at beta 1)`` when the target
    lies beyond them (chosen is then the nearest end), else None.
    ``bias_bytes``: a correction added to every estimate (measured on a
    written stream).
    ``known``: rates already measured at some codes (no trial spent on them).
    ``start``, ``slope``: the first code to try and the slope of log(bpp)
    against the mean log2 gain to step from it (the flat search's, when a
    quality map follows it); ``record``: a dict that receives every
    (code: rate) measured.  ``check_range=False``: when no trial is
    accepted, the nearest point without measuring the ends of the range."""
    fixed = _fixed_bytes(an, S, Q, block_log2) + bias_bytes
    trials = 0
    cache = dict(known or {}) if record is None else record
    cache.update(known or {})

    def rate(code):
        nonlocal trials
        if code not in cache:
            trials += 1
            cache[code] = estimate_bpp(an, counter, code, S, Q, block_log2, fixed)
        return cache[code]

    # The secant works on u = the mean log2 gain at a code (beta interpolates
    # the log gains between trained rate points, piecewise; log(bpp) is close
    # to linear in u), converted back to a code for each trial.
    U, C, span = _gain_axis(model)
    # aim inside the accepted band: its middle for the one-sided band
    log_t = math.log(target_bpp * (1 - tolerance / 2) if side == "below" else target_bpp)
    lo_code, hi_code = 0, BETA_CODE_MAX
    lo_r = hi_r = None
    curve = model.header.get("rate_curve")
    # first guess: a known point, or where the model's mean rate curve (measured
    # at export) meets the target, or the middle of the range; then secant steps
    if start is not None and not cache:
        code = start
    elif cache:
        code = min(cache)
    elif curve and Q is None and bias_bytes == 0:
        code = _curve_code(curve, log_t)
    else:
        code = BETA_CODE_MAX // 2
    pts = []
    chosen = None
    notes = []
    while trials < max_trials:
        r = rate(code)
        pts.append((code, math.log(r)))
        if _accept(r, target_bpp, tolerance, side):
            chosen = code
            break
        if r < target_bpp:
            lo_code, lo_r = code, r
        else:
            hi_code, hi_r = code, r
        if hi_code - lo_code <= 1:
            break
        if len(pts) == 1 and curve and Q is None:
            # this picture's offset from the mean curve, applied to the curve
            c0 = code / BETA_CODE_MAX
            mean_at = float(np.interp(c0, [b for b, _ in curve], [v for _, v in curve]))
            nxt = _curve_code(curve, log_t - (pts[0][1] - mean_at))
        elif len(pts) == 1:
            # slope prior d ln(bpp) / d beta: the caller's, or a typical value
            prior = slope if slope and slope > 0 else 1.6 / span
            nxt = C(U(code) + (log_t - pts[0][1]) / prior)
        else:
            (c1, l1), (c2, l2) = pts[-2], pts[-1]
            if lo_r is not None and hi_r is not None:   # regula falsi on the bracket
                c1, l1, c2, l2 = lo_code, math.log(lo_r), hi_code, math.log(hi_r)
            du = U(c2) - U(c1)
            slope = (l2 - l1) / du if du != 0 and l2 != l1 else None
            nxt = C(U(c2) + (log_t - l2) / slope) if slope and slope > 0 else (lo_code + hi_code) // 2
        nxt = min(max(nxt, lo_code + 1 if lo_r is not None else 0), hi_code - 1 if hi_r is not None else BETA_CODE_MAX)
        if nxt in cache:
            nxt = (lo_code + hi_code) // 2
            if nxt in cache:
                break
        code = nxt
    outside = None
    if chosen is None and not check_range:
        chosen = min(cache, key=lambda c: abs(math.log(cache[c] / target_bpp)))
    elif chosen is None:
        r_min, r_max = rate(0), rate(BETA_CODE_MAX)
        if target_bpp < r_min * (1 - (0 if side == "below" else tolerance)) or target_bpp > r_max * (1 + tolerance):
            outside = (r_min, r_max, dict(cache))
            chosen = 0 if target_bpp < r_min else BETA_CODE_MAX
        else:
            # best point seen on the right side
            ok = [(abs(v - target_bpp), c) for c, v in cache.items() if side != "below" or v <= target_bpp]
            chosen = min(ok)[1] if ok else 0
            notes.append("tolerance not met within the trial budget; using the closest point")
    return chosen, trials, notes, outside


def match_bisect(rgb, target_bpp, model, tolerance=0.01, side="both", nearest=False, num_y_substreams=None,
                 backend="cpu", max_trials=20, qmap=None, qmap_block_log2=None, roi_q=(6, -3), context=None,
                 rdoq=None, extend=True, monochrome=None, tune="psnr", postfilter=None):
    """Baseline: bisection over beta, a full encode and decode per trial.

    Beyond the gain unit's range it goes on as the fast method does (without
    a map of the user's): bisection over a uniform quality map Q at the end
    of the beta range next to the target, then over beta at that Q."""
    from ..decoder import decode
    from ..encoder import encode
    from ..qmap import Q_MAX, grid
    from ..decoder import grid_sizes
    t0 = time.perf_counter()
    npx = rgb.shape[0] * rgb.shape[1]
    trials = 0
    seen = {}

    def trial(code, qm_arg, k, tag=None):
        """(bpp, stream) at code with the map qm_arg; tag: the uniform Q, or None for the user's map."""
        nonlocal trials
        key = (code, tag)
        if key not in seen:
            data = encode(rgb, beta=code / BETA_CODE_MAX, model=model, num_y_substreams=num_y_substreams,
                          backend=backend, qmap=qm_arg, qmap_block_log2=k, roi_q=roi_q, context=context,
                          rdoq=rdoq, monochrome=monochrome, tune=tune, postfilter=postfilter)
            decode(data, backend=backend, models=[model])        # the loss evaluation of the VM's search
            trials += 1
            seen[key] = (8 * len(data) / npx, data)
        return seen[key]

    def bisect(qm_arg, k, budget, tag=None):
        lo, hi = 0, BETA_CODE_MAX
        best = None
        n = 0
        while n < budget and hi >= lo:
            code = (lo + hi) // 2
            r, data = trial(code, qm_arg, k, tag)
            n += 1
            ok_side = side != "below" or r <= target_bpp
            if ok_side and (best is None or abs(r - target_bpp) < abs(best[1] - target_bpp)):
                best = (code, r, data)
            if _accept(r, target_bpp, tolerance, side):
                break
            if r < target_bpp:
                lo = code + 1
            else:
                hi = code - 1
        return best, lo > BETA_CODE_MAX, hi < 0

    best, above, below = bisect(qmap, qmap_block_log2, max_trials)
    ext = 0
    if (above or below) and qmap is None and extend and not (best and _accept(best[1], target_bpp, tolerance,
                                                                              side)):
        # beyond the gain unit: a uniform map (one Q per 256 x 256 pixels), |Q| by bisection at the end beta
        _, (hy, wy), _ = grid_sizes(rgb.shape[1], rgb.shape[0])
        shape = grid(hy, wy, EXTEND_BLOCK_LOG2)
        end, sign = (BETA_CODE_MAX, 1) if above else (0, -1)

        def uniform(v):
            return np.full(shape, v * sign, np.int32)

        def passes(v):
            r = trial(end, uniform(v), EXTEND_BLOCK_LOG2, v * sign)[0]
            return r >= target_bpp * (1 - tolerance) if above else r <= target_bpp

        lo_v, hi_v = 1, Q_MAX
        if passes(Q_MAX):
            while lo_v < hi_v:                   # the smallest |Q| that reaches the target
                mid = (lo_v + hi_v) // 2
                if passes(mid):
                    hi_v = mid
                else:
                    lo_v = mid + 1
            best2, _, _ = bisect(uniform(hi_v), EXTEND_BLOCK_LOG2, max_trials, hi_v * sign)
            if best2 is not None and (best is None or abs(best2[1] - target_bpp) < abs(best[1] - target_bpp)):
                best, ext = best2, hi_v * sign
    notes = []
    if best is None or not _accept(best[1], target_bpp, tolerance, side):
        r_end = seen.get((BETA_CODE_MAX if above else 0, None))
        if (above or below) and ext == 0:
            reach = (f"{r_end[0]:.4f} bpp at {'most' if above else 'least'} (beta 0 ... 1)" if r_end else
                     f"{'below' if above else 'above'} the target at every beta")
            q_end = seen.get((BETA_CODE_MAX if above else 0, Q_MAX if above else -Q_MAX))
            if q_end is not None:
                reach += (f", {q_end[0]:.4f} bpp with a uniform quality map Q = {Q_MAX if above else -Q_MAX}")
            if not nearest or best is None:
                raise RateError(f"target {target_bpp} bpp is outside the reachable range for this image: "
                                f"{reach}")
            notes.append(f"target {target_bpp} bpp outside the reachable range ({reach}); using the nearest "
                         "point")
            warnings.warn(notes[-1])
        elif best is None:
            raise RateError(f"no stream at or below the target {target_bpp} bpp for this image")
        else:
            _tolerance_missed(best[1], target_bpp, tolerance, side, npx, notes)
    code, r, data = best
    return MatchResult(data=data, bpp=r, target_bpp=target_bpp, beta=code / BETA_CODE_MAX, beta_code=code,
                       trials=trials, seconds=time.perf_counter() - t0, method="bisect", warnings=notes,
                       extension_q=ext)


def match(rgb, target_bpp, model=None, method="fast", **kw):
    """Encode ``rgb`` at ``target_bpp``; returns a :class:`MatchResult`."""
    from .. import model as model_mod
    from ..encoder import check_options
    if isinstance(target_bpp, bool) or not (isinstance(target_bpp, (int, float)) and target_bpp > 0
                                            and math.isfinite(target_bpp)):
        raise RateError(f"target bpp must be a positive number, got {target_bpp!r}")
    tol = kw.get("tolerance", 0.01)
    if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise RefcodecError(f"tolerance must be a fraction in (0, 1) (0.01 = 1 %), got {tol!r}")
    if kw.get("side", "both") not in ("both", "below"):
        raise RefcodecError(f"side must be 'both' or 'below', got {kw['side']!r}")
    check_options(kw.get("num_y_substreams"), kw.get("qmap"), kw.get("qmap_block_log2"), kw.get("roi_q", (6, -3)),
                  kw.get("refine", 0), kw.get("context"))
    model = model or model_mod.load()
    from ..encoder import check_substreams
    check_substreams(kw.get("num_y_substreams"), model, kw.get("context"))
    if method == "fast":
        return match_fast(rgb, float(target_bpp), model, **kw)
    if method == "bisect":
        if kw.pop("refine", 0):
            raise RefcodecError("latent refinement works with the fast rate matcher only (method 'fast')")
        return match_bisect(rgb, float(target_bpp), model, **kw)
    raise RefcodecError(f"unknown rate-matching method {method!r} (fast or bisect)")
