"""How far the trained analysis transform is from the best latents: encoder-side latent refinement.

``python -m refcodec.studies.refine_study [--kodak DIR] [--images N [--start K]] [--betas ...] [--iters 60]
[--method sga|noise] [--json OUT]``, and ``--merge A.json B.json ...`` to summarize runs over disjoint images
(needs the ``train`` extra: PyTorch)

For each image and beta it codes the picture twice with the shipped W16A16
model: once with the latents of g_a and h_a (the codec's encoder), once with
latents y and z optimized for that picture by refcodec.refine (gradient
descent on the rate-distortion cost at the lambda of that beta, through
stochastic Gumbel annealing or the trainer's noise proxy), started from
g_a's latents.  Both are real streams decoded by the integer decoder;
the decoder and the syntax are the same, only the encoder differs.  It
prints the mean RD points and the BD-rate of the refined encoder against the
plain one (pchip, PSNR-RGB and PSNR-Y): the amortization gap of g_a, which
says how much a better-trained encoder (or an optimizing one) could gain
without touching the decoder.  It also prints the BD-rate of both encoders
against the classical codecs of ../shared/anchors on the same images
(their per-image points, averaged over these images).
"""

import argparse
import glob
import json
import os
import time

import numpy as np
from PIL import Image

from .. import decoder, encoder, model as model_mod
from ..refine import refine_latents
from ..eval.bdrate import bd_rate
from ..eval.metrics import psnr, psnr_ycbcr

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")


def point(rgb, data):
    out = decoder.decode(data)
    py, _, _ = psnr_ycbcr(rgb, out)
    return 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), psnr(rgb, out), py


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.refine_study", description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--images", type=int, default=6, help="this many Kodak images, evenly spaced")
    p.add_argument("--start", type=int, default=0, help="the first of them (--images 12 --start 1: the other half)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="summarize the points of earlier runs (--json) instead of measuring")
    p.add_argument("--betas", default="0.05,0.2,0.4,0.6,0.8")
    p.add_argument("--method", choices=("sga", "noise"), default="sga")
    p.add_argument("--anchors", default=os.path.join(SHARED, "anchors", "kodak_rd_per_image.csv"))
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="write every point here")
    p.add_argument("--w16", default=model_mod.DEFAULT_MODEL)
    p.add_argument("--float", dest="float_weights", default=model_mod.float_weights_of(model_mod.DEFAULT_MODEL))
    args = p.parse_args(argv)

    if args.merge:
        runs = [json.load(open(f)) for f in args.merge]
        betas = runs[0]["betas"]
        if any(r["betas"] != betas or r["method"] != runs[0]["method"] or r["iters"] != runs[0]["iters"]
               for r in runs):
            raise SystemExit("--merge: the runs differ in betas, method or iterations")
        pts = {k: [sum((r["points"][k][i] for r in runs), []) for i in range(len(betas))] for k in ("plain", "refined")}
        names = sum((r["images"] for r in runs), [])
        summarize(pts, betas, names, runs[0]["method"], runs[0]["iters"], runs[0]["lr"], args.anchors)
        return

    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    m16 = model_mod.load(args.w16)
    betas = [float(b) for b in args.betas.split(",")]
    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))
    files = files[args.start::max(1, len(files) // args.images)][:args.images]
    names = [os.path.splitext(os.path.basename(f))[0] for f in files]
    pts = {k: [[] for _ in betas] for k in ("plain", "refined")}
    t0 = time.time()
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        an = encoder.Analysis(rgb, m16)
        line = []
        for i, beta in enumerate(betas):
            code = encoder.beta_to_code(beta)
            a = point(rgb, an.stream(code))
            latents = refine_latents(rgb, m16, beta, args.iters, args.lr, args.method, args.float_weights)
            r = point(rgb, encoder.Analysis(rgb, m16, latents=latents).stream(code))
            pts["plain"][i].append(a)
            pts["refined"][i].append(r)
            line.append(f"beta {beta}: {a[0]:.4f} bpp {a[1]:.2f} dB -> {r[0]:.4f} bpp {r[1]:.2f} dB")
        print(f"# {os.path.basename(f)} ({time.time() - t0:.0f} s): " + "; ".join(line), flush=True)

    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"betas": betas, "method": args.method, "iters": args.iters, "lr": args.lr, "images": names,
                       "points": {k: [[list(map(float, q)) for q in v] for v in pts[k]] for k in pts}}, fh)
    summarize(pts, betas, names, args.method, args.iters, args.lr, args.anchors)


def summarize(pts, betas, names, method, iters, lr, anchors):
    """Mean curves over the images, BD-rate refined vs plain, and both against the anchors."""
    mean = {k: np.array([np.mean(v, axis=0) for v in pts[k]]) for k in pts}
    print(f"\nKodak, {len(names)} images, betas {betas}, {method}, {iters} iterations at lr {lr}: "
          "mean (bpp, PSNR-RGB, PSNR-Y)")
    for k in pts:
        print(f"{k:8s} " + "  ".join(f"({q[0]:.4f}, {q[1]:.2f}, {q[2]:.2f})" for q in mean[k]))
    for col, name in ((1, "PSNR-RGB"), (2, "PSNR-Y")):
        print(f"BD-rate refined vs plain, {name}: "
              f"{bd_rate(mean['plain'][:, 0], mean['plain'][:, col], mean['refined'][:, 0], mean['refined'][:, col]):+.2f} %")
    for codec, curve in anchor_means(anchors, names).items():
        print(f"BD-rate vs {codec:14s} (PSNR-RGB, these images): plain "
              f"{bd_rate(curve[:, 0], curve[:, 1], mean['plain'][:, 0], mean['plain'][:, 1]):+.1f} %, refined "
              f"{bd_rate(curve[:, 0], curve[:, 1], mean['refined'][:, 0], mean['refined'][:, 1]):+.1f} %")


def anchor_means(path, names):
    """{codec: (settings x 2) mean (bpp, PSNR-RGB) over ``names``} from the
    per-image anchor table; codecs lacking one of the images are left out."""
    import csv
    if not os.path.exists(path):
        return {}
    rows = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["image"] in names:
                rows.setdefault(r["codec"], {}).setdefault(r["setting"], []).append(
                    (float(r["bpp"]), float(r["psnr_rgb"])))
    out = {}
    for codec, settings in rows.items():
        pts = [np.mean(v, axis=0) for v in settings.values() if len(v) == len(names)]
        if len(pts) >= 4:
            out[codec] = np.array(sorted(pts, key=lambda q: q[0]))
    return out


if __name__ == "__main__":
    main()
