"""Probe: what a small post-filter after g_s would add on a trained model
(issue 19; ``python -m refcodec.studies.postfilter_probe``).

The synthesis ends at half resolution (a 3x3 convolution to 12 channels and a
depth-to-space): nothing nonlinear runs at the picture's own resolution.  This
probe measures, before any syntax, what a residual filter at full resolution
would buy with every trained network frozen:

    x_out = x_hat + f(x_hat [, beta])       f: 3x3 convolutions and ReLUs

The codec's reconstructions x_hat (float model, hard rounding, the
checkerboard context) of training crops at beta drawn as the trainer draws
it are cached once, with those of the 24 Kodak pictures at five betas; the
filter trains on the MSE alone (the rate does not change), and the Kodak
PSNR-RGB (8-bit, rounded) is printed at each beta with and without it, with
the decoder MACs per pixel the filter would add.
"""

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import arch as A
from ..model import DEFAULT_MODEL, float_weights_of
from ..nn import read_arch
from ..train.__main__ import SHARED, draw_beta, export_float, load_images
from ..train.nets import HyperpriorTorch, load_float


class PostFilter(nn.Module):
    def __init__(self, ch, layers, beta_in):
        super().__init__()
        self.beta_in = beta_in
        cin = 3 + (1 if beta_in else 0)
        convs = []
        for i in range(layers):
            cout = 3 if i == layers - 1 else ch
            convs.append(nn.Conv2d(cin, cout, 3, padding=1))
            cin = cout
        nn.init.zeros_(convs[-1].weight)
        nn.init.zeros_(convs[-1].bias)
        self.convs = nn.ModuleList(convs)

    def forward(self, x, beta):
        h = x - 0.5
        if self.beta_in:
            h = torch.cat([h, beta[:, None, None, None].expand(-1, 1, *x.shape[2:]) - 0.5], 1)
        for i, c in enumerate(self.convs):
            h = c(h)
            if i < len(self.convs) - 1:
                h = F.relu(h)
        return x + h

    def macs_per_pixel(self):
        return sum(c.in_channels * c.out_channels * 9 for c in self.convs)


class ModelFilter(nn.Module):
    """The model's own post-filter (refcodec.arch g_pf, clause 6.5.1): on g_s's
    YCbCr output, told the rate by r = mean_c(log2 gain) / 8; RGB in and out
    here, as the cache holds RGB reconstructions (to_ycbcr inverts to_rgb)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, beta):
        m = self.model
        lg = m.gain(beta)[:, :, None, None]
        return m.to_rgb(m.synthesis_post(m.to_ycbcr(x), lg))

    def macs_per_pixel(self):
        return int(A.macs_per_pixel(self.model.arch)["g_pf"])


def psnr(a, b):
    mse = float(((torch.round(a.clamp(0, 1) * 255) - b * 255) ** 2).mean())
    return 10 * math.log10(255 ** 2 / max(mse, 1e-10))


def codec_recon(an, beta):
    """g_s's output of the integer codec at beta (the post-filter off) as
    float RGB (1, 3, H, W), unclamped: the colour transform without its rounding."""
    from ..decoder import dequantize
    from ..encoder import beta_to_code
    m = an.model
    p = m.prec
    q, _, mu_q, ig = an.coded(beta_to_code(beta))
    x = m.g_s(dequantize(mu_q, q, ig, p["p_mu"], p["p_y"], m.ig_p)).astype(np.float32) / (1 << p["p_x"])
    x[..., 0] += 0.5
    rgb = x[:an.height, :an.width] @ np.array(A.YCBCR_TO_RGB, np.float32).T
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]


def build_cache(args, betas, rng, kodak_recon, crop_recon):
    """The Kodak pictures and ``args.crops`` training crops with their
    reconstructions: ``kodak_recon(im, x)`` gives a picture's at every beta
    (5, 3, H, W), ``crop_recon(crop, x, beta)`` a crop's at its beta drawn as
    the trainer draws it (1, 3, H, W); float16, RGB in [0, 1]."""
    t0 = time.time()
    kod = []
    for im in load_images(os.path.join(SHARED, "kodak")):
        x = torch.from_numpy(im.copy()).permute(2, 0, 1)[None].float() / 255
        kod.append((x.half(), kodak_recon(im, x).half()))
    images = load_images(os.path.join(SHARED, "train"), min_side=args.crop)
    xs, xh, bs = [], [], []
    for i in range(args.crops):
        im = images[i % len(images)]
        hh, ww = im.shape[:2]
        y0, x0 = rng.integers(hh - args.crop + 1), rng.integers(ww - args.crop + 1)
        c = np.ascontiguousarray(im[y0:y0 + args.crop, x0:x0 + args.crop])
        x = torch.from_numpy(c).permute(2, 0, 1)[None].float() / 255
        b = draw_beta(1, 0.3, 0.5)
        xs.append(x.half())
        xh.append(crop_recon(c, x, b).half())
        bs.append(b)
    print(f"reconstructions cached in {time.time() - t0:.0f} s", flush=True)
    return {"kodak": kod, "x": torch.cat(xs), "x_hat": torch.cat(xh), "beta": torch.cat(bs)}


def codec_cache(args, betas, rng):
    """The integer codec's reconstructions (rate-aware rounding, integer g_s, no post-filter)."""
    from ..encoder import Analysis
    from ..model import Model
    m = Model(args.codec)

    def every_beta(an):
        return torch.cat([codec_recon(an, b) for b in betas])

    return build_cache(args, betas, rng,
                       lambda im, x: every_beta(Analysis(im, m, postfilter=False)),
                       lambda c, x, b: codec_recon(Analysis(c, m, postfilter=False), float(b)))


