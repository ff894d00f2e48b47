"""The encoder (not normative): float analysis, then exactly the decoder's
integer hyper-synthesis, so both sides see the same table rows and means.

    rgb -> pad to 64 (edge) -> YCbCr -> g_a -> y -> h_a -> z
    z_hat = round(z)                          coded with the z tables
    mu, s = h_s(clamp(z_hat))                 integer, as the decoder
    q = round((y - mu) * 2^IG_P / inv_gain)   coded with the table rows of s + gain

(``round`` of y: rate-aware by default, see :data:`RDOQ_KNOTS`.)  With the checkerboard context (clause 6.4) the anchors are quantized first;
the decoder's integer g_cm and g_ep then give mu and s of the other positions
from the anchors' y_hat, exactly as the decoder will compute them.
"""

import os

import numpy as np

from kernels import icm, rans

from . import qmap as qm
from .arch import receptive_radius
from .colour import to_ycbcr, ycbcr
from .decoder import (anchor_mask, context_params, dequantize, gain_maps, grid_sizes, pad_to_grid, phase_positions,
                      phase_substream_starts, rate_plane, y_rows, y_substream_starts, z_rows)
from .errors import ImageError, RefcodecError
from .nn import run_float
from .syntax import PictureHeader, write_picture
from .syntax.picture_header import (CONTEXT_FLAG, LEVEL, MONOCHROME_FLAG, POSTFILTER_FLAG, QMAP_BLOCK_LOG2_MAX,
                                    QUALITY_MAP_FLAG)


#: Rate-aware rounding of y (an encoder choice; the decoder never sees it).
#: With v = (y - mu) * gain, each latent takes floor(v) or floor(v) + 1,
#: whichever has the smaller ``(v - q)^2 + C * bits(q)``, bits(q) the exact
#: cost of q under its table row (escapes included; Tables.symbol_bits of
#: kernels.rans): plain rounding when C = 0.  By default C follows beta
#: (:func:`rdoq_weight`) through these (beta, C) knots, linear between them
#: and constant outside.  Tuned on v4 (the default then; session 20):
#: on 8 Kodak images (kodim01, 04, ..., 22), the rate saved at equal
#: PSNR-RGB against rounding to nearest peaks at C = 0.04 at beta 0.3
#: (-6.2 %), 0.03 at beta 0.4-0.6 (-4.5 % ... -2.2 %), 0.02 at 0.7-0.8
#: (-1.1 %, -0.4 %), 0.01 at 0.9-1 (-0.1 %); runs/rdoq_s20.  (The first
#: knots, ((0.6, 0.05), (0.9, 0.015)), came from the step-39,000 model.)
#: Tuned again on v6, trained with this rounding (session 22): the best C
#: falls a little at beta 0.4-0.5, for at most 0.3 %, so the knots stay.
RDOQ_KNOTS = ((0.3, 0.045), (0.5, 0.03), (0.9, 0.01))
RDOQ_MAX = 1.0


def rdoq_weight(beta_code):
    """The default rate weight C of the rounding of y at beta_code."""
    return float(np.interp(beta_code / 65535, [b for b, _ in RDOQ_KNOTS], [c for _, c in RDOQ_KNOTS]))


def check_image(rgb):
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError("expected a uint8 (height, width, 3) RGB array, got "
                         f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}")
    h, w = rgb.shape[:2]
    if not (1 <= w <= LEVEL["max_width"] and 1 <= h <= LEVEL["max_height"] and w * h <= LEVEL["max_samples"]):
        raise ImageError(f"picture size {w} x {h} outside the level limits (SPEC.md clause 9)")


ODD_SUBSTREAMS = ("num_y_substreams {S} is odd: with the checkerboard context (on by default when the model has "
                  "it) the substreams come in pairs, one per phase; give an even number, or code without the "
                  "context (--no-context / context=False)")


def check_substreams(num_y_substreams, model, context):
    """The parity rule of clause 5.2, once the model is known (before any work)."""
    if num_y_substreams and num_y_substreams % 2 and (model.context if context is None else context):
        raise RefcodecError(ODD_SUBSTREAMS.format(S=num_y_substreams))


def check_options(num_y_substreams=None, qmap=None, qmap_block_log2=None, roi_q=(6, -3), refine=0,
                  context=None):
    """Refuse encoder options outside their ranges with one clear RefcodecError
    (before any work is done)."""
    S = num_y_substreams
    if S is not None:
        if isinstance(S, bool) or not isinstance(S, (int, np.integer)) \
                or not 1 <= S <= LEVEL["max_y_substreams"]:
            raise RefcodecError(f"num_y_substreams {S!r} outside 1 ... {LEVEL['max_y_substreams']}")
        if S % 2 and context:
            raise RefcodecError(ODD_SUBSTREAMS.format(S=S))
    k = qmap_block_log2
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer))
                          or not 0 <= k <= QMAP_BLOCK_LOG2_MAX):
        raise RefcodecError(f"qmap_block_log2 {k!r} outside 0 ... {QMAP_BLOCK_LOG2_MAX}")
    try:
        fg, bg = roi_q
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and qm.Q_MIN <= v <= qm.Q_MAX
                 for v in (fg, bg))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise RefcodecError(f"roi_q must be two integers (inside, outside) in [{qm.Q_MIN}, {qm.Q_MAX}], "
                            f"got {roi_q!r}")
    if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0:
        raise RefcodecError(f"refine must be a number of steps >= 0, got {refine!r}")
    if isinstance(qmap, str) and qmap not in ("flat", "activity", "rdo") and not os.path.isfile(qmap):
        raise qm.QualityMapError(f"quality map {qmap!r}: not flat, activity or rdo, and no such file")


