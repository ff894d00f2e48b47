"""How far the trained analysis transform is from the best latents: encoder-side latent refinement.

``python -m refcodec.eval.refine_study [--kodak DIR] [--images N] [--betas 0.1,0.3,0.5,0.7] [--iters 60]``
(needs the ``train`` extra: PyTorch)

For each image and beta it codes the picture twice with the shipped W16A16
model: once with the latents of g_a and h_a (the codec's encoder), once with
latents y and z optimized for that picture by gradient descent on the
trainer's rate-distortion proxy (rate with additive uniform noise,
distortion through straight-through rounding, lambda of that beta), started
from g_a's latents.  Both are real streams decoded by the integer decoder;
the decoder and the syntax are the same, only the encoder differs.  It
prints the mean RD points and the BD-rate of the refined encoder against the
plain one (pchip, PSNR-RGB and PSNR-Y): the amortization gap of g_a, which
says how much a better-trained encoder (or an optimizing one) could gain
without touching the decoder.
"""

import argparse
import glob
import os
import time

import numpy as np
from PIL import Image

from .. import decoder, encoder, model as model_mod
from ..decoder import grid_sizes
from .bdrate import bd_rate
from .metrics import psnr, psnr_ycbcr

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")


def torch_model(float_weights):
    import torch
    from ..export import load_float
    from ..train.nets import HyperpriorTorch
    from ..train.__main__ import load_float as load_into
    arch, _, _ = load_float(float_weights)
    net = HyperpriorTorch(arch)
    load_into(net, float_weights)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, torch


def refine(net, torch, x, beta, iters, lr):
    """Latents (y, z) of x (1 x 3 x H x W in [0, 1]) minimizing the training
    loss at beta: Adam from g_a's latents, learning rate decayed to 0 on a
    cosine.  Returns them as H x W x C float64 arrays."""
    with torch.no_grad():
        y0 = net.g_a(net.to_ycbcr(x))
        z0 = net.h_a(y0)
    y = y0.clone().requires_grad_(True)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([y, z], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    b = torch.tensor([beta])
    lam = float(net.lam(b))
    npx = x.shape[2] * x.shape[3]
    for _ in range(iters):
        x_hat, bits_y, bits_z = net.from_latents(y, z, b)
        loss = (bits_y + bits_z).sum() / npx + lam * 255 ** 2 * ((x_hat - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    hwc = lambda t: t.detach()[0].permute(1, 2, 0).double().numpy()  # noqa: E731
    return hwc(y), hwc(z)


def point(rgb, data):
    out = decoder.decode(data)
    py, _, _ = psnr_ycbcr(rgb, out)
    return 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), psnr(rgb, out), py


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.eval.refine_study", description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--images", type=int, default=6, help="this many Kodak images, evenly spaced")
    p.add_argument("--betas", default="0.1,0.3,0.5,0.7")
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--w16", default=os.path.join(model_mod.MODELS_DIR, "refcodec-w16.npz"))
    p.add_argument("--float", dest="float_weights", default=os.path.join(model_mod.MODELS_DIR, "hp1-float.npz"))
    args = p.parse_args(argv)

    net, torch = torch_model(args.float_weights)
    if args.threads:
        torch.set_num_threads(args.threads)
    m16 = model_mod.load(args.w16)
    betas = [float(b) for b in args.betas.split(",")]
    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))
    files = files[::max(1, len(files) // args.images)][:args.images]
    pts = {k: [[] for _ in betas] for k in ("plain", "refined")}
    t0 = time.time()
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        h, w = rgb.shape[:2]
        (hp, wp), _, _ = grid_sizes(w, h)
        padded = np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
        x = torch.from_numpy(padded.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()
        an = encoder.Analysis(rgb, m16)
        line = []
        for i, beta in enumerate(betas):
            code = encoder.beta_to_code(beta)
            a = point(rgb, an.stream(code))
            r = point(rgb, encoder.Analysis(rgb, m16, latents=refine(net, torch, x, beta, args.iters, args.lr))
                      .stream(code))
            pts["plain"][i].append(a)
            pts["refined"][i].append(r)
            line.append(f"beta {beta}: {a[0]:.4f} bpp {a[1]:.2f} dB -> {r[0]:.4f} bpp {r[1]:.2f} dB")
        print(f"# {os.path.basename(f)} ({time.time() - t0:.0f} s): " + "; ".join(line), flush=True)

    mean = {k: np.array([np.mean(v, axis=0) for v in pts[k]]) for k in pts}
    print(f"\nKodak, {len(files)} images, betas {betas}, {args.iters} iterations at lr {args.lr}: "
          "mean (bpp, PSNR-RGB, PSNR-Y)")
    for k in pts:
        print(f"{k:8s} " + "  ".join(f"({q[0]:.4f}, {q[1]:.2f}, {q[2]:.2f})" for q in mean[k]))
    for col, name in ((1, "PSNR-RGB"), (2, "PSNR-Y")):
        print(f"BD-rate refined vs plain, {name}: "
              f"{bd_rate(mean['plain'][:, 0], mean['plain'][:, col], mean['refined'][:, 0], mean['refined'][:, col]):+.2f} %")


if __name__ == "__main__":
    main()
