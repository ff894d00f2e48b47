"""Conformance vector generator: ``python -m refcodec.vectors generate [--out vectors]``.

Rebuilds every vector of ``vectors/`` from images the repository carries
(procedural images and crops of tests/data/kodim23.png) and the frozen
conformance models in ``vectors/models`` (a small network, exported W16A16
and W8A16, so that every backend -- the numba CUDA simulator included -- can
decode the whole suite).  The encoder is float: the streams are the same
bytes on this machine kind; on another machine a regenerated stream may
differ, while the *decoding* of the committed streams never does.

``python -m refcodec.vectors check [--dir vectors] [--backend B]`` is the
same as ``refcodec conform``.
"""

import argparse
import json
import os
import shutil

import numpy as np
from PIL import Image

from . import decoder, encoder, qmap as qm
from .version import __version__
from .conformance import check, plane_hashes
from .errors import BitstreamError, RefcodecError
from .model import Model
from .syntax import PictureHeader, write_picture
from .syntax.picture_header import HEADER_BYTES

ROOT = os.path.join(os.path.dirname(__file__), "..")
KODIM23 = os.path.join(ROOT, "tests", "data", "kodim23.png")


# ------------------------------------------------------------------ images

def img_solid(h, w, seed=0):
    return np.full((h, w, 3), (200, 30, 90), np.uint8)


def img_noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)


def img_gradient(h, w, seed=0):
    y, x = np.mgrid[0:h, 0:w]
    r = (255 * x / max(w - 1, 1)).astype(np.uint8)
    g = (255 * y / max(h - 1, 1)).astype(np.uint8)
    b = ((x + y) % 256).astype(np.uint8)
    return np.stack([r, g, b], -1)


