"""What the transforms can reconstruct at all: ``python -m refcodec.studies.ceiling_study``.

Issue 19 asks for 36.5 dB PSNR-RGB at 1 bpp.  Whatever the entropy model
does, the codec cannot reconstruct better than its synthesis does from
latents that are not rounded at all; this study measures that ceiling on
every Kodak image, in float (PyTorch, the ``train`` extra), for the float
weights of a model (default: those the default model was exported from):

- ``g_a``: PSNR-RGB of the synthesis (g_s, then the post-filter told the
  rate of ``--beta``) of y = g_a(x), y not rounded; beside it the rate the
  entropy model gives the rounded latents at that beta (likelihoods,
  without the rate-aware rounding), so the ceiling reads against the bits;
- ``--optimize N``: on a 256 x 256 centre crop of the pictures named by
  ``--pick``, y itself optimized N Adam steps for the squared error alone
  (no rate, no rounding), starting from g_a's: the synthesis's own ceiling,
  whatever an analysis could give it.  A gap between the two is what a
  stronger (encoder-only) analysis could win at high rates; none, and the
  decoder is the limit.
"""

import argparse
import glob
import math
import os

import numpy as np
from PIL import Image

from .. import model as model_mod

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")


def psnr_of(torch, x_hat, x):
    """PSNR-RGB of two 1 x 3 x H x W tensors in [0, 1], rounded to 8 bits as the codec outputs."""
    err = torch.round(x_hat.clamp(0, 1) * 255) - torch.round(x * 255)
    return 10 * math.log10(255 ** 2 / max(float((err ** 2).mean()), 1e-10))


def ceiling(net, torch, rgb, beta):
    """(PSNR-RGB of the unrounded synthesis, bpp of the rounded latents) at beta."""
    x = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    b = torch.tensor([float(beta)])
    with torch.no_grad():
        y = net.g_a(net.to_ycbcr(x))
        x_hat = net.to_rgb(net.synthesis(y, net.gain(b)[:, :, None, None]))
        _, bits_y, bits_z = net.from_latents(y, net.h_a(y), b, noise=False)
    return psnr_of(torch, x_hat, x), float((bits_y + bits_z).sum()) / (rgb.shape[0] * rgb.shape[1])


def optimized_ceiling(net, torch, rgb, beta, iters, lr=0.01, log=None):
    """PSNR-RGB of the synthesis from y optimized for the squared error alone,
    from g_a's y; ``log(it, psnr)`` at a few iterations on the way."""
    x = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    lg = net.gain(torch.tensor([float(beta)]))[:, :, None, None]
    with torch.no_grad():
        y = net.g_a(net.to_ycbcr(x))
    y = y.clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=lr)
    marks = {max(1, iters // 8), max(1, iters // 2), iters}
    for it in range(1, iters + 1):
        loss = ((net.to_rgb(net.synthesis(y, lg)) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log is not None and it in marks:
            with torch.no_grad():
                log(it, psnr_of(torch, net.to_rgb(net.synthesis(y, lg)), x))
    with torch.no_grad():
        return psnr_of(torch, net.to_rgb(net.synthesis(y, lg)), x)


def centre_crop(rgb, size=256):
    h, w = rgb.shape[:2]
    i, j = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return rgb[i:i + size, j:j + size]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.ceiling_study", description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--float", dest="float_weights", default=None,
                   help="float weights (default: those of the default model)")
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--optimize", type=int, default=0, metavar="N", help="also optimize y for N steps on crops")
    p.add_argument("--pick", default="1,13", help="pictures of the optimized ceiling, by place from 1")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    from ..refine import torch_model
    weights = args.float_weights or model_mod.float_weights_of(model_mod.DEFAULT_MODEL)
    net, torch = torch_model(weights)
    if args.threads:
        torch.set_num_threads(args.threads)
    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))
    if not files:
        raise SystemExit(f"no pictures in {args.kodak}")
    print(f"{os.path.basename(weights)}, beta {args.beta}: the synthesis of unrounded g_a latents\n")
    print("| image | ceiling PSNR-RGB | bpp at this beta |\n|---|---:|---:|")
    rows = []
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        rgb = rgb[:rgb.shape[0] // 64 * 64, :rgb.shape[1] // 64 * 64]
        rows.append(ceiling(net, torch, rgb, args.beta))
        print(f"| {os.path.basename(f)} | {rows[-1][0]:.2f} dB | {rows[-1][1]:.3f} |", flush=True)
    mean = np.mean(rows, axis=0)
    print(f"| mean | **{mean[0]:.2f} dB** | {mean[1]:.3f} |")
    if args.optimize:
        print(f"\n256 x 256 centre crops, y optimized {args.optimize} Adam steps for the squared error alone:\n")
        print("| image | g_a's y | optimized y | gain | on the way (step: dB) |\n|---|---:|---:|---:|---|")
        for i in (int(v) for v in args.pick.split(",")):
            rgb = centre_crop(np.asarray(Image.open(files[i - 1]).convert("RGB")))
            start = ceiling(net, torch, rgb, args.beta)[0]
            way = []
            best = optimized_ceiling(net, torch, rgb, args.beta, args.optimize,
                                     log=lambda it, q: way.append(f"{it}: {q:.2f}"))
            print(f"| {os.path.basename(files[i - 1])} | {start:.2f} dB | {best:.2f} dB | {best - start:+.2f} dB | "
                  f"{', '.join(way)} |", flush=True)


if __name__ == "__main__":
    main()
