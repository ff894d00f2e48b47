"""Export trained float weights to a refcodec model file (SPEC.md clause 8).

``python -m refcodec.export FLOAT.npz OUT.npz [--weight-bits 16|8] [--calib DIR] [--encoder-from W16.npz]``
``python -m refcodec.export FLOAT.npz vK-float.npz --float --encoder-from refcodec-vK-w16.npz``

With ``--encoder-from`` the file written holds no float analysis weights
(g_a, h_a, 6 MB of the second generation's 9): its header names the model
file beside it that holds them, with that file's SHA-256 (the W8 export of
the weights the W16 export came from, or, with ``--float``, the float
weights the trainer resumes from), so that a shipped model's three files
carry the encoder once.  The named file's encoder weights must be exactly
those of FLOAT.npz.

Steps:

1. calibration: the float pipeline runs on crops of calibration images at
   several rates and records the largest magnitude of every tensor of h_s
   and g_s;
2. each tensor gets an int16 precision (fractional bits) with one bit of
   headroom; every convolution and IGDN is quantized by
   :func:`refcodec.quant.quantize_conv` under the no-overflow bound;
3. the entropy tables are tabulated: discretized Gaussians for y (one row per
   sigma level), the learned factorized densities of z (one row per channel);
4. gain vectors go to fixed point (1/65536 log2 units), with the exp2 table
   the decoder uses to invert them;
5. a W16 export also carries the density of z in float (``train.*``,
   clause 8.5): from the W16 file alone :func:`refcodec.nn.load_float`
   gives the float weights back, so the trainer resumes from it and a new
   model ships without a ``vK-float.npz`` (``python -m refcodec.export
   refcodec-vK-w16.npz refcodec-vK-w8.npz --weight-bits 8 --encoder-from
   refcodec-vK-w16.npz`` works from it too, its 8-bit weights at most one
   step from those of an export from the trainer's float weights).

The file is an ``.npz``; its SHA-256 (first 8 bytes) is the ``model_id``
that streams name.
"""

import argparse
import glob
import hashlib
import io
import json
import math
import os
import zipfile

import numpy as np

from . import arch as A
from .colour import to_ycbcr  # noqa: F401 (re-exported)
from .nn import (TRAIN_PREFIX, factorized_logits_cdf, load_float,  # noqa: F401 (load_float re-exported)
                 run_float, sigmoid)
from .quant import max_output_precision, precision_for, quantize_conv
from .tables import gaussian_tables, pack_tables

FORMAT = "refcodec-model"
FORMAT_VERSION = 1
#: Precision of the fixed-point inverse gain (SPEC.md clause 6.4).
IG_P = 16
#: exp2 table: EXP2[i] = round(2^30 * 2^(i / 1024)).
EXP2_BITS = 10
#: h_s input: z_hat clamped to this many bits (signed) before h_s.
Z_BITS = 8
#: Calibration rates.
CALIB_BETAS = (0.0, 0.33, 0.67, 1.0)


def gain_log2(arch, params, beta):
    """Float log2 gain per channel at rate beta (the trainer's interpolation)."""
    G = params["log2_gain"].astype(np.float64)
    K = arch["K"]
    t = min(max(beta, 0.0), 1.0) * (K - 1)
    k = min(int(math.floor(t)), K - 2)
    f = t - k
    return (1 - f) * G[k] + f * G[k + 1]


def float_forward(arch, params, rgb, beta):
    """Float reference pipeline on one image: every tensor the exporter calibrates."""
    y = run_float(arch["g_a"], params, "g_a", to_ycbcr(rgb))
    z = run_float(arch["h_a"], params, "h_a", y)
    z_hat = np.clip(np.round(z), -(1 << (Z_BITS - 1)), (1 << (Z_BITS - 1)) - 1)
    hs_acts = trace(arch["h_s"], params, "h_s", z_hat)
    out = hs_acts[-1]
    M = arch["M"]
    mu, s = out[..., :M], out[..., M:]
    lg = gain_log2(arch, params, beta)
    g = 2.0 ** lg
    y_hat = mu + np.round((y - mu) * g) / g
    out = {"y": y, "z": z, "z_hat": z_hat, "hs": hs_acts, "mu": mu, "s": s}
    if A.has_context(arch):
        mu, s, cm_acts, ep_acts = float_context(arch, params, y_hat, mu, s)
        y_hat = mu + np.round((y - mu) * g) / g
        out.update(cm=cm_acts, ep=ep_acts, mu_ctx=mu, s_ctx=s)
    out.update(y_hat=y_hat, gs=trace(arch["g_s"], params, "g_s", y_hat))
    if A.has_postfilter(arch):
        x = out["gs"][-1]
        r = np.full(x.shape[:2] + (1,), lg.mean() / A.PF_RATE_DIV, np.float32)
        out["pf"] = trace(arch["g_pf"], params, "g_pf", np.concatenate([x, r], axis=-1))
    return out


