"""The trainer's Kodak measure of float weights, outside a run: ``python -m
refcodec.train.measure FLOAT.npz [...] --ref REF.npz [--rdoq-ste] [--eval-betas B,...]``.

Each file's curve on the trainer's 8 Kodak pictures (``--eval-images``) at the
given betas, rounded to nearest or as the encoder rounds (``--rdoq-ste``),
its score, and with ``--ref`` its BD-rate (PSNR-RGB, pchip) against the
reference's curve: what ``refcodec.train --bd-ref`` logs at each evaluation,
for weights already exported (candidates, checkpoints' best.npz). Needs
PyTorch (the train extra).
"""

import argparse
import glob
import os

import numpy as np
import torch
from PIL import Image

from .__main__ import SHARED, curve_bd_rate, curve_of


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.train.measure", description=__doc__.split("\n\n")[0])
    p.add_argument("weights", nargs="+")
    p.add_argument("--ref", default=None, metavar="REF.npz")
    p.add_argument("--rdoq-ste", action="store_true", help="round y as the encoder does (rate-aware)")
    p.add_argument("--eval-betas", default="0.35,0.5,0.65,0.8,1")
    p.add_argument("--kodak", default=os.path.join(SHARED, "kodak"))
    p.add_argument("--eval-images", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    betas = [float(b) for b in args.eval_betas.split(",")]
    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))
    if not files:
        p.error(f"no .png pictures in {args.kodak}")
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files[::max(1, len(files) // args.eval_images)]]
    images = images[:args.eval_images]
    ref = curve_of(args.ref, images, betas, args.rdoq_ste) if args.ref else None
    for w in ([args.ref] if args.ref else []) + args.weights:
        rows = ref if w == args.ref else curve_of(w, images, betas, args.rdoq_ste)
        bd = "" if ref is None else f" bd-rate {curve_bd_rate(ref, rows):+.3f} %"
        print(f"{w}: score {np.mean([r[3] for r in rows]):.4f}{bd} "
              + " ".join(f"[beta {b:.2f}: {bpp:.4f} bpp {ps:.3f} dB]" for b, bpp, ps, _ in rows), flush=True)


if __name__ == "__main__":
    main()