def float_cache(args, betas, rng):
    """The float model's reconstructions (hard rounding, the checkerboard
    context; g_s alone where the weights have a post-filter already)."""
    model = HyperpriorTorch(read_arch(args.weights))
    load_float(model, args.weights)
    model.eval()
    if A.has_postfilter(model.arch):
        last = [m for m in model.g_pf if isinstance(m, nn.Conv2d)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
    with torch.no_grad():
        return build_cache(args, betas, rng,
                           lambda im, x: torch.cat([model(x, torch.tensor([b]), noise=False)[0] for b in betas]),
                           lambda c, x, b: model(x, b, noise=False)[0])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=float_weights_of(DEFAULT_MODEL),
                   help="float weights (default: the default model's, model.float_weights_of)")
    p.add_argument("--ch", type=int, default=16)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--beta-in", action="store_true", help="give the filter beta as a fourth input plane")
    p.add_argument("--crops", type=int, default=820)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--iters", type=int, default=6000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--cache", default="runs/postfilter_cache.pt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--codec", default=None, metavar="MODEL.npz",
                   help="cache the reconstructions of the integer codec with this model file instead of the "
                        "float model's: the encoder's rate-aware rounding and the integer g_s, the post-filter "
                        "off -- what the decoder's g_pf will see")
    p.add_argument("--save", default=None, metavar="FLOAT.npz",
                   help="train the model's own g_pf (YCbCr, rate plane; arch.with_postfilter) instead of the RGB "
                        "filter, and write the float weights with it")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    betas = [0.3, 0.45, 0.6, 0.75, 0.9]

    if os.path.exists(args.cache):
        cache = torch.load(args.cache)
    else:
        cache = (codec_cache if args.codec else float_cache)(args, betas, rng)
        torch.save(cache, args.cache)

    if args.save:
        arch = A.with_postfilter(read_arch(args.weights), PF=args.ch, PFL=args.layers)
        for net in A.nets_of(arch):
            arch[net] = [tuple(layer) for layer in arch[net]]
        model = HyperpriorTorch(arch)
        meta = load_float(model, args.weights)
        for name, q in model.named_parameters():
            q.requires_grad_(name.startswith("g_pf."))
        filt = ModelFilter(model)
    else:
        filt = PostFilter(args.ch, args.layers, args.beta_in)
    print(f"filter {args.layers} layers x {args.ch} channels{' + beta' if args.beta_in else ''}: "
          f"{filt.macs_per_pixel()} decoder MAC/pixel", flush=True)

    @torch.no_grad()
    def kodak_eval():
        rows = []
        for j, beta in enumerate(betas):
            before = after = 0.0
            for x, outs in cache["kodak"]:
                xh = outs[j:j + 1].float()
                before += psnr(xh, x.float())
                after += psnr(filt(xh, torch.tensor([beta])), x.float())
            n = len(cache["kodak"])
            rows.append((beta, before / n, after / n))
        return rows

    def report(it):
        rows = kodak_eval()
        print(f"kodak iter {it}: " + ", ".join(f"beta {b}: {p0:.3f} -> {p1:.3f} dB ({p1 - p0:+.3f})"
                                                for b, p0, p1 in rows)
              + f"; mean {np.mean([p1 - p0 for _, p0, p1 in rows]):+.3f} dB", flush=True)

    if args.save:
        report(0)    # the model's filter as it comes (the joint run's), before this pass
    X, XH, B = cache["x"], cache["x_hat"], cache["beta"]
    opt = torch.optim.Adam([q for q in filt.parameters() if q.requires_grad], lr=args.lr)
    t0 = time.time()
    P = args.patch
    for it in range(1, args.iters + 1):
        idx = rng.integers(len(X), size=args.batch)
        r0, c0 = rng.integers(args.crop - P + 1), rng.integers(args.crop - P + 1)
        x = X[idx, :, r0:r0 + P, c0:c0 + P].float()
        xh = XH[idx, :, r0:r0 + P, c0:c0 + P].float()
        loss = F.mse_loss(filt(xh, B[idx]), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it == int(args.iters * 0.8):
            for gr in opt.param_groups:
                gr["lr"] = args.lr / 10
        if it % 500 == 0:
            print(f"iter {it} mse {loss.item() * 255 ** 2:.2f} ({(time.time() - t0) / it:.3f} s/it)", flush=True)
        if it % args.eval_every == 0 or it == args.iters:
            report(it)
    if args.save:
        export_float(filt.model, args.save, meta.get("step"), meta.get("kodak_score"))
        print(f"wrote {args.save}", flush=True)


if __name__ == "__main__":
    main()