def float_context(arch, params, y_hat, mu, s):
    """Float clause 6.4: (mu, s) with the anchors' hyperprior values and the
    other positions refined from the anchors of y_hat; also the traced
    activations of g_cm and g_ep."""
    M = arch["M"]
    a = anchor_mask(*y_hat.shape[:2])[:, :, None]
    cm_acts = trace(arch["g_cm"], params, "g_cm", y_hat * a)
    ep_acts = trace(arch["g_ep"], params, "g_ep", np.concatenate([mu, s, cm_acts[-1]], axis=-1))
    return (np.where(a, mu, mu + ep_acts[-1][..., :M]), np.where(a, s, s + ep_acts[-1][..., M:]),
            cm_acts, ep_acts)


def anchor_mask(hy, wy):
    """Clause 6.4: the checkerboard anchors, (row + column) even."""
    return (np.arange(hy)[:, None] + np.arange(wy)[None, :]) % 2 == 0


def trace(layers, params, prefix, x):
    """Outputs of every layer: acts[0] is the input, acts[i + 1] the output of layer i."""
    acts = [x.astype(np.float32)]
    for i in range(len(layers)):
        acts.append(run_float(layers[i:i + 1], params, prefix, acts[-1], start=i))
    return acts


def calibration_images(calib_dir, n_images=12, crop=256, seed=0):
    from PIL import Image
    files = sorted(glob.glob(os.path.join(calib_dir, "**", "*.png"), recursive=True)
                   + glob.glob(os.path.join(calib_dir, "**", "*.jpg"), recursive=True))
    if not files:
        raise SystemExit(f"no calibration images under {calib_dir}")
    rng = np.random.default_rng(seed)
    out = []
    for f in rng.choice(files, size=min(n_images, len(files)), replace=False):
        im = np.asarray(Image.open(f).convert("RGB"))
        h, w = im.shape[:2]
        c = min(crop, h, w) // 64 * 64
        y0, x0 = rng.integers(h - c + 1), rng.integers(w - c + 1)
        out.append(np.ascontiguousarray(im[y0:y0 + c, x0:x0 + c]))
    return out


def calibrate(arch, params, images):
    """Largest |value| of each traced tensor over images x CALIB_BETAS, plus
    IGDN factor maxima (beta + Gamma|x|)."""
    stats = {}

    def upd(key, v):
        stats[key] = max(stats.get(key, 0.0), float(np.max(np.abs(v))) if v.size else 0.0)

    for im in images:
        for beta in CALIB_BETAS:
            t = float_forward(arch, params, im, beta)
            for net in ("hs", "cm", "ep", "gs", "pf"):
                for i, a in enumerate(t.get(net, ())):
                    upd((net, i), a)
            for k in ("mu", "s", "mu_ctx", "s_ctx"):
                if k in t:
                    upd(k.split("_")[0], t[k])          # mu_ctx -> mu, s_ctx -> s
            upd("y_hat", t["y_hat"])
            # IGDN factors
            for i, layer in enumerate(arch["g_s"]):
                if layer[0] == "igdn":
                    x = t["gs"][i]
                    beta_g = params[f"g_s.{i}.beta_p"] ** 2 + 1e-6
                    gamma = params[f"g_s.{i}.gamma_p"] ** 2
                    upd(("igdn_n", i), np.abs(x) @ gamma.T + beta_g)
    return stats