def img_waves(h, w, seed=0):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)
    g = 128 + 120 * np.sin((x + 2 * y) / 61.0)
    b = 128 + 90 * np.cos(np.hypot(x - w / 2, y - h / 2) / 17.0)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def img_checker(h, w, seed=0):
    y, x = np.mgrid[0:h, 0:w]
    v = (((x // 8) + (y // 8)) % 2 * 255).astype(np.uint8)
    return np.stack([v, 255 - v, v // 2], -1)


def img_kodak(h, w, seed=0):
    im = np.asarray(Image.open(KODIM23).convert("RGB"))
    y0, x0 = (im.shape[0] - h) // 2, (im.shape[1] - w) // 2
    return np.ascontiguousarray(im[y0:y0 + h, x0:x0 + w])


def img_kodak_gray(h, w, seed=0):
    """The kodak crop as gray (R = G = B, BT.709 luma): coded monochrome (tool_flags bit 2)."""
    y = np.round(img_kodak(h, w).astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722]))
    return np.repeat(np.clip(y, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


IMAGES = {"solid": img_solid, "noise": img_noise, "gradient": img_gradient, "waves": img_waves,
          "checker": img_checker, "kodak": img_kodak, "kodak_gray": img_kodak_gray}

W16, W8 = "conf-w16.npz", "conf-w8.npz"
#: the same small network with the checkerboard context networks (clause 6.4)
W16C, W8C = "conf-ctx-w16.npz", "conf-ctx-w8.npz"
#: conf-w16 with gains that fall between rate points in some channels
#: (derive_gain_model): the interpolation of clause 6.4 then divides
#: negative numbers, where floor and truncation differ
W16G = "conf-gain-w16.npz"
#: conf-ctx with a post-filter g_pf of 4 channels (clause 6.5.1)
W16P, W8P = "conf-pf-w16.npz", "conf-pf-w8.npz"
MODELS = (W16, W8, W16C, W8C, W16G, W16P, W8P)

#: The rule of SPEC.md a vector is made to exercise: a decoder that breaks
#: it fails that vector (the generator checks it; tests/test_vectors.py too).
COVERS = {
    "gain_floor_division": "6.4: the gain interpolation divides with floor, not truncation",
    "z_hat_clamp": "6.3: h_s reads z_hat clamped to [-128, 127]",
}

# id, image, h, w, model, beta, substreams, qmap, block, tags
VECTORS = [
    ("size_1x1", "solid", 1, 1, W16, 0.5, 1, None, 0, ["cuda"]),
    ("size_5x7_odd", "noise", 5, 7, W16, 0.25, 1, None, 0, []),
    ("size_33x65_not_mult64", "gradient", 33, 65, W16, 0.75, 3, None, 0, []),
    ("portrait_130x48", "kodak", 130, 48, W16, 1.0, 2, None, 0, []),
    ("large_1024x2048_2mp", "waves", 1024, 2048, W16, 0.1, 8, None, 0, ["large"]),
    ("beta_0", "kodak", 96, 128, W16, 0.0, 1, None, 0, []),
    ("beta_0p5", "kodak", 96, 128, W16, 0.5, 2, None, 0, []),
    ("beta_1", "kodak", 96, 128, W16, 1.0, 1, None, 0, []),
    ("substreams_64_empty", "kodak", 192, 256, W16, 0.6, 64, None, 0, []),
    ("substreams_5", "waves", 200, 100, W16, 0.4, 5, None, 0, []),
    ("qmap_activity_b0", "kodak", 128, 192, W16, 0.5, 1, "activity", 0, []),
    ("qmap_rdo_b1", "kodak", 128, 192, W16, 0.5, 2, "rdo", 1, []),
    ("qmap_extreme_pos_b2", "waves", 128, 192, W16, 0.3, 1, "max", 2, []),
    ("qmap_extreme_neg_b3", "waves", 128, 192, W16, 0.9, 1, "min", 3, []),
    ("qmap_alternating_b0", "checker", 64, 128, W16, 0.5, 1, "alternating", 0, ["cuda"]),
    ("qmap_random_b4", "kodak", 160, 256, W16, 0.5, 3, "random", 4, []),
    ("w8_kodak", "kodak", 96, 128, W8, 0.5, 1, None, 0, []),
    ("w8_qmap_activity", "kodak", 96, 128, W8, 0.7, 2, "activity", 0, []),
    ("w8_size_3x2", "noise", 3, 2, W8, 0.5, 1, None, 0, ["cuda"]),
    ("noise_beta1_qmax", "noise", 64, 64, W16, 1.0, 1, "max", 0, []),
    ("escapes_largest_values", "kodak", 64, 64, W16, 0.5, 2, "escape", 0, ["cuda"]),
    # the checkerboard context (tool_flags bit 1): anchors, then the rest
    ("context_size_1x1", "solid", 1, 1, W16C, 0.5, 2, None, 0, ["context", "cuda"]),
    ("context_size_33x65_not_mult64", "gradient", 33, 65, W16C, 0.75, 6, None, 0, ["context"]),
    ("context_kodak", "kodak", 96, 128, W16C, 0.5, 2, None, 0, ["context"]),
    ("context_beta_0", "kodak", 96, 128, W16C, 0.0, 2, None, 0, ["context"]),
    ("context_beta_1", "waves", 96, 128, W16C, 1.0, 4, None, 0, ["context"]),
    ("context_substreams_64_empty", "kodak", 192, 256, W16C, 0.6, 64, None, 0, ["context"]),
    ("context_qmap_rdo_b1", "kodak", 128, 192, W16C, 0.5, 2, "rdo", 1, ["context"]),
    ("context_qmap_random_b0", "noise", 64, 128, W16C, 0.5, 2, "random", 0, ["context", "cuda"]),
    ("context_w8_kodak", "kodak", 96, 128, W8C, 0.5, 4, None, 0, ["context"]),
    ("context_escapes_largest_values", "kodak", 64, 64, W16C, 0.5, 2, "escape", 0, ["context", "cuda"]),
    # rules a decoder can get wrong on every other vector (see COVERS)
    ("gain_floor_division", "kodak", 96, 128, W16G, None, 1, "gain_floor", 0, []),
    ("z_hat_clamp", "kodak", 96, 128, W16, 0.6, 2, "z_clamp", 0, ["cuda"]),
    # monochrome (tool_flags bit 2): a gray picture, R = G = B from luma alone (clause 6.6)
    ("monochrome_kodak", "kodak_gray", 96, 128, W16, 0.7, 1, None, 0, ["monochrome"]),
    ("context_monochrome_qmap", "kodak_gray", 64, 64, W16C, 0.5, 2, "random", 0,
     ["context", "monochrome", "cuda"]),
    # the map codings of the second edition (clause 6.7): a step 2^s, contexts
    ("qmap2_step2_b2", "waves", 128, 192, W16, 0.5, 1, "random4", 2, ["qmap2"]),
    ("qmap2_step1_context_b1", "kodak", 128, 192, W16, 0.4, 2, "clusters_even", 1, ["qmap2"]),
    ("qmap2_step2_context_b0", "noise", 64, 128, W16C, 0.6, 2, "random4", 0, ["qmap2", "context", "cuda"]),
    # the direct map coding of the third edition (clause 6.7): the values under the header's frequencies
    ("qmap3_direct_b0", "kodak", 128, 192, W16, 0.5, 2, "three_skewed", 0, ["qmap3"]),
    ("qmap3_direct_all17_b0", "waves", 256, 384, W16, 0.6, 1, "all17", 0, ["qmap3"]),
    ("qmap3_direct_step1_b0", "noise", 64, 128, W16C, 0.5, 2, "even_skewed", 0, ["qmap3", "context", "cuda"]),
    # the post-filter (tool_flags bit 3): g_pf on g_s's output, told the rate and the map (clause 6.5.1)
    ("postfilter_size_1x1", "solid", 1, 1, W16P, 0.5, 2, None, 0, ["postfilter", "context", "cuda"]),
    ("postfilter_size_33x65_not_mult64", "gradient", 33, 65, W16P, 0.75, 2, None, 0, ["postfilter", "context"]),
    ("postfilter_kodak", "kodak", 96, 128, W16P, 0.5, 2, None, 0, ["postfilter", "context"]),
    ("postfilter_beta_0", "kodak", 96, 128, W16P, 0.0, 2, None, 0, ["postfilter", "context"]),
    ("postfilter_beta_1", "waves", 96, 128, W16P, 1.0, 4, None, 0, ["postfilter", "context"]),
    ("postfilter_qmap_random_b0", "noise", 64, 128, W16P, 0.5, 2, "random", 0, ["postfilter", "context", "cuda"]),
    ("postfilter_qmap_extremes_b1", "kodak", 128, 192, W16P, 0.5, 2, "alternating", 1, ["postfilter", "context"]),
    ("postfilter_w8_kodak", "kodak", 96, 128, W8P, 0.5, 2, None, 0, ["postfilter", "context"]),
    ("postfilter_monochrome", "kodak_gray", 64, 64, W16P, 0.6, 2, None, 0, ["postfilter", "context", "monochrome"]),
]
#: How each vector's map is coded (qmap.MAP_CODINGS): the vectors older than
#: the second edition keep the first edition's coding, byte for byte.
QMAP_CODING = {"qmap2_step2_b2": "step", "qmap2_step1_context_b1": "context", "qmap2_step2_context_b0": "context",
               "qmap3_direct_b0": "direct", "qmap3_direct_all17_b0": "direct", "qmap3_direct_step1_b0": "direct"}


def craft_escapes(an, beta_code, S):
    """A stream whose y values include the largest escaped ones (+-32767,
    -32768) and mid-sized escapes, written with the normal syntax: the
    encoder would never choose them, but a decoder must decode them.  With
    the checkerboard context the escapes sit at anchors and elsewhere, and the
    other positions' rows follow from the crafted anchors, as a decoder
    derives them."""
    from .decoder import context_params, dequantize, gain_maps, y_rows
    from .syntax.picture_header import CONTEXT_FLAG
    m = an.model
    M = m.arch["M"]
    q, rows = an.quantize(beta_code)
    special = [32767, -32768, 1000, -1000, 40, -40, 32766, -32767]
    q[:len(special)] = special
    q[-3:] = [-32768, 12345, 32767]
    if an.context:
        p = m.prec
        shift, ig = gain_maps(m, beta_code)
        y_hat_q = dequantize(an.mu_q, q.reshape(an.hy, an.wy, M), ig, p["p_mu"], p["p_y"], m.ig_p)
        _, s_c = context_params(m, y_hat_q, an.mu_q, an.s_q)
        rows = y_rows(s_c, shift, p["p_s"], m.arch["sigma_levels"])
    ys = encoder.y_substreams(m, q, rows, an.hy, an.wy, S, an.context)
    header = PictureHeader(model_id=m.model_id, width=an.width, height=an.height, beta_code=beta_code,
                           num_y_substreams=S, tool_flags=CONTEXT_FLAG if an.context else 0)
    return write_picture(header, an.z_stream(), ys)


def derive_gain_model(src, dst):
    """conf-gain-w16.npz: conf-w16.npz whose gain of every third channel
    falls from rate point 1 to 2 (by 0.3 octave below point 1), so that
    (G[k+1] - G[k]) * f is negative there (clause 6.4).  Deterministic: the
    same bytes, the same model_id, every time."""
    from .export import write_npz
    arrays = dict(np.load(src, allow_pickle=False))
    G = arrays["gain_log2_fp"].astype(np.int64)
    G[2, ::3] = G[1, ::3] - 19661
    arrays["gain_log2_fp"] = G.astype(np.int32)
    with open(dst, "wb") as f:
        f.write(write_npz(arrays))


def truncating_log2_gain(G, beta_code):
    """The gain interpolation of clause 6.4 with truncating division: the
    slip gain_floor_division is made to catch."""
    G = G.astype(np.int64)
    K = G.shape[0]
    t = int(beta_code) * (K - 1)
    k = min(t // 65535, K - 2)
    f = t - k * 65535
    num = (G[k + 1] - G[k]) * f
    return G[k] + np.sign(num) * (np.abs(num) // 65535)


def breaks_rule(vid, data, model):
    """Whether a decoder that breaks the rule of COVERS[vid] gets this vector
    wrong: the slipped decoder's picture (or its h_s output) differs, or it
    fails to decode."""
    from . import gain
    pic = decoder.picture(data)
    right = decoder.decode(data, models=[model])
    if vid == "gain_floor_division":
        real = gain.log2_gain_fp
        gain.log2_gain_fp = truncating_log2_gain
        try:
            wrong = decoder.decode(data, models=[model])
        except RefcodecError:
            return True
        finally:
            gain.log2_gain_fp = real
        return not np.array_equal(wrong, right)
    if vid == "z_hat_clamp":
        tr = {}
        decoder.decode_latents(pic, model, "cpu", trace=tr)
        z = tr["z_hat"]
        unclamped = model.h_s(np.clip(z, -32768, 32767).astype(np.int16))
        return not np.array_equal(unclamped[..., :model.arch["M"]], tr["mu_hs"])
    raise KeyError(vid)


def find_gain_floor_code(model):
    """The first beta_code (searched from the middle of segment 1 outwards)
    where floor and truncation give another inverse gain or sigma shift in
    some channel."""
    from . import gain
    for d in range(0, 16384):
        for code in (24576 - d, 24576 + d):
            a = gain.log2_gain_fp(model.gain_log2_fp, code)
            b = truncating_log2_gain(model.gain_log2_fp, code)
            p_s = model.prec["p_s"]
            if np.any(gain.inverse_gain(a, model.exp2) != gain.inverse_gain(b, model.exp2)) or \
                    np.any(gain.sigma_shift(a, p_s) != gain.sigma_shift(b, p_s)):
                return code
    raise RuntimeError("no beta_code where floor and truncation part")


def craft_z_clamp(an, beta_code, S):
    """A stream whose z_hat leaves [-128, 127] (escaped z values, which the
    syntax allows): h_s reads them clamped, as the decoder will."""
    m = an.model
    z = an.z_hat.copy()
    z[0, 0, :3] = [200, -300, 128]
    z[-1, -1, -2:] = [-129, 5000]
    an.z_hat = z
    an._z_stream = None
    zr = 1 << (m.z_bits - 1)
    params = m.h_s(np.clip(z, -zr, zr - 1).astype(np.int16))
    M = m.arch["M"]
    an.mu_q, an.s_q = params[..., :M], params[..., M:]
    return an.stream(beta_code, S)


def make_qmap(kind, an, rgb, block, seed=0):
    hq, wq = an.qmap_grid(block)
    if kind is None or kind in ("gain_floor", "z_clamp"):
        return None
    if kind == "activity":
        return encoder.quality_map(an, rgb, kind, block)
    if kind == "rdo":
        # the rdo map as the encoder made it when the vectors were cut (candidates -4 ... 4, two
        # refining passes, no fallback to no map): the vectors exercise the decoder, not the
        # encoder's tuning, so they stay byte for byte when the encoder's defaults move
        return encoder.rdo_map(an, rgb, block, 32768, candidates=tuple(range(-4, 5)), refine=2,
                               allow_flat=False)[0]
    if kind == "max":
        return np.full((hq, wq), qm.Q_MAX, np.int32)
    if kind == "min":
        return np.full((hq, wq), qm.Q_MIN, np.int32)
    if kind == "alternating":
        return np.where(np.indices((hq, wq)).sum(0) % 2, qm.Q_MAX, qm.Q_MIN).astype(np.int32)
    if kind == "random":
        return np.random.default_rng(seed).integers(qm.Q_MIN, qm.Q_MAX + 1, (hq, wq)).astype(np.int32)
    if kind == "random4":       # multiples of 4: qmap_step_log2 = 2
        return 4 * np.random.default_rng(seed).integers(-2, 3, (hq, wq)).astype(np.int32)
    if kind == "three_skewed":   # -1, 0, 1, mostly 0, no spatial order: as rdo maps are
        return np.random.default_rng(seed).choice([-1, 0, 0, 0, 0, 1], (hq, wq)).astype(np.int32)
    if kind == "all17":          # every value of [-8, 8], each but 0 once: frequencies 255 and 1
        rng = np.random.default_rng(seed)
        Q = np.zeros(hq * wq, np.int32)
        Q[rng.choice(hq * wq, 16, replace=False)] = [v for v in range(qm.Q_MIN, qm.Q_MAX + 1) if v]
        return Q.reshape(hq, wq)
    if kind == "even_skewed":    # even values: qmap_step_log2 = 1
        return 2 * np.random.default_rng(seed).choice([-2, -1, 0, 0, 0, 1], (hq, wq)).astype(np.int32)
    if kind == "clusters_even":  # even Q in patches: qmap_step_log2 = 1, runs of zero differences
        rng = np.random.default_rng(seed)
        Q = np.zeros((hq, wq), np.int32)
        for _ in range(4):
            i, j = rng.integers(0, hq), rng.integers(0, wq)
            Q[i:i + 3, j:j + 4] = 2 * rng.integers(-4, 5)
        return Q
    raise ValueError(kind)


def map_coding_name(h):
    if h.qmap_direct:
        return f"direct, values {h.qmap_v_min} ... {h.qmap_v_min + len(h.qmap_freqs) - 1}"
    return "contexts" if h.qmap_context else "one row"


def count_escapes(data, model):
    """How many y values of a stream lie outside their table row's support."""
    pic = decoder.picture(data)
    _, _, q, rows, _ = decoder.decode_latents(pic, model, "cpu")
    _, cdf_len, offset = model.y_tables
    lo = offset[rows]
    hi = lo + cdf_len[rows] - 2
    qq = q.reshape(-1)
    return int(((qq < lo) | (qq > hi)).sum()), int(np.abs(qq).max())


def write_vector(out, vid, data, rgb_dec, desc, models):
    from .trace import trace
    folder = os.path.join(out, vid)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "bitstream.bin"), "wb") as f:
        f.write(data)
    recs, rgb_tr = trace(data, models=models)
    if not np.array_equal(rgb_tr, rgb_dec):
        raise RuntimeError(f"{vid}: the traced decode differs from the decode")
    expected = {"sha256": plane_hashes(rgb_dec), "width": int(rgb_dec.shape[1]), "height": int(rgb_dec.shape[0]),
                "bit_depth": 8, "generated_by": f"refcodec {__version__}", "trace": recs}
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(folder, "description.txt"), "w") as f:
        f.write(desc + "\n")


# ------------------------------------------------------------------ invalid streams

def _set(data, pos, value, nbytes):
    b = bytearray(data)
    b[pos:pos + nbytes] = int(value).to_bytes(nbytes, "big")
    return bytes(b)


def invalid_streams(base, base_qmap, model, base_ctx, model_ctx, base_qmap2, base_qmap3):
    """(name, bytes, description) of streams that must be rejected; base has no
    quality map, base_qmap has one, base_ctx (model_ctx) uses the context."""
    H = HEADER_BYTES
    pic = decoder.picture(base)
    out = []
    for cut in (0, 3, 4, 12, 13, 20, H, H + 3, H + 8, len(base) // 2, len(base) - 2):
        out.append((f"truncated_at_{cut}", base[:cut], f"the stream truncated to {cut} bytes"))
    out += [
        ("bad_magic", _set(base, 0, 0x52434444, 4), "magic is not RCDC"),
        ("version_2", _set(base, 4, 2, 1), "unknown version 2"),
        ("unknown_model_id", _set(base, 5, 0x0123456789ABCDEF, 8), "model_id names no model"),
        ("width_above_level", _set(base, 13, 65535, 2), "width 65536 above the level limit"),
        ("area_above_level", _set(_set(base, 13, 16383, 2), 15, 16383, 2), "16384 x 16384 above the level's samples"),
        ("reserved_tool_flag", _set(base, 19, 0x80, 1), "a reserved tool_flags bit set"),
        ("zero_substreams", _set(base, 20, 0, 1), "num_y_substreams = 0"),
        ("substreams_65", _set(base, 20, 65, 1), "num_y_substreams above 64"),
        ("z_size_past_end", _set(base, H, 1 << 30, 4), "z_size runs past the end"),
        ("z_size_odd", _set(base, H, pic.sizes.z_size + 1, 4), "z_size odd"),
        ("z_size_tiny", _set(base, H, 4, 4), "z_size below 8"),
        ("trailing_bytes", base + b"\x00\x00", "two bytes after the last substream"),
    ]
    # a corrupted y payload that the coder's end check catches
    out.append(_first_caught_bitflip("y_payload_bitflip", base, len(base) - sum(pic.sizes.y_size) + 4, model,
                                     "in y_data"))
    # z payload
    zstart = H + 4 * (1 + pic.header.num_y_substreams)
    out.append(("z_state_zero", _set(base, zstart, 0, 4), "the first z coder state below 2^16"))
    # quality-map fields
    qpic = decoder.picture(base_qmap)
    out.append(("qmap_block_log2_5", _set(base_qmap, H, 5, 1), "qmap_block_log2 above 4"))
    out.append(("qmap_sigma_row_255", _set(base_qmap, H + 1, 255, 1), "qmap_sigma_row names no table row"))
    # a map whose decoded Q leaves [-8, 8]
    from kernels import rans
    h = qpic.header
    (hp, wp), (hy, wy), _ = decoder.grid_sizes(h.width, h.height)
    hq, wq = qm.grid(hy, wy, h.qmap_block_log2)
    dq = np.zeros(hq * wq, np.int32)
    dq[0] = 9
    qdata = rans.encode(dq, np.full(dq.size, h.qmap_sigma_row, np.int32), np.array([0, dq.size]),
                        model.y_tables)[0]
    bad = write_picture(h, qpic.z_data, qpic.y_data, qdata)
    out.append(("qmap_value_9", bad, "the quality map decodes to Q = 9"))
    # the second edition's map codings (qmap_mode, context rows)
    k = h.qmap_block_log2
    out.append(("qmap_mode_reserved_bit", _set(base_qmap, H, 0x40 | k, 1), "a reserved qmap_mode bit set"))
    out.append(("qmap_step_log2_3", _set(base_qmap, H, (3 << 3) | k, 1), "qmap_step_log2 above 2"))
    q2 = decoder.picture(base_qmap2).header
    assert q2.qmap_context
    out.append(("qmap_sigma_row1_255", _set(base_qmap2, H + 2, 255, 1), "qmap_sigma_row1 names no table row"))
    dq[0] = 3                      # V = 3 with qmap_step_log2 = 2: Q = 12
    qdata = rans.encode(dq, np.full(dq.size, h.qmap_sigma_row, np.int32), np.array([0, dq.size]),
                        model.y_tables)[0]
    h4 = PictureHeader(**{**h.__dict__, "qmap_step_log2": 2})
    out.append(("qmap_step2_value_12", write_picture(h4, qpic.z_data, qpic.y_data, qdata),
                "the quality map decodes to Q = 3 x 2^2 = 12"))
    # the third edition's direct coding (qmap_direct, V_min, A, frequencies)
    q3 = decoder.picture(base_qmap3)
    h3 = q3.header
    assert h3.qmap_direct and h3.qmap_step_log2 == 0 and h3.qmap_v_min == -1
    out.append(("qmap_direct_with_context", _set(base_qmap3, H, h3.qmap_mode | 0x20, 1),
                "qmap_direct and qmap_context both set"))
    out.append(("qmap_num_values_0", _set(base_qmap3, H + 2, 0, 1), "qmap_num_values = 0"))
    out.append(("qmap_direct_values_above_8", _set(base_qmap3, H + 1, 15, 1),
                "the direct coding's values 7 ... 9 leave [-8, 8]"))
    out.append(("qmap_freq_0", _set(base_qmap3, H + 4, 0, 1), "qmap_freq[1] = 0"))
    hq3, wq3 = qm.grid(*decoder.grid_sizes(h3.width, h3.height)[1], h3.qmap_block_log2)
    V = np.zeros(hq3 * wq3, np.int32)
    V[5] = 2                                         # outside -1 ... 1: coded through the escape
    qdata = rans.encode(V, np.zeros(V.size, np.int32), np.array([0, V.size]),
                        qm.direct_tables(h3.qmap_v_min, h3.qmap_freqs))[0]
    out.append(("qmap_direct_escape", write_picture(h3, q3.z_data, q3.y_data, qdata),
                "a directly coded map value (2) outside the table's -1 ... 1, through the escape"))
    # the checkerboard context
    out.append(("context_odd_substreams", _set(base_ctx, 20, 3, 1),
                "context_enabled with an odd num_y_substreams"))
    even = write_picture(PictureHeader(**{**pic.header.__dict__, "num_y_substreams": 2}), pic.z_data,
                         [b"".join(pic.y_data[:2]), b"".join(pic.y_data[2:])])
    out.append(("context_model_without_networks", _set(even, 19, 2, 1),
                "context_enabled, but the model it names has no context networks"))
    cpic = decoder.picture(base_ctx)
    S = cpic.header.num_y_substreams
    phase1 = H + 4 * (1 + S) + cpic.sizes.z_size + sum(cpic.sizes.y_size[:S // 2])
    out.append(_first_caught_bitflip("context_phase1_bitflip", base_ctx, phase1 + 4, model_ctx,
                                     "in a phase-1 y substream"))
    # the post-filter
    out.append(("postfilter_model_without_g_pf", _set(base, 19, 8, 1),
                "postfilter_enabled, but the model it names has no post-filter g_pf"))
    return out


def _first_caught_bitflip(name, base, start, model, where):
    """The stream with bit 4 flipped in the first byte from ``start`` on whose
    corruption the coder's end check catches."""
    for i in range(start, len(base)):
        b = bytearray(base)
        b[i] ^= 0x10
        try:
            decoder.decode(bytes(b), models=[model])
        except BitstreamError:
            return name, bytes(b), f"bit 4 of byte {i} ({where}) flipped"
    raise RuntimeError(f"{name}: no bit flip from byte {start} on is caught")


# ------------------------------------------------------------------ driver

def generate(out):
    models_src = os.path.join(ROOT, "vectors", "models")
    if not os.path.exists(os.path.join(models_src, W16G)):
        derive_gain_model(os.path.join(models_src, W16), os.path.join(models_src, W16G))
    models = {name: Model(os.path.join(models_src, name)) for name in MODELS}
    if os.path.abspath(out) != os.path.abspath(os.path.join(ROOT, "vectors")):
        os.makedirs(os.path.join(out, "models"), exist_ok=True)
        for name in models:
            shutil.copy(os.path.join(models_src, name), os.path.join(out, "models", name))
    manifest = {"format": "refcodec-conformance", "version": 1, "models": list(MODELS), "vectors": [],
                "invalid": []}
    streams = {}
    for vid, img, h, w, mname, beta, S, qkind, block, tags in VECTORS:
        m = models[mname]
        rgb = IMAGES[img](h, w)
        # rounding to nearest, as these vectors were first generated (an
        # encoder choice the decoder never sees; rate-aware rounding came later)
        an = encoder.Analysis(rgb, m, rdoq=0)
        an.qmap_coding = QMAP_CODING.get(vid, "first")
        if qkind == "gain_floor":
            beta = find_gain_floor_code(m) / 65535
        if qkind == "escape":
            Q, data = None, craft_escapes(an, encoder.beta_to_code(beta), S)
        elif qkind == "z_clamp":
            Q, data = None, craft_z_clamp(an, encoder.beta_to_code(beta), S)
        else:
            Q = make_qmap(qkind, an, rgb, block)
            data = an.stream(encoder.beta_to_code(beta), S, Q, block)
        rgb_dec = decoder.decode(data, models=[m])
        esc, qmax = count_escapes(data, m)
        special = qkind in ("escape", "gain_floor", "z_clamp")
        tools = [f"model {mname}", f"beta {beta}", f"{S} y substream(s)",
                 "checkerboard context" if an.context else "no context",
                 f"quality map {qkind} (block 2^{block})" if qkind and not special else "no quality map",
                 *([f"map coding: step 2^{decoder.picture(data).header.qmap_step_log2}, "
                    f"{map_coding_name(decoder.picture(data).header)}"]
                   if vid in QMAP_CODING else []),
                 f"{esc} escaped values (largest |q| {qmax})"]
        if vid in COVERS:
            tools.append(f"covers SPEC.md {COVERS[vid]}")
        if an.monochrome:
            tools.insert(4, "monochrome (R = G = B from luma)")
        if an.postfilter:
            tools.insert(4, "post-filter g_pf")
        desc = (f"{vid}: {w}x{h} {img} image; " + "; ".join(tools) +
                f". Generated by python -m refcodec.vectors generate (refcodec {__version__}).")
        if vid in COVERS and not breaks_rule(vid, data, m):
            raise RuntimeError(f"{vid}: a decoder that breaks '{COVERS[vid]}' would pass it")
        write_vector(out, vid, data, rgb_dec, desc, [m])
        entry = {"id": vid, "model": mname, "width": w, "height": h, "beta": beta, "substreams": S,
                 "qmap": qkind, "qmap_block_log2": block, "escapes": esc, "tags": tags}
        if vid in COVERS:
            entry["covers"] = COVERS[vid]
        if vid in QMAP_CODING:
            qh = decoder.picture(data).header
            entry["qmap_coding"] = {"step_log2": qh.qmap_step_log2, "context": qh.qmap_context}
            if qh.qmap_direct:
                entry["qmap_coding"]["direct"] = {"v_min": qh.qmap_v_min, "freqs": list(qh.qmap_freqs)}
        manifest["vectors"].append(entry)
        streams[vid] = data
        print(f"{vid}: {len(data)} bytes, {esc} escapes")
    inv_dir = os.path.join(out, "invalid")
    os.makedirs(inv_dir, exist_ok=True)
    for name, data, desc in invalid_streams(streams["size_33x65_not_mult64"], streams["qmap_activity_b0"],
                                            models[W16], streams["context_kodak"], models[W16C],
                                            streams["qmap2_step1_context_b1"], streams["qmap3_direct_b0"]):
        try:
            decoder.decode(data, models=list(models.values()))
            raise RuntimeError(f"invalid vector {name} decodes")
        except RefcodecError as e:
            err = type(e).__name__
        with open(os.path.join(inv_dir, f"{name}.bin"), "wb") as f:
            f.write(data)
        manifest["invalid"].append({"file": f"{name}.bin", "error": err, "description": desc,
                                    "tags": ["invalid"]})
        print(f"invalid/{name}: {err}")
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    write_readme(out, manifest)


def write_readme(out, manifest):
    lines = ["# refcodec conformance vectors", "",
             "Generated by `python -m refcodec.vectors generate`; checked by `refcodec conform vectors "
             "[--backend numpy|cpu|cuda]`, which prints one line per vector and `N passed, M failed` "
             "(`--vector ID` checks one: a vector's folder name, or `invalid/FILE`).",
             "A decoder conforms when its output matches `expected.json` for every vector, and it rejects every "
             "stream in `invalid/` with the listed error class -- that very class, a superclass does not count "
             "(SPEC.md 5.0).",
             "`expected.json` holds the SHA-256 of each decoded plane, `R`, `G` and `B` (its height x width "
             "samples as one byte each, row after row, left to right), and `rgb`, the SHA-256 of the whole "
             "output (height x width x 3 bytes: row after row, pixel after pixel, R, G, B); and `trace`, the "
             "decoder trace of SPEC.md clause 10.1 (every intermediate's SHA-256, clause by clause): "
             "`refcodec conform vectors --trace` names the first clause where a decoder departs.",
             "The vectors use the frozen conformance models in `models/` (a small network, W16A16 and W8A16, "
             "without and with the checkerboard context networks, with the post-filter g_pf, and a W16A16 "
             "variant with falling gains).", "",
             "| id | size | model | beta | y substreams | quality map | escapes | tags |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for v in manifest["vectors"]:
        qmap = (f"{v['qmap']} (block 2^{v['qmap_block_log2']})"
                if v["qmap"] and v["qmap"] not in ("escape", "gain_floor", "z_clamp") else "-")
        lines.append(f"| {v['id']} | {v['width']}x{v['height']} | {v['model']} | {v['beta']} | {v['substreams']} | "
                     f"{qmap} | {v['escapes']} | {', '.join(v['tags'])} |")
    lines += ["", "## Vectors made for one rule", "",
              "A decoder that breaks the rule outputs another picture for the vector (the generator checks it). "
              "`conf-gain-w16.npz` is `conf-w16.npz` with the gain of every third channel falling between rate "
              "points 1 and 2 (`refcodec.vectors.derive_gain_model`), so that the interpolation divides negative "
              "numbers.", "", "| id | rule |", "| --- | --- |"]
    lines += [f"| {v['id']} | {v['covers']} |" for v in manifest["vectors"] if "covers" in v]
    lines += ["", "## Streams that must be rejected (`invalid/`)", "", "| file | error | what is wrong |",
              "| --- | --- | --- |"]
    for inv in manifest["invalid"]:
        lines.append(f"| {inv['file']} | {inv['error']} | {inv['description']} |")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.vectors", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", default=os.path.join(ROOT, "vectors"))
    c = sub.add_parser("check")
    c.add_argument("--dir", default=os.path.join(ROOT, "vectors"))
    c.add_argument("--backend", default="cpu", choices=("numpy", "cpu", "cuda"))
    args = p.parse_args(argv)
    if args.cmd == "generate":
        generate(args.out)
        return 0
    passed, failed = check(args.dir, args.backend)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
