"""Clause 6: the decoding process, from the stream to 8-bit RGB.

Integer arithmetic only, on every backend: the kernels (rANS, integer
convolutions) run on the chosen backend; the elementwise steps between them
are integer numpy, which is exact everywhere.

    picture()                                   clause 5
    Q       = decode_qmap(...)                  clause 6.7 (when enabled)
    z_hat   = decode_z(...)                     clause 6.2
    mu, s   = h_s(clamp(z_hat))                 clause 6.3
    q       = decode_y(...)                     clause 6.4 (with the checkerboard
                                                context: the anchors, then
                                                mu, s = context_params(...),
                                                then the other positions)
    y_hat   = dequantize(mu, q, inv_gain)       clause 6.4
    x       = g_s(y_hat)                        clause 6.5
    x       = x + g_pf(concat(x, r))            clause 6.5.1 (when enabled)
    rgb     = colour_transform(x)               clause 6.6
"""

import numpy as np

from kernels import rans

from . import gain, qmap
from .colour import COLOUR_MATRIX, LUMA_OFFSET, colour_transform  # noqa: F401 (clause 6.6, re-exported)
from .errors import BitstreamError
from .syntax import picture

def grid_sizes(width, height):
    """Padded picture, y and z grid sizes (clause 6.2): multiples of 64."""
    hp, wp = -(-height // 64) * 64, -(-width // 64) * 64
    return (hp, wp), (hp // 16, wp // 16), (hp // 64, wp // 64)


def pad_to_grid(rgb):
    """The picture the analysis transforms see: edge-padded to Hp x Wp (clause
    6.2; the encoder pads, the decoder crops)."""
    h, w = rgb.shape[:2]
    (hp, wp), _, _ = grid_sizes(w, h)
    return np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")


def y_substream_starts(hy, wy, m, s):
    """Clause 6.4: substream i holds latent rows [floor(i*Hy/S), floor((i+1)*Hy/S))."""
    rows = np.array([(i * hy) // s for i in range(s + 1)], np.int64)
    return rows * (wy * m)


def anchor_mask(hy, wy):
    """Clause 6.4: the checkerboard's anchors, the latent positions with
    (row + column) even; (Hy, Wy) bool."""
    return (np.arange(hy)[:, None] + np.arange(wy)[None, :]) % 2 == 0


def phase_positions(hy, wy):
    """Clause 6.4: the flat raster indices of the anchors (phase 0) and of the
    other positions (phase 1), each in raster order."""
    a = anchor_mask(hy, wy).reshape(-1)
    return np.flatnonzero(a), np.flatnonzero(~a)


def phase_substream_starts(hy, wy, m, s, phase):
    """Clause 6.4, checkerboard context: substream i of a phase holds that
    phase's positions in latent rows [floor(i*Hy/S), floor((i+1)*Hy/S)),
    raster order, channel fastest.  Row r has ceil(Wy/2) anchors when r is
    even, floor(Wy/2) when r is odd."""
    r = np.arange(hy)
    per_row = (wy + 1 - r % 2) // 2 if phase == 0 else (wy + r % 2) // 2
    cum = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int64)
    return cum[[(i * hy) // s for i in range(s + 1)]] * m


def context_params(model, y_hat_q, mu_q, s_q, backend="cpu"):
    """Clause 6.4: (mu, s) at every position with the checkerboard context.

    The anchors keep the hyperprior's; elsewhere
    ``c = g_cm(y_hat at the anchors, 0 elsewhere)``,
    ``(dmu, ds) = g_ep(concat(mu, s, c))`` and mu + dmu, s + ds, clamped to
    int16.  Inputs and outputs int16 (H, W, C); only the anchors of
    ``y_hat_q`` are read."""
    hy, wy, M = mu_q.shape
    anchors = anchor_mask(hy, wy)[:, :, None]
    c = model.g_cm(np.where(anchors, y_hat_q, 0).astype(np.int16), backend=backend)
    d = model.g_ep(np.ascontiguousarray(np.concatenate([mu_q, s_q, c], axis=-1)), backend=backend).astype(np.int32)
    mu2 = np.clip(mu_q + d[..., :M], -32768, 32767).astype(np.int16)
    s2 = np.clip(s_q + d[..., M:], -32768, 32767).astype(np.int16)
    return np.where(anchors, mu_q, mu2), np.where(anchors, s_q, s2)


def rate_plane(model, beta_code, Q_lat, hy, wy):
    """Clause 6.5.1: the post-filter's rate input per latent position, int16
    (Hy, Wy): the mean log2 gain of the M channels (2^-16 units, floor
    division), plus Q * 2^14 where a quality map is coded, divided by
    PF_RATE_DIV = 8 and brought to p_x fractional bits:
    r = (lg_mean * 2^p_x + 2^18) >> 19, clamped to int16."""
    lg = gain.log2_gain_fp(model.gain_log2_fp, beta_code)
    plane = np.full((hy, wy), int(lg.sum()) // lg.size, np.int64)
    if Q_lat is not None:
        plane += Q_lat.astype(np.int64) << 14
    r = ((plane << model.prec["p_x"]) + (1 << 18)) >> 19
    return np.clip(r, -32768, 32767).astype(np.int16)


def postfilter(model, x_q, r_lat, backend="cpu"):
    """Clause 6.5.1: x + g_pf(concat(x, r)), clamped to int16; x_q (H, W, 3)
    int16 at p_x, r_lat the rate plane of the same rows at the latent grid
    (each value covers 16 x 16 pixels)."""
    r = np.repeat(np.repeat(r_lat, 16, axis=0), 16, axis=1)[:x_q.shape[0], :x_q.shape[1], None]
    d = model.g_pf(np.ascontiguousarray(np.concatenate([x_q, r], axis=-1)), backend=backend)
    return np.clip(x_q.astype(np.int32) + d, -32768, 32767).astype(np.int16)


def z_rows(hz, wz, z):
    return np.tile(np.arange(z, dtype=np.int32), hz * wz)


def gain_maps(model, beta_code, Q_lat=None):
    """Clause 6.4: the sigma-index shift and the inverse gain at every latent
    position and channel, as arrays broadcastable to (Hy, Wy, M).  ``Q_lat``
    is the quality map per latent position (clause 6.7), or None."""
    lg = gain.log2_gain_fp(model.gain_log2_fp, beta_code)[None, None, :]
    if Q_lat is not None:
        lg = lg + (Q_lat.astype(np.int64)[:, :, None] << 14)        # Q / 4 octaves
    return gain.sigma_shift(lg, model.prec["p_s"]), gain.inverse_gain(lg, model.exp2)


def y_rows(s_q, shift, p_s, levels):
    """Table row of every y symbol (clause 6.4), raster order, channel fastest."""
    r = (s_q.astype(np.int64) + shift + (1 << (p_s - 1))) >> p_s
    return np.clip(r, 0, levels - 1).astype(np.int32).reshape(-1)


def dequantize(mu_q, q, inv_gain, p_mu, p_y, ig_p):
    """y_hat at p_y fractional bits, int16:
    (mu * 2^(ig_p + p_y - p_mu) + q * inv_gain * 2^p_y + 2^(ig_p - 1)) >> ig_p, clamped."""
    acc = (mu_q.astype(np.int64) << (ig_p + p_y - p_mu)) + (q.astype(np.int64) * inv_gain << p_y)
    return np.clip((acc + (1 << (ig_p - 1))) >> ig_p, -32768, 32767).astype(np.int16)


def find_model(model_id, models):
    for m in models:
        if m.model_id == model_id:
            return m
    raise BitstreamError(f"model_id {model_id.hex()} names no loaded model (have "
                         f"{', '.join(m.model_id.hex() for m in models) or 'none'})", field="model_id",
                         clause="5.2")


def decode_latents(pic, model, backend, trace=None):
    """Clauses 6.2-6.4 up to the dequantized latent: returns (y_hat_q, mu_q, q, rows,
    r) (mu_q and rows as coded: refined by the context at the non-anchors; r
    the post-filter's rate plane of clause 6.5.1, None when the stream does not
    enable the post-filter).

    ``trace``: a dict that receives the intermediates as they are computed
    (z_hat, the hyperprior's mu_hs and s_hs, Q, rows_phaseN and q_phaseN of
    each phase, mu_context and s_context, then the coded mu and s, all rows,
    q, y_hat) for the decoder trace (refcodec.trace) and refcodec inspect;
    the decoding is the same."""
    h = pic.header
    a = model.arch
    (hp, wp), (hy, wy), (hz, wz) = grid_sizes(h.width, h.height)
    Z, M = a["Z"], a["M"]
    nz = hz * wz * Z
    z = rans.decode(pic.z_data, [len(pic.z_data)], np.array([0, nz], np.int64), z_rows(hz, wz, Z),
                    model.z_tables, backend=backend).reshape(hz, wz, Z)
    zr = 1 << (model.z_bits - 1)
    params = model.h_s(np.clip(z, -zr, zr - 1).astype(np.int16), backend=backend)
    mu_q, s_q = params[..., :M], params[..., M:]
    if trace is not None:
        trace.update(z_hat=z, mu_hs=mu_q, s_hs=s_q, Q=None)
    p = model.prec
    Q_lat = None
    if h.quality_map_enabled:
        hq, wq = qmap.grid(hy, wy, h.qmap_block_log2)
        Q = qmap.decode_qmap(pic.q_data, hq, wq, h.qmap_ctx_rows, model.y_tables, h.qmap_step_log2,
                             backend=backend, direct=h.qmap_direct_table)
        Q_lat = qmap.expand(Q, h.qmap_block_log2, hy, wy)
        if trace is not None:
            trace["Q"] = Q
    shift, ig = gain_maps(model, h.beta_code, Q_lat)
    if h.context_enabled:
        if not model.context:
            raise BitstreamError("context_enabled, but the model has no context networks (g_cm, g_ep)",
                                 field="tool_flags", clause="5.2")
        S = h.num_y_substreams // 2
        pos = phase_positions(hy, wy)
        q = np.zeros((hy * wy, M), np.int32)
        rows = np.zeros((hy * wy, M), np.int32)
        s_c = s_q
        for phase in (0, 1):
            if phase == 1:
                y_hat_a = dequantize(mu_q, q.reshape(hy, wy, M), ig, p["p_mu"], p["p_y"], model.ig_p)
                mu_q, s_c = context_params(model, y_hat_a, mu_q, s_q, backend)
            if phase == 1 and trace is not None:
                trace.update(mu_context=mu_q, s_context=s_c)
            rows[pos[phase]] = y_rows(s_c, shift, p["p_s"], a["sigma_levels"]).reshape(-1, M)[pos[phase]]
            if trace is not None:
                trace[f"rows_phase{phase}"] = rows[pos[phase]].copy()
            data = pic.y_data[phase * S:(phase + 1) * S]
            q[pos[phase]] = rans.decode(b"".join(data), [len(d) for d in data],
                                        phase_substream_starts(hy, wy, M, S, phase),
                                        rows[pos[phase]].reshape(-1), model.y_tables,
                                        backend=backend).reshape(-1, M)
            if trace is not None:
                trace[f"q_phase{phase}"] = q[pos[phase]].copy()
        q, rows = q.reshape(hy, wy, M), rows.reshape(-1)
        s_coded = s_c
    else:
        s_coded = s_q
        rows = y_rows(s_q, shift, p["p_s"], a["sigma_levels"])
        if trace is not None:
            trace["rows_phase0"] = rows.reshape(-1, M)
        starts = y_substream_starts(hy, wy, M, h.num_y_substreams)
        q = rans.decode(b"".join(pic.y_data), [len(d) for d in pic.y_data], starts, rows, model.y_tables,
                        backend=backend).reshape(hy, wy, M)
        if trace is not None:
            trace["q_phase0"] = q.reshape(-1, M)
    y_hat_q = dequantize(mu_q, q, ig, p["p_mu"], p["p_y"], model.ig_p)
    if trace is not None:
        trace.update(mu=mu_q, s=s_coded, rows=rows, q=q, y_hat=y_hat_q)
    r = None
    if h.postfilter_enabled:
        if not model.postfilter:
            raise BitstreamError("postfilter_enabled, but the model has no post-filter (g_pf)",
                                 field="tool_flags", clause="5.2")
        r = rate_plane(model, h.beta_code, Q_lat, hy, wy)
    return y_hat_q, mu_q, q, rows, r


#: Synthesis by bands of latent rows (clause 6.5 note): each band is computed
#: with G_S_MARGIN extra latent rows above and below, which covers the
#: receptive field of g_s (under 2 latent rows), so the cropped band equals
#: the untiled result exactly; peak memory then follows the band, not the
#: picture.
G_S_BAND = 32
G_S_MARGIN = 3


def synthesize(model, y_hat_q, height, width, backend="cpu", band=G_S_BAND, margin=G_S_MARGIN, monochrome=False,
               rate=None, unfiltered=False):
    """Clauses 6.5-6.6 by bands of latent rows: uint8 RGB (height, width, 3).
    ``rate``: the post-filter's rate plane (clause 6.5.1, :func:`rate_plane`),
    or None for none.  The filter sees 3 pixels each way, far inside a band's
    margin, so the bands stay exact.  ``unfiltered=True`` (an encoder's
    question, with ``rate``): returns the pictures with and without the
    filter, (filtered, unfiltered), from one run of g_s."""
    hy = y_hat_q.shape[0]
    up = model.g_s.upscale
    out = np.empty((height, width, 3), np.uint8)
    raw = np.empty_like(out) if unfiltered and rate is not None else None
    for a in range(0, hy, band):
        b = min(a + band, hy)
        a0, b0 = max(0, a - margin), min(hy, b + margin)
        p0, p1 = a * up, min(b * up, height)
        if p0 >= height:
            break
        x_q = model.g_s(np.ascontiguousarray(y_hat_q[a0:b0]), backend=backend)
        if raw is not None:
            raw[p0:p1] = colour_transform(x_q[(a - a0) * up:][:p1 - p0, :width], model.prec["p_x"], monochrome)
        if rate is not None:
            x_q = postfilter(model, x_q, rate[a0:b0], backend)
        rows = x_q[(a - a0) * up:(b - a0) * up]
        out[p0:p1] = colour_transform(rows[:p1 - p0, :width], model.prec["p_x"], monochrome)
    if unfiltered:
        if raw is None:
            raise ValueError("synthesize(unfiltered=True) needs the post-filter's rate plane")
        return out, raw
    return out


def decode(data, backend="cpu", models=None):
    """Decode a refcodec stream to a uint8 (height, width, 3) RGB array
    (R = G = B for a monochrome stream).  ``models``: the models to choose
    from by model_id; by default every model that ships with refcodec."""
    from . import model as model_mod
    from kernels.config import require_backend
    require_backend(backend)
    pic = picture(data)
    if models is None:
        model = model_mod.shipped(pic.header.model_id)
    else:
        model = find_model(pic.header.model_id, models)
    y_hat_q, _, _, _, r = decode_latents(pic, model, backend)
    return synthesize(model, y_hat_q, pic.header.height, pic.header.width, backend,
                      monochrome=pic.header.monochrome, rate=r)