def integerize(arch, params, stats, weight_bits):
    """Quantize h_s, g_cm, g_ep, g_s and g_pf; returns (layer descriptions, arrays, precisions)."""
    arrays = {}
    desc = {}
    prec = {}
    M = arch["M"]
    p_mu = min(precision_for(stats["mu"], headroom=2.0), 14)
    p_s = min(precision_for(stats["s"], headroom=2.0), 8)
    p_y = min(precision_for(stats["y_hat"], headroom=2.0), 14)
    p_x = min(precision_for(stats[("gs", len(arch["g_s"]))], headroom=2.0), 14)
    prec.update(p_mu=p_mu, p_s=p_s, p_y=p_y, p_x=p_x, p_z=0)
    full = (-32768, 32767)
    stages = [("h_s", "hs", 0, (-(1 << (Z_BITS - 1)), (1 << (Z_BITS - 1)) - 1))]
    if A.has_context(arch):
        # g_ep reads (mu, s, c): three precisions, one per input-channel group
        stages += [("g_cm", "cm", p_y, full), ("g_ep", "ep", None, full)]
    stages += [("g_s", "gs", p_y, full)]
    if A.has_postfilter(arch):
        # g_pf reads (x, r) at the precision of g_s's output and adds its output to x: p_x in and out
        stages += [("g_pf", "pf", None, full)]
    for net, key, p_in, in_range in stages:
        if net == "g_ep":
            p_in = np.array([prec["p_mu"]] * M + [prec["p_s"]] * M + list(desc["g_cm"][-1]["p_out"]), np.int64)
        if net == "g_pf":
            p_in = prec["p_x"]
        layers = arch[net]
        ops = []
        p_cur = p_in
        lo_cur, hi_cur = in_range
        i = 0
        while i < len(layers):
            layer = layers[i]
            name = f"{net}.{i}"
            if layer[0] == "conv":
                # fuse a following d2s and/or relu
                j = i + 1
                d2s = None
                relu = False
                while j < len(layers) and layers[j][0] in ("d2s", "relu"):
                    if layers[j][0] == "d2s":
                        d2s = layers[j][1]
                    else:
                        relu = True
                    j += 1
                last = j == len(layers)
                cout = layer[2]
                w = params[f"{name}.weight"]
                if np.ndim(p_cur):
                    # inputs of several precisions: scale each input channel's weights to the
                    # finest, so that every product lands at one precision (clause 7.1)
                    P = int(np.max(p_cur))
                    w = w * (2.0 ** (P - p_cur))[None, :, None, None]
                    p_list, p_cur = [int(v) for v in p_cur], P
                else:
                    p_list = None
                # the weights' range caps the output precision (W8 above all)
                cap = max_output_precision(w, p_cur, weight_bits)
                if last and net in ("h_s", "g_ep"):
                    if net == "h_s":
                        prec["p_mu"] = int(min(prec["p_mu"], cap[:M].min()))
                        prec["p_s"] = int(min(prec["p_s"], cap[M:].min()))
                    # g_ep's corrections add to mu and s: the same precisions
                    p_out = np.array([prec["p_mu"]] * M + [prec["p_s"]] * M, np.int32)
                elif last and net == "g_s":
                    prec["p_x"] = int(min(prec["p_x"], cap.min()))
                    p_out = np.full(cout, prec["p_x"], np.int32)
                elif last and net == "g_pf":
                    if cap.min() < prec["p_x"]:
                        raise ValueError(f"{name}: the post-filter's output cannot reach p_x = {prec['p_x']} "
                                         f"with {weight_bits}-bit weights (at most {int(cap.min())})")
                    p_out = np.full(cout, prec["p_x"], np.int32)
                else:
                    p_out = np.full(cout, min(precision_for(stats[(key, j)], headroom=2.0), 14, int(cap.min())),
                                    np.int32)
                lo, hi = (0 if relu else -32768), 32767
                wq, bq, shift = quantize_conv(name, w, params[f"{name}.bias"],
                                              p_cur, p_out, lo_cur, hi_cur, weight_bits)
                arrays[f"{net}.{i}.w"], arrays[f"{net}.{i}.b"], arrays[f"{net}.{i}.shift"] = wq, bq, shift
                ops.append({"op": "conv", "index": i, "lo": lo, "hi": hi, "in_lo": lo_cur, "in_hi": hi_cur,
                            "p_in": p_list or int(p_cur), "p_out": [int(v) for v in p_out]})
                if d2s:
                    ops.append({"op": "d2s", "r": int(d2s)})
                p_cur = int(p_out[0]) if len(set(p_out.tolist())) == 1 else None
                lo_cur, hi_cur = lo, hi
                i = j
            elif layer[0] == "igdn":
                C = layer[1]
                p_n = min(precision_for(stats[("igdn_n", i)], headroom=2.0), 14)
                p_o = min(precision_for(stats[(key, i + 1)], headroom=2.0), 14)
                beta_g = (params[f"{name}.beta_p"].astype(np.float64) ** 2 + 1e-6)
                gamma = params[f"{name}.gamma_p"].astype(np.float64) ** 2
                gq, bq, rn = quantize_conv(f"{name}.gamma", gamma[:, :, None, None], beta_g, p_cur,
                                           np.full(C, p_n, np.int32), 0, 32767, weight_bits)
                t = p_cur + p_n - p_o
                if not 0 <= t <= 30:
                    raise ValueError(f"{name}: IGDN shift {t} outside [0, 30]")
                arrays[f"{net}.{i}.gamma"], arrays[f"{net}.{i}.beta"], arrays[f"{net}.{i}.r_n"] = gq, bq, rn
                arrays[f"{net}.{i}.t"] = np.full(C, t, np.int32)
                ops.append({"op": "igdn", "index": i, "in_lo": lo_cur, "in_hi": hi_cur, "p_in": int(p_cur),
                            "p_n": int(p_n), "p_out": int(p_o)})
                p_cur = p_o
                lo_cur, hi_cur = -32768, 32767
                i += 1
            else:
                raise ValueError(f"{name}: op {layer[0]!r} cannot start an integer stage")
        desc[net] = ops
    return desc, arrays, prec