def default_substreams(hy, context=False):
    """The encoder's number of y substreams: up to 4 (per checkerboard phase
    with the context tool), one per 8 latent rows at least."""
    n = max(1, min(4, hy // 8))
    return 2 * n if context else n


def y_substreams(model, q, rows, hy, wy, S, context, backend="cpu"):
    """The y substreams (clause 6.4) of q and its table rows (flat, raster
    order, channel fastest): S bands of latent rows, or with the checkerboard
    context S / 2 bands of the anchors, then S / 2 of the other positions."""
    M = model.arch["M"]
    if not context:
        return rans.encode(q, rows, y_substream_starts(hy, wy, M, S), model.y_tables, backend=backend)
    if S % 2:
        raise RefcodecError(ODD_SUBSTREAMS.format(S=S))
    ys = []
    for phase, pos in enumerate(phase_positions(hy, wy)):
        idx = (pos[:, None] * M + np.arange(M)).reshape(-1)
        ys += rans.encode(q[idx], rows[idx], phase_substream_starts(hy, wy, M, S // 2, phase), model.y_tables,
                          backend=backend)
    return ys


#: The float analysis g_a runs on bands of latent rows of at most about
#: ANALYSIS_BAND_PIXELS pixels, each with ANALYSIS_MARGIN more latent rows
#: above and below (g_a's receptive field spans 2 latent rows each way:
#: four 5 x 5 convolutions of stride 2, 61 pixels; a g_a with residual
#: blocks gets the margin its receptive field needs), so the encoder's memory
#: follows the band, not the picture: a 48-megapixel picture encodes in
#: under 3 GB.  Pictures of up to 4 megapixels (Kodak, the vectors, 4K at
#: most two bands) run in one piece.
ANALYSIS_BAND_PIXELS = 4 << 20
ANALYSIS_MARGIN = 4
#: Latents the rounding of y treats at once (its float64 temporaries: ~100 MB).
ROUND_CHUNK = 1 << 20


def analysis_transform(model, rgb, band_pixels=ANALYSIS_BAND_PIXELS, margin=ANALYSIS_MARGIN):
    """y = g_a(YCbCr of the edge-padded picture), float32 (Hy, Wy, M), by bands
    of latent rows.  A band's margin rows are computed and dropped, so each
    kept row sees the picture as the whole-picture transform does."""
    a = model.arch
    margin = max(margin, -(-receptive_radius(a["g_a"]) // 16) + 1)
    h, w = rgb.shape[:2]
    (hp, wp), (hy, wy), _ = grid_sizes(w, h)
    band = max(1, band_pixels // (256 * wy))
    if band >= hy:
        return run_float(a["g_a"], model.enc, "g_a", to_ycbcr(pad_to_grid(rgb)))
    y = np.empty((hy, wy, a["M"]), np.float32)
    cols = np.minimum(np.arange(wp), w - 1)
    for r0 in range(0, hy, band):
        r1 = min(r0 + band, hy)
        a0, a1 = max(0, r0 - margin), min(hy, r1 + margin)
        rows = np.minimum(np.arange(16 * a0, 16 * a1), h - 1)          # edge padding, as pad_to_grid
        tile = rgb[rows[:, None], cols[None, :]]
        y[r0:r1] = run_float(a["g_a"], model.enc, "g_a", to_ycbcr(tile))[r0 - a0:r1 - a0]
    return y


class Analysis:
    """The float analysis of one picture (y, z_hat, and the integer h_s output),
    reusable across rates: only the y quantization depends on beta."""

    def __init__(self, rgb, model, backend="cpu", latents=None, context=None, rdoq=None, monochrome=None,
                 tune="psnr", postfilter=None):
        """``latents=(y, z)`` (float, H x W x C at the latent and hyper-latent
        grids of the padded picture) replaces the analysis transforms, for
        encoders that optimize the latents themselves (refcodec.studies.refine_study).
        ``context``: code with the checkerboard context (clause 6.4); by
        default whenever the model has it.  ``rdoq``: the rate weight C of
        the rounding of y (None: :func:`rdoq_weight` of each rate; 0 rounds
        to nearest).  ``monochrome``: code the picture as gray (tool_flags
        bit 2, clause 6.6: the decoder outputs R = G = B from luma); by
        default when every pixel has R = G = B.  ``tune``: what the rdo
        quality map optimizes, "psnr" (squared error, YUV 6:1:1) or "ms-ssim"
        (TUNES).  ``postfilter``: run the model's post-filter g_pf (clause
        6.5.1, tool_flags bit 3); by default whenever the model has one,
        as :meth:`choose_postfilter` decides."""
        check_image(rgb)
        if tune not in TUNES:
            raise RefcodecError(f"tune {tune!r}: not one of {', '.join(TUNES)}")
        from .imageio import is_gray
        gray = is_gray(rgb)
        if monochrome and not gray:
            raise RefcodecError("monochrome coding needs a gray picture (R = G = B in every pixel)")
        self.monochrome = gray if monochrome is None else bool(monochrome)
        self.rdoq = None if rdoq is None else float(rdoq)
        #: how the quality map is coded (clause 6.7; qmap.MAP_CODINGS): the cheapest by default
        self.qmap_coding = "auto"
        #: what the rdo map optimizes (TUNES)
        self.tune = tune
        if self.rdoq is not None and not 0 <= self.rdoq <= RDOQ_MAX:
            raise RefcodecError(f"rdoq {rdoq!r} outside [0, {RDOQ_MAX}]")
        if context and not model.context:
            raise RefcodecError("this model has no context networks (g_cm, g_ep): it cannot code with the "
                                "checkerboard context")
        self.context = model.context if context is None else bool(context)
        if postfilter and not model.postfilter:
            raise RefcodecError("this model has no post-filter (g_pf): it cannot code with it")
        #: run the model's post-filter (clause 6.5.1, tool_flags bit 3): by default whenever the model has
        #: one, unless :meth:`choose_postfilter` finds it worse where a map leaves the rates it was trained at
        self.postfilter = model.postfilter if postfilter is None else bool(postfilter)
        self._postfilter_auto = postfilter is None and model.postfilter
        self.model = model
        self.height, self.width = rgb.shape[:2]
        _, (self.hy, self.wy), (self.hz, self.wz) = grid_sizes(self.width, self.height)
        a = model.arch
        if latents is None:
            self.y = analysis_transform(model, rgb)
            z = run_float(a["h_a"], model.enc, "h_a", self.y)
        else:
            self.y, z = latents
            if self.y.shape != (self.hy, self.wy, a["M"]) or z.shape != (self.hz, self.wz, a["Z"]):
                raise ValueError(f"latents of shapes {self.y.shape}, {z.shape} do not fit a "
                                 f"{self.width}x{self.height} picture")
        self.z_hat = np.clip(np.round(z), -32768, 32767).astype(np.int32)
        zr = 1 << (model.z_bits - 1)
        params = model.h_s(np.clip(self.z_hat, -zr, zr - 1).astype(np.int16), backend=backend)
        M = a["M"]
        self.mu_q, self.s_q = params[..., :M], params[..., M:]
        self.backend = backend
        self._z_stream = None

    def z_stream(self):
        if self._z_stream is None:
            m = self.model
            nz = self.z_hat.size
            self._z_stream = rans.encode(self.z_hat.reshape(-1), z_rows(self.hz, self.wz, m.arch["Z"]),
                                         np.array([0, nz], np.int64), m.z_tables, backend=self.backend)[0]
        return self._z_stream

    def qmap_grid(self, block_log2):
        return qm.grid(self.hy, self.wy, block_log2)

    def coded(self, beta_code, Q=None, block_log2=0):
        """What the decoder will see at rate beta_code with quality map Q (block
        grid) or none: q (Hy, Wy, M) int32, the table rows (flat, raster
        order), mu (int16, p_mu; refined by the context at the non-anchors)
        and the inverse gain."""
        m = self.model
        p = m.prec
        Q_lat = None if Q is None else qm.expand(Q, block_log2, self.hy, self.wy)
        shift, ig = gain_maps(m, beta_code, Q_lat)
        mu_q, s_q = self.mu_q, self.s_q
        levels = m.arch["sigma_levels"]
        c = rdoq_weight(beta_code) if self.rdoq is None else self.rdoq
        rows = y_rows(s_q, shift, p["p_s"], levels)
        q = self._round(mu_q, ig, rows, c)
        if self.context:
            y_hat_q = dequantize(mu_q, q, ig, p["p_mu"], p["p_y"], m.ig_p)
            mu_q, s_q = context_params(m, y_hat_q, mu_q, s_q, self.backend)
            rows = y_rows(s_q, shift, p["p_s"], levels)
            q = np.where(anchor_mask(self.hy, self.wy)[:, :, None], q, self._round(mu_q, ig, rows, c))
        return q, rows, mu_q, ig

    def _round(self, mu_q, ig, rows, c):
        """q from y, mean mu_q and inverse gain ig; ``rows`` (flat) the table
        rows the symbols will be coded with, c the rate weight (rate-aware
        rounding, RDOQ_KNOTS; 0: to nearest).  Elementwise, computed by
        chunks of ROUND_CHUNK latents (its float64 temporaries would
        otherwise dominate the encoder's memory on large pictures)."""
        m = self.model
        shape = self.y.shape
        rows = rows.reshape(shape)
        ig = np.broadcast_to(ig, shape)
        q = np.empty(shape, np.int32)
        step = max(1, ROUND_CHUNK // (shape[1] * shape[2]))
        for r0 in range(0, shape[0], step):
            sl = slice(r0, r0 + step)
            mu = mu_q[sl].astype(np.float64) / (1 << m.prec["p_mu"])
            v = (self.y[sl] - mu) * ((1 << m.ig_p) / ig[sl].astype(np.float64))
            if c == 0:
                qc = np.round(v)
            else:
                q0 = np.clip(np.floor(v), -32768, 32766)
                cost0 = (v - q0) ** 2 + c * m.y_tables.symbol_bits(q0, rows[sl])
                cost1 = (q0 + 1 - v) ** 2 + c * m.y_tables.symbol_bits(q0 + 1, rows[sl])
                qc = np.where(cost1 < cost0, q0 + 1, q0)
            q[sl] = np.clip(qc, -32768, 32767)
        return q

    def quantize(self, beta_code, Q=None, block_log2=0):
        """(q, table rows) of y at rate beta_code, with quality map Q (block grid) or none;
        flat, raster order, channel fastest."""
        q, rows, _, _ = self.coded(beta_code, Q, block_log2)
        return q.reshape(-1), rows

    def reconstruct(self, beta_code, Q=None, block_log2=0, coded=None):
        """The decoder's picture for this analysis at beta_code (no stream):
        dequantization, integer g_s and colour transform, as clause 6.
        ``coded``: what :meth:`coded` returned for the same arguments, if the
        caller has it already."""
        from .decoder import synthesize
        m = self.model
        p = m.prec
        q, _, mu_q, ig = coded or self.coded(beta_code, Q, block_log2)
        y_hat_q = dequantize(mu_q, q, ig, p["p_mu"], p["p_y"], m.ig_p)
        rate = None
        if self.postfilter:
            rate = rate_plane(m, beta_code, None if Q is None else qm.expand(Q, block_log2, self.hy, self.wy),
                              self.hy, self.wy)
        return synthesize(m, y_hat_q, self.height, self.width, self.backend, monochrome=self.monochrome,
                          rate=rate)

    def postfilter_in_range(self, beta_code, Q=None, block_log2=0):
        """Whether the post-filter's rate plane (clause 6.5.1) stays, at every
        latent position, within the rates the filter was trained at: the
        planes of beta 0 and beta 1 without a quality map.  A map's Q moves the
        plane by Q / 4 octaves of gain and can take it beyond them (the rate
        matcher's uniform map past beta 1, a region of interest's Q = 6)."""
        if Q is None:
            return True
        m = self.model
        ends = [int(rate_plane(m, c, None, 1, 1)[0, 0]) for c in (0, BETA_CODE_MAX)]
        r = rate_plane(m, beta_code, qm.expand(Q, block_log2, self.hy, self.wy), self.hy, self.wy)
        return bool(min(ends) <= r.min() and r.max() <= max(ends))

    def choose_postfilter(self, rgb, beta_code, Q=None, block_log2=0):
        """The encoder's choice of tool_flags bit 3 (clause 6.5.1 leaves it to
        the encoder; the rate does not depend on it): True when the model's
        post-filter is to run on this coding.

        With ``postfilter`` given to the analysis, that choice.  By default the
        filter runs, unless the rate plane leaves the rates it was trained at
        (:meth:`postfilter_in_range`); there the filter extrapolates and can
        lower the quality it is meant to raise (kodim20 at beta 1 with a
        uniform Q = 4: -0.60 dB PSNR-RGB against no filter, the v12 model), so
        the picture is synthesized with and without it and the filter stays
        only if it lowers the picture's distortion (:func:`picture_distortion`:
        the RGB squared error, MS-SSIM-weighted with ``tune`` "ms-ssim").  Sets
        ``self.postfilter`` to the choice; costs one run of g_s and g_pf, and
        nothing when the plane stays in range."""
        if not self._postfilter_auto:
            return self.postfilter
        self.postfilter = True
        if self.postfilter_in_range(beta_code, Q, block_log2):
            return True
        from .decoder import synthesize
        m = self.model
        p = m.prec
        q, _, mu_q, ig = self.coded(beta_code, Q, block_log2)
        y_hat_q = dequantize(mu_q, q, ig, p["p_mu"], p["p_y"], m.ig_p)
        rate = rate_plane(m, beta_code, qm.expand(Q, block_log2, self.hy, self.wy), self.hy, self.wy)
        filtered, unfiltered = synthesize(m, y_hat_q, self.height, self.width, self.backend,
                                          monochrome=self.monochrome, rate=rate, unfiltered=True)
        self.postfilter = bool(picture_distortion(rgb, filtered, self.tune)
                               <= picture_distortion(rgb, unfiltered, self.tune))
        return self.postfilter

    def default_substreams(self):
        return default_substreams(self.hy, self.context)

    def qmap_stream(self, Q, block_log2):
        """(q_data, header fields) for a quality map on the block grid: the
        cheapest of its codings (clause 6.7: step, contexts, direct)."""
        Q = qm.check_map(Q, *self.qmap_grid(block_log2))
        syn = qm.map_syntax(Q, self.model.y_tables, self.qmap_coding)
        fields = dict(qmap_block_log2=block_log2, qmap_step_log2=syn.step_log2)
        if syn.direct is not None:
            fields.update(qmap_direct=True, qmap_v_min=syn.direct[0], qmap_freqs=syn.direct[1])
        else:
            fields.update(qmap_context=syn.context, qmap_sigma_row=syn.ctx_rows[0])
            if syn.context:
                fields.update(qmap_sigma_row1=syn.ctx_rows[1], qmap_sigma_row2=syn.ctx_rows[2])
        return qm.encode_map(Q, syn, self.model.y_tables, backend=self.backend), fields

    def stream(self, beta_code, num_y_substreams=None, Q=None, block_log2=0):
        m = self.model
        q, rows = self.quantize(beta_code, Q, block_log2)
        S = num_y_substreams or self.default_substreams()
        ys = y_substreams(m, q, rows, self.hy, self.wy, S, self.context, self.backend)
        q_data, qfields = (None, {}) if Q is None else self.qmap_stream(Q, block_log2)
        flags = ((0 if Q is None else QUALITY_MAP_FLAG) | (CONTEXT_FLAG if self.context else 0)
                 | (MONOCHROME_FLAG if self.monochrome else 0) | (POSTFILTER_FLAG if self.postfilter else 0))
        header = PictureHeader(model_id=m.model_id, width=self.width, height=self.height, beta_code=beta_code,
                               num_y_substreams=S, tool_flags=flags, **qfields)
        return write_picture(header, self.z_stream(), ys, q_data)


#: The largest beta_code (beta 1; clause 6.4).
BETA_CODE_MAX = 65535


def picture_distortion(rgb, out, tune="psnr"):
    """The distortion of the encoder's whole-picture choices (the post-filter's
    flag): the RGB squared error summed over the picture, as the model was
    trained to minimize, weighted by :func:`ssim_weights` with ``tune``
    "ms-ssim".  (The rdo map weighs YCbCr 6:1:1 instead, for PSNR-Y; on
    kodim20 at beta 1 with a uniform Q = 3 the filter wins on PSNR-Y, 37.50
    against 37.31 dB, and loses on PSNR-RGB, 36.14 against 36.35 dB: it
    overshoots in Cr, 43.91 against 46.60 dB.)"""
    e = (np.asarray(out, np.float64) - np.asarray(rgb, np.float64)) ** 2
    return float(np.sum(e if tune == "psnr" else e * ssim_weights(rgb)))


def beta_to_code(beta):
    b = float(beta)
    if not 0.0 <= b <= 1.0:
        raise RefcodecError(f"beta must lie in [0, 1], got {beta}")
    return int(round(b * BETA_CODE_MAX))


#: Q values the rdo strategy measures (a step of 2^(1/4) either way).  On
#: Kodak 01, 04, ..., 22 (rates matched at 0.12 ... 0.75 bpp, BD-rate on
#: PSNR-Y against flat; refcodec.studies.qmap_study rdo@LO:HI:REFINE):
#: -1 ... 1 with no refining pass -1.45 % at 2.3x flat's encode time; with
#: 1 / 2 passes -1.56 / -1.60 % at 3.5 / 4.6x; -2 ... 2 and 1 pass -1.48 %;
#: -4 ... 4 and 2 passes (before session 14) -1.37 % at 8x.  The wider
#: candidates' block-by-block estimates are the ones the neighbours' own
#: choices upset most.
RDO_CANDIDATES = (-1, 0, 1)

#: Refining passes of the rdo strategy (each measures three more maps).
RDO_REFINE = 0

#: (candidates, refining passes) of the rdo map per tune.  MS-SSIM's weights
#: vary far more across a picture than squared error's slope does, and its
#: map wants the wide range: on all 24 Kodak pictures -4 ... 4 with 2 passes
#: gave -7.97 % BD-rate on MS-SSIM against flat (7.7x flat's encode time),
#: -1 ... 1 with none -5.64 % (2.8x).
RDO_SETTINGS = {"psnr": (RDO_CANDIDATES, RDO_REFINE), "ms-ssim": (tuple(range(-4, 5)), 2)}


#: With an automatic block size, the rdo strategy chooses among the blocks
#: whose map fits in this share of the picture's bits (2 %: about 1 % on
#: average over Kodak).
RDO_MAP_BUDGET = 0.02


#: Weights of the Y, Cb and Cr squared errors in the rdo distortion (JPEG AI's
#: PSNR-YUV weighting, 6:1:1).
RDO_YUV_WEIGHTS = (6.0, 1.0, 1.0)


def _rdo_measure(an, rgb, beta_code, candidates, meas=None, measured=None):
    """Per latent position and candidate: exact y bits R and the distortion D
    (_PositionCost) of the picture quantized with that uniform Q; and lambda,
    the picture's RD slope between the measured candidates around 0.

    ``measured``: the candidates actually coded and reconstructed (None: all;
    else a sorted subset holding 0 and both ends); the others are
    interpolated per position between their measured neighbours, R linearly
    and D geometrically (D falls by a constant factor per step of Q at high
    rate: 2^(-1/2) for the step's 2^(-1/4))."""
    meas = meas or _PositionCost(an, rgb, beta_code, an.tune)
    candidates = list(candidates)
    measured = candidates if measured is None else list(measured)
    if (measured != sorted(measured) or 0 not in measured or not set(measured) <= set(candidates)
            or measured[0] != candidates[0] or measured[-1] != candidates[-1]):
        raise ValueError(f"measured candidates {measured} must be a sorted subset of {candidates} "
                         "holding 0 and both ends")
    got = {v: meas(np.full((an.hy, an.wy), v, np.int32)) for v in measured}
    R, D = [], []
    for v in candidates:
        if v in got:
            R.append(got[v][0])
            D.append(got[v][1])
            continue
        a = max(u for u in measured if u < v)
        b = min(u for u in measured if u > v)
        f = (v - a) / (b - a)
        (ra, da), (rb, db) = got[a], got[b]
        R.append((1 - f) * ra + f * rb)
        pos = (da > 0) & (db > 0)
        D.append(np.where(pos, np.exp((1 - f) * np.log(np.where(pos, da, 1.0)) + f * np.log(np.where(pos, db, 1.0))),
                          (1 - f) * da + f * db))
    R, D = np.array(R), np.array(D)
    i0 = measured.index(0)
    lo, hi = measured[max(i0 - 1, 0)], measured[min(i0 + 1, len(measured) - 1)]
    dR = got[hi][0].sum() - got[lo][0].sum()
    lam = max(-(got[hi][1].sum() - got[lo][1].sum()) / dR, 0.0) if dR > 0 else 0.0
    return R, D, lam


#: What the encoder's choices optimize (``tune``): squared error (PSNR-YUV
#: 6:1:1, RDO_YUV_WEIGHTS) or MS-SSIM (the squared error weighted by
#: :func:`ssim_weights`).
TUNES = ("psnr", "ms-ssim")

#: The windows (Gaussian sigmas, pixels) over which ssim_weights takes the
#: local variance: MS-SSIM's sigma-1.5 window at its scales 2, 3 and 4 (where
#: most of its weight is).  On kodim01, 05 and 14 (rates matched at 0.12 ...
#: 0.75 bpp, BD-rate on MS-SSIM against flat): (3, 6, 12) -4.55 %,
#: (3, 6, 12, 24) -4.49 %, (6, 12, 24) -3.82 %, (2, 4, 8) -3.68 %,
#: (1.5, 3, 6) -2.20 %.
SSIM_SIGMAS = (3.0, 6.0, 12.0)
#: SSIM's stabilizing constant C2 = (0.03 * 255)^2.
SSIM_C2 = (0.03 * 255.0) ** 2


def ssim_weights(rgb, sigmas=SSIM_SIGMAS):
    """Per pixel and RGB channel, the weight of a squared error in an SSIM
    sense: for a small error e, 1 - SSIM ~ e^2 / (2 var + C2) with var the
    local variance of the original, so an error costs less where the picture
    is busy.  The mean of 1 / (2 var + C2) over the windows ``sigmas``, times
    C2 (so a flat area weighs 1)."""
    from scipy.ndimage import gaussian_filter
    x = np.asarray(rgb, np.float64)
    w = np.zeros_like(x)
    for s in sigmas:
        mu = gaussian_filter(x, (s, s, 0), truncate=3.5)
        var = np.maximum(gaussian_filter(x * x, (s, s, 0), truncate=3.5) - mu * mu, 0.0)
        w += SSIM_C2 / (2 * var + SSIM_C2)
    return w / len(sigmas)


class _PositionCost:
    """(R, D) per latent position of the picture coded with a per-position
    map Q (hy, wy): exact y bits and the distortion of each position's
    16 x 16 pixels: the weighted YCbCr squared error (``tune`` "psnr"), or
    the RGB squared error weighted by ssim_weights ("ms-ssim")."""

    def __init__(self, an, rgb, beta_code, tune="psnr"):
        self.an, self.beta_code = an, beta_code
        H, W = an.hy * 16, an.wy * 16
        self.pad = ((0, H - rgb.shape[0]), (0, W - rgb.shape[1]), (0, 0))
        valid = np.pad(np.ones(rgb.shape[:2]), self.pad[:2])[..., None]
        if tune == "psnr":
            self.colour = ycbcr
            self.ref = np.pad(ycbcr(rgb), self.pad)
            self.wts = np.array(RDO_YUV_WEIGHTS) * valid
        else:
            self.colour = lambda a: np.asarray(a, np.float64)
            self.ref = np.pad(np.asarray(rgb, np.float64), self.pad)
            self.wts = np.pad(ssim_weights(rgb), self.pad)

    def __call__(self, Q):
        an = self.an
        coded = an.coded(self.beta_code, Q, 0)
        q, rows = coded[0].reshape(-1), coded[1]
        R = self.an.model.y_tables.symbol_bits(q, rows).reshape(an.hy, an.wy, -1).sum(axis=2)
        out = np.pad(self.colour(an.reconstruct(self.beta_code, Q, 0, coded)), self.pad)
        D = (((out - self.ref) ** 2) * self.wts).reshape(an.hy, 16, an.wy, 16, 3).sum(axis=(1, 3, 4))
        return R, D


def _blocks(X, block_log2):
    """Sum (C, hy, wy) per-position values over the blocks of 2^k x 2^k positions."""
    b = 1 << block_log2
    c, hy, wy = X.shape
    hq, wq = -(-hy // b), -(-wy // b)
    X = np.pad(X, ((0, 0), (0, hq * b - hy), (0, wq * b - wy)))
    return X.reshape(c, hq, b, wq, b).sum(axis=(2, 4))


def rdo_map(an, rgb, block_log2=0, beta_code=32768, candidates=None, sweeps=3, budget=RDO_MAP_BUDGET,
            refine=None, info=None, measured=None, allow_flat=True):
    """Q per block minimizing D + lambda (R + R_map) at ``beta_code``;
    returns ``(Q, block_log2)``, Q None when no map is the cheaper choice.

    For every candidate value, the whole picture is quantized and
    reconstructed with that uniform Q; each block's rate (exact table bits of
    its latent positions) and distortion (squared error of its pixels) are
    recorded.  lambda is the picture's own RD slope between the candidates
    around 0.  The map's own bits (its dQ under the table row that codes it,
    as the stream does) enter the cost too: starting from each block's best
    candidate, ``sweeps`` raster passes re-choose every block given its
    neighbours (iterated conditional modes).  ``block_log2=None`` chooses the
    block size (16, 32, ... 256 pixels) by the same cost, the map's exact
    bits included, among the sizes whose map costs at most ``budget`` of the
    picture's bits (the coarsest when none does).  Then ``refine`` more passes: each
    measures the picture coded with the map itself and with the map shifted
    by -1 and +1 (so a block's cost now includes its neighbours' choices)
    and re-chooses each block among Q - 1, Q, Q + 1 the same way.  Bit-rate
    matching sets the total rate afterwards.  ``candidates`` and ``refine``
    default to RDO_SETTINGS of the analysis's tune.  ``measured``: the
    candidates measured before the refining passes (see _rdo_measure; None:
    all).
    Last, the map's estimated cost (its y bits and distortion as measured on
    the way, plus its own bits) is set against the picture coded without a
    map (candidate 0, measured): with ``allow_flat``, a map that does not pay
    for its own bits gives way to none.
    """
    candidates = RDO_SETTINGS[an.tune][0] if candidates is None else candidates
    refine = RDO_SETTINGS[an.tune][1] if refine is None else refine
    meas = _PositionCost(an, rgb, beta_code, an.tune)
    R0, D0, lam = _rdo_measure(an, rgb, beta_code, candidates, meas, measured)
    cand = np.array(candidates, np.int32)
    fixed_bits = 8 * (len(an.z_stream()) + 64)
    best = None
    for k in ([block_log2] if block_log2 is not None else range(QMAP_BLOCK_LOG2_MAX + 1)):
        R, D = _blocks(R0, k), _blocks(D0, k)
        J = D + lam * R
        Q = cand[np.argmin(J, axis=0)]
        priced = None
        if lam > 0 and Q.size > 1 and sweeps > 0:
            bits = lam * _dq_bits(Q, an.model.y_tables)
            Q = _smooth_map(Q, J, cand, bits, sweeps)
            # the map priced under the direct coding instead (clause 6.7, third edition): the cheaper of the two
            Qd = _direct_map(J, cand, lam, sweeps)
            priced = min((_map_cost(M, R, D, cand, lam, an.model.y_tables), i, M) for i, M in enumerate((Q, Qd)))
            Q = priced[2]
        if block_log2 is not None:
            break
        # the block size by RD: the whole cost with the map's exact bits, among the sizes within the budget
        cost, y_bits, map_bits = priced[0] if priced else _map_cost(Q, R, D, cand, lam, an.model.y_tables)
        fits = map_bits <= budget * (y_bits + map_bits + fixed_bits)
        if fits and (best is None or cost < best[0]):
            best = (cost, Q, k)
    if block_log2 is None and best is not None:
        _, Q, k = best          # else none fits: the coarsest (the loop's last)
    idx = np.searchsorted(cand, Q)[None]
    y_est = float(np.take_along_axis(_blocks(R0, k), idx, axis=0).sum())
    d_est = float(np.take_along_axis(_blocks(D0, k), idx, axis=0).sum())
    for _ in range(int(refine) if lam > 0 else 0):
        Q, y_est, d_est = _refine(an, meas, Q, k, lam, sweeps)
    map_bits = qm.map_syntax(Q, an.model.y_tables).bits
    i0 = list(candidates).index(0)
    y_flat, d_flat = float(R0[i0].sum()), float(D0[i0].sum())
    if allow_flat and lam > 0 and d_est + lam * (y_est + map_bits) >= d_flat + lam * y_flat:
        # the map does not pay for its own bits: code the picture without one
        Q, y_est, map_bits = None, y_flat, 0.0
    if info is not None:
        # for the rate matcher: the y bits with the map (as measured on the way) and without
        info.update(y_bits=y_est, y_bits_flat=y_flat, map_bits=map_bits)
    return (None if Q is None else Q.astype(np.int32)), k


def _map_cost(Q, R, D, cand, lam, y_tables):
    """(D + lambda (R + map bits), R, map bits) of the map Q over the
    candidates' per-block rates R and distortions D, the map's bits exact
    under its cheapest coding (qmap.map_syntax)."""
    map_bits = qm.map_syntax(Q, y_tables).bits
    idx = np.searchsorted(cand, Q)[None]
    y_bits = float(np.take_along_axis(R, idx, axis=0).sum())
    return float(np.take_along_axis(D, idx, axis=0).sum()) + lam * (y_bits + map_bits), y_bits, map_bits


def _direct_map(J, cand, lam, iters):
    """The map minimizing J[c, i, j] + lambda * bits of its direct coding
    (clause 6.7): every block takes its cheapest candidate under a table of
    the candidates' frequencies, the table is refitted to the new map, and
    so on ``iters`` times (each value's bits -log2 of its share, every
    candidate counted at least once, as the coding's frequencies are >= 1)."""
    Q = cand[np.argmin(J, axis=0)]
    for _ in range(iters):
        counts = np.array([np.count_nonzero(Q == c) for c in cand], np.float64) + 1
        bits = -np.log2(counts / counts.sum())
        Qn = cand[np.argmin(J + lam * bits[:, None, None], axis=0)]
        if np.array_equal(Qn, Q):
            break
        Q = Qn
    return Q


def _refine(an, meas, Q, k, lam, sweeps, offsets=(-1, 0, 1)):
    """Re-choose every block among Q + offsets, measured (``meas``, a
    _PositionCost) with the whole map shifted by each offset (see rdo_map)."""
    Q_lat = qm.expand(Q, k, an.hy, an.wy)
    R, D = [], []
    for d in offsets:
        r, dd = meas(np.clip(Q_lat + d, qm.Q_MIN, qm.Q_MAX))
        R.append(r)
        D.append(dd)
    J = _blocks(np.array(D), k) + lam * _blocks(np.array(R), k)
    V = np.clip(Q[None].astype(np.int64) + np.array(offsets)[:, None, None], qm.Q_MIN, qm.Q_MAX)
    Qn = np.take_along_axis(V, np.argmin(J, axis=0)[None], axis=0)[0]
    if Qn.size > 1 and sweeps > 0:
        Qn = _smooth_map(Qn, J, V, lam * _dq_bits(Qn, an.model.y_tables), sweeps)
    # the y bits and distortion of the new map, each block as measured with its offset applied to the whole map
    pick = np.clip(Qn.astype(np.int64)[None] - Q[None].astype(np.int64), min(offsets), max(offsets)) - min(offsets)
    return (Qn.astype(np.int32), float(np.take_along_axis(_blocks(np.array(R), k), pick, axis=0).sum()),
            float(np.take_along_axis(_blocks(np.array(D), k), pick, axis=0).sum()))


def _dq_bits(Q, y_tables, span=2 * (qm.Q_MAX - qm.Q_MIN)):
    """bits[c, d + span] of a map difference d in context c (clause 6.7)
    under the table rows that code this map best: three rows when the
    contexts pay, else one row for all three (escapes included)."""
    (row, one_bits), (rows, ctx_bits) = qm.fit_rows(qm.differences(Q).reshape(np.shape(Q)), y_tables)
    rows = rows if ctx_bits < one_bits else (row,) * 3
    v = np.arange(-span, span + 1)
    tables = rans.as_tables(y_tables)
    return np.stack([tables.symbol_bits(v, np.full(v.size, r)) for r in rows])


def _smooth_map(Q, J, cand, cost, sweeps):
    """Iterated conditional modes on J[c, i, j] + the map bits the block's
    choice touches: the differences it changes (its own, its right and its
    lower neighbour's) and the contexts they set (clause 6.7: a difference's
    context is whether its left and upper differences are zero).  Candidate
    c is the value cand[c], or cand[c, i, j] per block; cost[ctx, d + span]
    the bits of a difference.  (kernels.icm: numba, with its plain twin.)"""
    return icm.smooth_map(Q, J, cand, cost, sweeps).astype(np.int32)


def resolve_qmap(an, rgb, qmap, block_log2=None, roi_q=(6, -3), beta_code=32768):
    """(Q, block_log2) for a strategy: the rdo strategy picks its block size
    when ``block_log2`` is None; the others then use 0 (16 x 16 pixels)."""
    if isinstance(qmap, str) and qmap == "rdo":
        return rdo_map(an, rgb, block_log2, beta_code)
    k = 0 if block_log2 is None else block_log2
    return quality_map(an, rgb, qmap, k, roi_q, beta_code), k


def quality_map(an, rgb, qmap, block_log2=0, roi_q=(6, -3), beta_code=32768):
    """The Q map (block grid) a strategy asks for: None (flat), "flat", "activity",
    an array of Q values, or a path to a .npy map or a PNG mask (white = region of interest)."""
    if qmap is None or (isinstance(qmap, str) and qmap == "flat"):
        return None
    hq, wq = an.qmap_grid(block_log2)
    if isinstance(qmap, str) and qmap == "activity":
        return qm.activity_map(rgb, an.hy, an.wy, block_log2)
    if isinstance(qmap, str) and qmap == "rdo":
        return rdo_map(an, rgb, block_log2, beta_code)[0]
    if isinstance(qmap, str):
        if qmap.lower().endswith(".npy"):
            try:
                arr = np.load(qmap, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise qm.QualityMapError(f"cannot read quality map {qmap}: {e}") from None
            return qm.check_map(arr, hq, wq)
        try:
            from PIL import Image
            with Image.open(qmap) as im:
                mask = np.asarray(im.convert("L"))
        except OSError as e:
            raise qm.QualityMapError(f"cannot read quality map {qmap}: {e}") from None
        if mask.shape != rgb.shape[:2]:
            raise qm.QualityMapError(f"mask {qmap} is {mask.shape[1]} x {mask.shape[0]}, the picture "
                                     f"{rgb.shape[1]} x {rgb.shape[0]}")
        return qm.mask_map(mask, an.hy, an.wy, block_log2, *roi_q)
    return qm.check_map(qmap, hq, wq)


def encode(rgb, beta=0.5, model=None, num_y_substreams=None, backend="cpu", qmap=None, qmap_block_log2=None,
           roi_q=(6, -3), refine=0, context=None, rdoq=None, monochrome=None, tune="psnr", postfilter=None):
    """Encode a uint8 (H, W, 3) RGB array at rate parameter beta in [0, 1].

    ``refine=N`` optimizes the latents for this picture with N gradient
    steps first (refcodec.refine; needs PyTorch): same syntax, fewer bits.
    ``context=False`` codes without the checkerboard context (on by default
    when the model has it).  ``rdoq``: the rate weight of the rounding of y
    (None: :func:`rdoq_weight` of beta; 0: round to nearest).  ``monochrome``:
    see :class:`Analysis` (by default when R = G = B everywhere).  ``tune``:
    the metric the rdo map optimizes, "psnr" or "ms-ssim".  ``postfilter=False``
    codes without the model's post-filter (by default it runs when the model
    has one, as :meth:`Analysis.choose_postfilter` decides)."""
    from . import model as model_mod
    check_options(num_y_substreams, qmap, qmap_block_log2, roi_q, refine, context)
    if not (isinstance(beta, (int, float, np.floating)) and 0 <= beta <= 1):
        raise RefcodecError(f"beta must be a number in [0, 1], got {beta!r}")
    model = model or model_mod.load()
    check_substreams(num_y_substreams, model, context)
    if refine:
        from .refine import refine_latents
        check_image(rgb)
        an = Analysis(rgb, model, backend, latents=refine_latents(rgb, model, beta, refine), context=context,
                      rdoq=rdoq, monochrome=monochrome, tune=tune, postfilter=postfilter)
    else:
        an = Analysis(rgb, model, backend, context=context, rdoq=rdoq, monochrome=monochrome, tune=tune,
                      postfilter=postfilter)
    code = beta_to_code(beta)
    Q, k = resolve_qmap(an, rgb, qmap, qmap_block_log2, roi_q, code)
    an.choose_postfilter(rgb, code, Q, k)
    return an.stream(code, num_y_substreams, Q, k)
