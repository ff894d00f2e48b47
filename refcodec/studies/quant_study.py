"""What integers cost: Kodak RD of the float model and of the integer codecs.

``python -m refcodec.studies.quant_study [--kodak DIR] [--betas 0,0.25,0.5,0.75,1] [--images N]``

For every image and beta it measures four decoders of the same trained
weights:

* ``float``   -- float h_s (with the float context networks g_cm and g_ep
  where the model has them) and g_s; the rate counted with the same integer
  tables (float sigma index rounded to the nearest row), container and
  coder overhead as the codec's;
* ``int-entropy`` -- the real stream of the W16A16 codec (integer h_s,
  integer tables, rANS) decoded by the *float* g_s: isolates the integer
  entropy network and the coder;
* ``W16A16``, ``W8A16`` -- the real streams, decoded by the integer decoder;
* ``codec`` -- the W16A16 codec as it ships: its encoder's rate-aware
  rounding of y (encoder.RDOQ_KNOTS) instead of rounding to nearest.

The first four round y to nearest, as the float reference does, so that
they differ by the integer networks alone.  Prints mean RD points and
BD-rates (pchip, PSNR-RGB and PSNR-Y): each integer variant against the
float decoder, the codec against W16A16 (what the rounding buys), and the
codec against the classical and learned anchors of ../shared/anchors.
"""

import argparse
import glob
import json
import os
import time

import numpy as np
from PIL import Image
from .. import arch as A
from .. import decoder, encoder, model as model_mod
from ..nn import run_float
from ..ratecontrol import RateCounter, _fixed_bytes
from ..eval.bdrate import bd_rate
from ..eval.metrics import ms_ssim, psnr, psnr_ycbcr

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")


def float_decode(rgb, an, beta, params, arch, counter, fixed_bytes):
    """Float reference: float h_s (means, sigma index) and float g_s.  Its rate
    is counted like the codec's: the same integer tables (the float sigma
    index rounded to the nearest row), the same container and coder overhead
    -- so that the comparison isolates the integer networks."""
    M = arch["M"]
    zr = 1 << 7
    out = run_float(arch["h_s"], params, "h_s", np.clip(an.z_hat, -zr, zr - 1).astype(np.float32))
    mu, s = out[..., :M], out[..., M:]
    from ..export import gain_log2
    lg = gain_log2(arch, params, beta)
    g = 2.0 ** lg
    q = np.round((an.y - mu) * g)
    if an.context:
        from ..export import float_context
        mu, s, _, _ = float_context(arch, params, mu + q / g, mu, s)
        q = np.round((an.y - mu) * g)
    rows = np.clip(np.round(s + A.SIGMA_PER_OCTAVE * lg), 0, arch["sigma_levels"] - 1).astype(np.int64)
    bits = counter.bits(np.clip(q, -32768, 32767).astype(np.int64).reshape(-1), rows.reshape(-1))
    from ..ratecontrol import CODER_EXCESS
    nbytes = fixed_bytes + (1 + CODER_EXCESS) * bits / 8
    y_hat = mu + q / g
    return gs_float_rgb(y_hat, params, arch, rgb.shape, beta), 8 * nbytes / (rgb.shape[0] * rgb.shape[1])


def gs_float_rgb(y_hat, params, arch, shape, beta):
    """Float g_s (and, with the post-filter, g_pf told the rate at beta) to 8-bit RGB."""
    x = run_float(arch["g_s"], params, "g_s", y_hat.astype(np.float32))
    if A.has_postfilter(arch):
        from ..export import gain_log2
        r = np.full(x.shape[:2] + (1,), gain_log2(arch, params, beta).mean() / A.PF_RATE_DIV, np.float32)
        x = x + run_float(arch["g_pf"], params, "g_pf", np.concatenate([x, r], axis=-1))
    x[..., 0] += 0.5
    rgb = np.clip(np.round(x @ np.array(A.YCBCR_TO_RGB, np.float32).T * 255), 0, 255).astype(np.uint8)
    return rgb[:shape[0], :shape[1]]


