"""What rate-aware rounding of y buys, and at which rate weight.

``python -m refcodec.studies.rdoq_study [--kodak DIR] [--images N] [--values auto,0.02,0.04] [--betas ...]``

For each image the analysis runs once; then for each rate weight C (and for
C = 0, rounding to nearest, the reference) and each beta the encoder codes a
real stream (``encoder.Analysis(rdoq=C)``) and takes the decoder's picture
(``Analysis.reconstruct``, identical to decoding the stream: tests check it).
Prints the mean RD points per C and the BD-rate (pchip, PSNR-RGB and
PSNR-Y, mean over images) of each C against rounding to nearest.  The images
are every (24 / N)-th Kodak image, as the trainer's evaluation picks them.
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
    p.add_argument("--values", default="auto,0.02,0.04,0.06",
                   help="rate weights C, 'auto' the encoder's default (a weight per beta)")
    p.add_argument("--betas", default="0.35,0.45,0.55,0.65,0.75,0.85,0.95")
    p.add_argument("--model", default=None, help="model file (default: the shipped W16A16 model)")
    args = p.parse_args(argv)

    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))
    if not files:
        raise SystemExit(f"no PNG images in {args.kodak}")
    files = files[::max(1, len(files) // args.images)][:args.images]
    # "auto": the encoder's default, the weight of each beta (encoder.rdoq_weight)
    values = [0.0] + [v if v == "auto" else float(v) for v in args.values.split(",") if v == "auto" or float(v) != 0]
    betas = [float(b) for b in args.betas.split(",")]
    m = model_mod.load(args.model)
    t0 = time.time()
    # pts[C][image] = [(bpp, psnr_rgb, psnr_y) per beta]
    pts = {c: [] for c in values}
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        npx = rgb.shape[0] * rgb.shape[1]
        base = encoder.Analysis(rgb, m, rdoq=0)
        for c in values:
            base.rdoq = None if c == "auto" else c     # the analysis is shared; only the rounding changes
            rows = []
            for b in betas:
                code = encoder.beta_to_code(b)
                n = len(base.stream(code))
                rec = base.reconstruct(code)
                rows.append((8 * n / npx, psnr(rgb, rec), psnr_ycbcr(rgb, rec)[0]))
            pts[c].append(rows)
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
        print(f"{c:<7} {np.mean(bd):+9.2f} % {np.mean(bdy):+9.2f} %   {curve}")


if __name__ == "__main__":
    main()