def z_tables(arch, params, tail=1e-6, max_half_width=256):
    """Factorized CDF table per z channel: support where the pmf exceeds tail."""
    Z = arch["Z"]
    v = np.arange(-max_half_width, max_half_width + 1, dtype=np.float64)
    vv = np.broadcast_to(v, (Z, v.size))
    upper = factorized_logits_cdf(params, vv + 0.5)
    lower = factorized_logits_cdf(params, vv - 0.5)
    sign = -np.sign(upper + lower)
    pmf = np.abs(sigmoid(sign * upper) - sigmoid(sign * lower))
    rows = []
    for c in range(Z):
        keep = np.flatnonzero(pmf[c] > tail)
        a, b = (keep[0], keep[-1]) if keep.size else (max_half_width, max_half_width)
        rows.append((int(v[a]), pmf[c, a:b + 1]))
    return pack_tables(rows, escape_floor=1e-9)


def write_npz(arrays):
    """An .npz (zip of .npy) with fixed timestamps and order, so that the same
    arrays always give the same bytes -- and the same model_id."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, npy.getvalue())
    return buf.getvalue()


def exp2_table():
    return np.array([round(2.0 ** 30 * 2.0 ** (i / (1 << EXP2_BITS))) for i in range(1 << EXP2_BITS)], np.int64)


def encoder_reference(model_path, out_path, enc):
    """The ``encoder_from`` entry that names ``model_path`` (in the folder of
    ``out_path``) as the holder of the float encoder weights ``enc``
    ({g_a.*, h_a.*: float32}); refused unless its weights are exactly those."""
    from .model import load
    if os.path.dirname(os.path.abspath(model_path)) != os.path.dirname(os.path.abspath(out_path)):
        raise SystemExit(f"--encoder-from {model_path}: must lie in the folder of {out_path}")
    theirs = load(model_path).enc
    if set(theirs) != set(enc) or not all(np.array_equal(theirs[k], v) and theirs[k].dtype == v.dtype
                                          for k, v in enc.items()):
        raise SystemExit(f"--encoder-from {model_path}: its encoder weights are not those of the float weights")
    with open(model_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return {"file": os.path.basename(model_path), "sha256": digest}


def encoder_weights(params):
    """The float analysis weights a model file carries: g_a and h_a, float32."""
    return {k: v.astype(np.float32) for k, v in params.items() if k.startswith(("g_a.", "h_a."))}


def train_params(params):
    """The float parameters a W16 export carries for the trainer alone
    (``train.*`` members, SPEC.md clause 8.5): the factorized density of z,
    which the z tables of clause 8.3 tabulate and cannot give back.  With
    them, :func:`refcodec.nn.dequantize` recovers every float weight from the W16 file,
    and a model ships without a float copy beside it."""
    return {f"{TRAIN_PREFIX}{k}": v.astype(np.float32) for k, v in params.items() if k.startswith("entropy_z.")}


def export_float(float_path, out_path, encoder_from):
    """Write the float weights of ``float_path`` without g_a and h_a, which the
    model file ``encoder_from`` holds (:func:`refcodec.nn.load_float` puts
    them back)."""
    arch, params, meta = load_float(float_path)
    enc = encoder_weights(params)
    meta = {**meta, "encoder_from": encoder_reference(encoder_from, out_path, enc)}
    rest = {k: v for k, v in params.items() if k not in enc}
    np.savez_compressed(out_path, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **rest)
    return out_path


def export(float_path, out_path, calib_dir, weight_bits=16, n_images=12, encoder_from=None):
    arch, params, meta = load_float(float_path)
    enc = encoder_weights(params)
    ref = encoder_reference(encoder_from, out_path, enc) if encoder_from else None
    images = calibration_images(calib_dir, n_images=n_images)
    stats = calibrate(arch, params, images)
    desc, arrays, prec = integerize(arch, params, stats, weight_bits)
    sigmas = [A.sigma_of_index(k) for k in range(arch["sigma_levels"])]
    arrays["y_cdf"], arrays["y_cdf_len"], arrays["y_offset"] = gaussian_tables(sigmas)
    arrays["z_cdf"], arrays["z_cdf_len"], arrays["z_offset"] = z_tables(arch, params)
    arrays["gain_log2_fp"] = np.round(params["log2_gain"].astype(np.float64) * 65536).astype(np.int32)
    arrays["exp2_table"] = exp2_table()
    if ref is None:
        arrays.update({f"enc.{k}": v for k, v in enc.items()})
    if weight_bits == 16:
        arrays.update(train_params(params))
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch, "nets": desc, "precisions": prec,
        "weight_bits": weight_bits, "ig_p": IG_P, "exp2_bits": EXP2_BITS, "z_bits": Z_BITS,
        "train_step": meta.get("step"), "calibration": {"images": len(images), "betas": list(CALIB_BETAS)},
    }
    if ref is not None:
        header["encoder_from"] = ref
    arrays["__header__"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)
    with open(out_path, "wb") as f:
        f.write(write_npz(arrays))
    # the encoder's prior for bit-rate matching: mean ln(bpp) against beta on
    # the calibration images, measured with the integer model just written
    header["rate_curve"] = rate_curve(out_path, images)
    arrays["__header__"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)
    with open(out_path, "wb") as f:
        f.write(write_npz(arrays))
    return out_path


RATE_CURVE_BETAS = tuple(k / 8 for k in range(9))


def rate_curve(model_path, images):
    """[[beta, mean ln(bpp)], ...] over ``images`` (rate-only estimates)."""
    from .encoder import Analysis
    from .model import Model
    from .ratecontrol import BETA_CODE_MAX, RateCounter, estimate_bpp
    m = Model(model_path)
    counter = RateCounter(m)
    logs = np.zeros(len(RATE_CURVE_BETAS))
    for rgb in images:
        an = Analysis(rgb, m)
        S = an.default_substreams()
        logs += [np.log(estimate_bpp(an, counter, int(round(b * BETA_CODE_MAX)), S)) for b in RATE_CURVE_BETAS]
    logs /= len(images)
    return [[b, round(float(v), 4)] for b, v in zip(RATE_CURVE_BETAS, logs)]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.export", description=__doc__.split("\n")[0])
    p.add_argument("float_weights")
    p.add_argument("out")
    p.add_argument("--weight-bits", type=int, choices=(8, 16), default=16)
    p.add_argument("--calib", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                    "train"))
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--encoder-from", default=None, metavar="W16.npz",
                   help="leave the float encoder weights out: they are those of this model file, which must "
                        "lie in OUT's folder (a W8 export beside its W16 one)")
    p.add_argument("--float", action="store_true",
                   help="write float weights (what the trainer resumes from) without g_a and h_a, which "
                        "--encoder-from holds, instead of a model file")
    args = p.parse_args(argv)
    if args.float:
        if not args.encoder_from:
            p.error("--float needs --encoder-from")
        export_float(args.float_weights, args.out, args.encoder_from)
    else:
        export(args.float_weights, args.out, args.calib, args.weight_bits, args.images, args.encoder_from)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
