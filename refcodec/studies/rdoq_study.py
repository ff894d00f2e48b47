"""What rate-aware rounding of y buys, and at which rate weight.

``python -m refcodec.studies.rdoq_study [--kodak DIR] [--images N | --pick 2,5,8] [--values auto,0.02,0.04]
[--betas ...] [--per-beta]``

For each image the analysis runs once; then for each rate weight C (and for
C = 0, rounding to nearest, the reference) and each beta the encoder codes a
real stream (``encoder.Analysis(rdoq=C)``) and takes the decoder's picture
(``Analysis.reconstruct``, identical to decoding the stream: tests check it).
Prints the mean RD points per C and the BD-rate (pchip, PSNR-RGB and
PSNR-Y, mean over images) of each C against rounding to nearest.  The images
are every (24 / N)-th Kodak image, as the trainer's evaluation picks them,
or the ones ``--pick`` numbers (1-based, in name order).

A value may be a knot list instead of a constant, ``0.3:0.045/0.5:0.03/0.9:0.01``
(beta:C pairs, linear between them, as ``encoder.RDOQ_KNOTS``); ``auto`` is
the encoder's own knots.  ``--per-beta`` also codes a dense curve of
rounding to nearest (beta 0.25, 0.275, ... 1) and prints, per beta, the
rate each value saves at equal PSNR-RGB on that curve (mean over images):
the table the knots are read from.
"""

import argparse
import glob
import os
import time

import numpy as np
from PIL import Image

from .. import encoder, model as model_mod
from ..eval.bdrate import bd_rate
from ..eval.metrics import psnr, psnr_ycbcr

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.rdoq_study", description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--pick", default=None, help="Kodak numbers instead, e.g. 2,5,8 (1-based, in name order)")
    p.add_argument("--values", default="auto,0.02,0.04,0.06",
                   help="rate weights C, 'auto' the encoder's default (a weight per beta), or knot lists "
                        "beta:C/beta:C/...")
    p.add_argument("--betas", default="0.35,0.45,0.55,0.65,0.75,0.85,0.95")
    p.add_argument("--per-beta", action="store_true",
                   help="also the rate saved at each beta against a dense curve of rounding to nearest")
    p.add_argument("--model", default=None, help="model file (default: the shipped W16A16 model)")
    args = p.parse_args(argv)

    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))
    if not files:
        raise SystemExit(f"no PNG images in {args.kodak}")
    if args.pick:
        files = [files[int(i) - 1] for i in args.pick.split(",")]
    else:
        files = files[::max(1, len(files) // args.images)][:args.images]
    values = [0.0] + [v for v in (_value(v) for v in args.values.split(",")) if v != 0.0]
    betas = [float(b) for b in args.betas.split(",")]
    dense = [round(0.25 + 0.025 * i, 3) for i in range(31)]
    m = model_mod.load(args.model)
    t0 = time.time()
    # pts[C][image] = [(bpp, psnr_rgb, psnr_y) per beta]
    pts = {c: [] for c in values}
    near = []                                          # the dense curve of rounding to nearest, per image
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        npx = rgb.shape[0] * rgb.shape[1]
        base = encoder.Analysis(rgb, m, rdoq=0)

        def point(code, rdoq):
            base.rdoq = _weight(rdoq, code)            # the analysis is shared; only the rounding changes
            n = len(base.stream(code))
            rec = base.reconstruct(code)
            return 8 * n / npx, psnr(rgb, rec), psnr_ycbcr(rgb, rec)[0]

        for c in values:
            pts[c].append([point(encoder.beta_to_code(b), c) for b in betas])
        if args.per_beta:
            near.append([point(encoder.beta_to_code(b), 0.0) for b in dense])
        print(f"# {os.path.basename(f)} done, {time.time() - t0:.0f} s", flush=True)
    ref = np.array(pts[0.0])
    print(f"rate-aware rounding vs rounding to nearest: {len(files)} Kodak images x {len(betas)} betas "
          f"({args.betas}), model {m.model_id.hex()}")
    print("C       BD PSNR-RGB  BD PSNR-Y   mean points (bpp / PSNR-RGB)")
    for c in values:
        r = np.array(pts[c])
        bd = [bd_rate(ref[i, :, 0], ref[i, :, 1], r[i, :, 0], r[i, :, 1]) for i in range(len(files))]
        bdy = [bd_rate(ref[i, :, 0], ref[i, :, 2], r[i, :, 0], r[i, :, 2]) for i in range(len(files))]
        curve = " ".join(f"{a:.3f}/{q:.2f}" for a, q, _ in r.mean(0))
        print(f"{_name(c):<7} {np.mean(bd):+9.2f} % {np.mean(bdy):+9.2f} %   {curve}")
    if args.per_beta:
        print("rate at equal PSNR-RGB against the dense curve of rounding to nearest (%, mean over images)")
        print("C       " + " ".join(f"{b:>6}" for b in betas))
        for c in values:
            save = np.mean([[rate_change(near[i], bpp, q) for bpp, q, _ in pts[c][i]] for i in range(len(files))], 0)
            print(f"{_name(c):<7} " + " ".join(f"{100 * s:+6.2f}" for s in save))


def rate_change(curve, bpp, q):
    """bpp / (the rate of ``curve``, a list of (bpp, PSNR, ...), at PSNR q) - 1;
    log-rate interpolated linearly in PSNR, clamped at the curve's ends."""
    c = np.array([(b, p) for b, p, *_ in curve])
    o = np.argsort(c[:, 1])
    return bpp / np.exp(np.interp(q, c[o, 1], np.log(c[o, 0]))) - 1


def _value(v):
    """'auto', a constant C, or a knot list 'beta:C/beta:C/...' (a tuple of pairs)."""
    if v == "auto":
        return v
    if ":" in v:
        return tuple(tuple(float(x) for x in k.split(":")) for k in v.split("/"))
    return float(v)


def _weight(c, code):
    if c == "auto":
        return None                                    # the encoder's own knots
    if isinstance(c, tuple):
        return float(np.interp(code / 65535, [b for b, _ in c], [w for _, w in c]))
    return c


def _name(c):
    return "/".join(f"{b:g}:{w:g}" for b, w in c) if isinstance(c, tuple) else str(c)


if __name__ == "__main__":
    main()
