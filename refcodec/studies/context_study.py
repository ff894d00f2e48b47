"""What the checkerboard context buys: the same model, with and without it.

``python -m refcodec.studies.context_study [--kodak DIR] [--images N] [--betas 0,0.25,0.5,0.75,1] [--json OUT]``

For each image and beta it codes the picture twice with the shipped W16A16
model -- once with the checkerboard context (SPEC.md clause 6.4, the
default), once without (``context=False``: the hyperprior's mean and scale
everywhere) -- and decodes both real streams with the integer decoder.  The
analysis, the transforms and the rate parameter are the same, so the
difference is the tool alone.  Prints the mean RD points, the BD-rate of the
context against none (pchip; PSNR-RGB and PSNR-Y) and the per-beta rate
change at equal beta (the reconstruction differs only by where the
non-anchors round).
"""

import argparse
import glob
import json
import os
import time

import numpy as np
from PIL import Image

from .. import decoder, encoder, model as model_mod
from ..eval.bdrate import bd_rate
from ..eval.metrics import psnr, psnr_ycbcr

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.context_study", description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--betas", default="0,0.25,0.5,0.75,1")
    p.add_argument("--model", default=None, help="model file (default: the shipped W16A16 model)")
    p.add_argument("--json", default=None, help="write every point here")
    args = p.parse_args(argv)

    m = model_mod.load(args.model)
    if not m.context:
        raise SystemExit("this model has no context networks")
    betas = [float(b) for b in args.betas.split(",")]
    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))[:args.images]
    pts = {k: [[] for _ in betas] for k in ("none", "context")}
    t0 = time.time()
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        npx = rgb.shape[0] * rgb.shape[1]
        for k, ctx in (("none", False), ("context", True)):
            an = encoder.Analysis(rgb, m, context=ctx)
            for i, b in enumerate(betas):
                data = an.stream(encoder.beta_to_code(b))
                out = decoder.decode(data, models=[m])
                pts[k][i].append((8 * len(data) / npx, psnr(rgb, out), psnr_ycbcr(rgb, out)[0]))
        print(f"# {os.path.basename(f)} ({time.time() - t0:.0f} s)", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"betas": betas, "images": [os.path.basename(f) for f in files],
                       "points": {k: [[list(map(float, q)) for q in v] for v in pts[k]] for k in pts}}, fh)
    mean = {k: np.array([np.mean(v, axis=0) for v in pts[k]]) for k in pts}
    print(f"\nKodak, {len(files)} images, betas {betas}: mean (bpp, PSNR-RGB, PSNR-Y)")
    for k in pts:
        print(f"{k:8s} " + "  ".join(f"({q[0]:.4f}, {q[1]:.2f}, {q[2]:.2f})" for q in mean[k]))
    for col, name in ((1, "PSNR-RGB"), (2, "PSNR-Y")):
        print(f"BD-rate context vs none, {name}: "
              f"{bd_rate(mean['none'][:, 0], mean['none'][:, col], mean['context'][:, 0], mean['context'][:, col]):+.2f} %")
    print("rate change at equal beta: " + ", ".join(
        f"beta {b}: {100 * (c[0] / n[0] - 1):+.1f} % ({c[1] - n[1]:+.2f} dB)"
        for b, n, c in zip(betas, mean["none"], mean["context"])))


if __name__ == "__main__":
    main()