def metrics(ref, out, bpp):
    y, cb, cr = psnr_ycbcr(ref, out)
    return {"bpp": bpp, "psnr_rgb": psnr(ref, out), "psnr_y": y, "msssim": ms_ssim(ref, out)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.quant_study", description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--anchors", default=os.path.join(SHARED, "anchors"))
    p.add_argument("--betas", default="0,0.25,0.5,0.75,1")
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--w16", default=model_mod.DEFAULT_MODEL)
    p.add_argument("--w8", default=model_mod.DEFAULT_W8)
    p.add_argument("--float", dest="float_weights", default=model_mod.float_weights_of(model_mod.DEFAULT_MODEL))
    p.add_argument("--json", default=None, help="write all points here")
    args = p.parse_args(argv)

    from ..export import load_float
    arch, params, _ = load_float(args.float_weights)
    m16, m8 = model_mod.load(args.w16), model_mod.load(args.w8)
    betas = [float(b) for b in args.betas.split(",")]
    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))[:args.images]
    names = ("float", "int-entropy", "W16A16", "W8A16", "codec")
    pts = {n: {b: [] for b in betas} for n in names}
    t0 = time.time()
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        npx = rgb.shape[0] * rgb.shape[1]
        an16 = encoder.Analysis(rgb, m16, rdoq=0)      # rounding to nearest, as float_decode
        an8 = encoder.Analysis(rgb, m8, rdoq=0)
        counter = RateCounter(m16)
        S = an16.default_substreams()
        fixed = _fixed_bytes(an16, S)
        for b in betas:
            code = encoder.beta_to_code(b)
            out_f, bpp_f = float_decode(rgb, an16, b, params, arch, counter, fixed)
            pts["float"][b].append(metrics(rgb, out_f, bpp_f))
            data16 = an16.stream(code)
            pic = decoder.picture(data16)
            y_hat_q, *_ = decoder.decode_latents(pic, m16, "cpu")
            out_e = gs_float_rgb(y_hat_q.astype(np.float32) / (1 << m16.prec["p_y"]), params, arch, rgb.shape, b)
            pts["int-entropy"][b].append(metrics(rgb, out_e, 8 * len(data16) / npx))
            pts["W16A16"][b].append(metrics(rgb, decoder.decode(data16, models=[m16]), 8 * len(data16) / npx))
            data8 = an8.stream(code)
            pts["W8A16"][b].append(metrics(rgb, decoder.decode(data8, models=[m8]), 8 * len(data8) / npx))
            an16.rdoq = None                            # the shipped encoder's rounding
            data = an16.stream(code)
            pts["codec"][b].append(metrics(rgb, decoder.decode(data, models=[m16]), 8 * len(data) / npx))
            an16.rdoq = 0
        print(f"# {os.path.basename(f)} done ({time.time() - t0:.0f} s)", flush=True)

    mean = {n: [{k: float(np.mean([d[k] for d in pts[n][b]])) for k in ("bpp", "psnr_rgb", "psnr_y", "msssim")}
                for b in betas] for n in names}
    print(f"\nKodak, {len(files)} images, betas {betas}: mean RD points (bpp, PSNR-RGB, PSNR-Y, MS-SSIM)")
    for n in names:
        print(f"{n:12s} " + "  ".join(f"({q['bpp']:.3f}, {q['psnr_rgb']:.2f}, {q['psnr_y']:.2f}, {q['msssim']:.4f})"
                                      for q in mean[n]))

    def curve(n, key):
        return [q["bpp"] for q in mean[n]], [q[key] for q in mean[n]]

    print("\nBD-rate (pchip) against the float decoder:")
    for n in names[1:4]:
        print(f"  {n:12s} PSNR-RGB {bd_rate(*curve('float', 'psnr_rgb'), *curve(n, 'psnr_rgb')):+.2f} %   "
              f"PSNR-Y {bd_rate(*curve('float', 'psnr_y'), *curve(n, 'psnr_y')):+.2f} %")
    print(f"  g_s only     PSNR-RGB {bd_rate(*curve('int-entropy', 'psnr_rgb'), *curve('W16A16', 'psnr_rgb')):+.2f} %"
          " (W16A16 against int-entropy)")
    print(f"  codec        PSNR-RGB {bd_rate(*curve('W16A16', 'psnr_rgb'), *curve('codec', 'psnr_rgb')):+.2f} %   "
          f"PSNR-Y {bd_rate(*curve('W16A16', 'psnr_y'), *curve('codec', 'psnr_y')):+.2f} % "
          "(rate-aware rounding against W16A16 rounding to nearest)")
    if os.path.isdir(args.anchors):
        rd = json.load(open(os.path.join(args.anchors, "kodak_rd.json")))
        ca = json.load(open(os.path.join(args.anchors, "compressai_kodak.json")))
        print("\nBD-rate (PSNR-RGB) against the anchors (negative = fewer bits than the anchor): "
              "the codec (W16A16, rate-aware rounding), and W16A16 rounding to nearest")
        for k in ("vvenc_ai_420", "x265_ai_444", "avif_444", "webp", "jxl", "jpeg"):
            a = rd[k]
            ab = [q['bpp'] for q in a], [q['psnr_rgb'] for q in a]
            print(f"  vs {k:14s} {bd_rate(*ab, *curve('codec', 'psnr_rgb')):+.1f} %   "
                  f"({bd_rate(*ab, *curve('W16A16', 'psnr_rgb')):+.1f} %)")
        hp = ca["8bit-decoded/kodak/compressai-bmshj2018-hyperprior_mse_ans_cuda"]["points"]
        hb = [q['bpp'] for q in hp], [q['psnr_rgb'] for q in hp]
        print(f"  vs bmshj2018-hyperprior (CompressAI) {bd_rate(*hb, *curve('codec', 'psnr_rgb')):+.1f} %   "
              f"({bd_rate(*hb, *curve('W16A16', 'psnr_rgb')):+.1f} %)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"betas": betas, "mean": mean}, f, indent=1)


if __name__ == "__main__":
    main()
