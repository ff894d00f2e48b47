"""Probe: what a channel-group context would save on a trained model
(issue 19; ``python -m refcodec.studies.chctx_probe``).

Before any syntax, this measures the rate a channel-conditional context
(Minnen & Singh 2020; ELIC's space-channel context, He et al. 2022) would take
off the current model, with every trained network frozen: the transforms,
h_s and the checkerboard context stay as shipped, so the reconstruction does
not change (the latents keep their quantization cells) and the saving in bits
is the BD-rate gain to first order.

The latent's M channels are split into groups (``--groups``, in the order of
``--order``: as stored, or by decreasing mean rate).  Decoding order:

1. the anchors ((row + column) even) of group 0, 1, ...: the parameters of
   group k are the hyperprior's (mu, s) plus a correction from a 3x3
   convolution over the decoded anchors of groups < k;
2. the checkerboard as shipped (g_cm over all decoded anchors, g_ep);
3. the non-anchors of group 0, 1, ...: the checkerboard's (mu, s) plus a
   correction from a 3x3 convolution over groups < k (all their positions are
   decoded by then).

Each correction network is ``conv 3x3 (prev -> C), relu, 1x1 (2 g + C -> C),
relu, 1x1 (C -> 2 g)`` with the last layer starting at zero, so training
starts from the shipped model's exact rate.  Only these networks train, on
the rate alone (bits of y at beta drawn as the trainer draws it), over
latents of training crops cached once.  It prints the Kodak rate (hard
rounding, likelihoods, 24 images) at five betas with and without the context,
and the decoder MACs per pixel the context would add.
"""

import argparse
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import arch as A
from ..model import DEFAULT_MODEL, float_weights_of
from ..nn import read_arch
from ..train.__main__ import SHARED, draw_beta, load_images
from ..train.nets import HyperpriorTorch, gaussian_likelihood, load_float, ste_round


class GroupContext(nn.Module):
    def __init__(self, sizes, C):
        super().__init__()
        self.sizes = sizes
        self.bounds = np.cumsum([0] + list(sizes)).tolist()
        self.nets = nn.ModuleDict()
        for part in ("a", "n"):
            for k in range(1, len(sizes)):
                prev, g = self.bounds[k], sizes[k]
                last = nn.Conv2d(C, 2 * g, 1)
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
                self.nets[f"{part}{k}_ctx"] = nn.Conv2d(prev, C, 3, padding=1)
                self.nets[f"{part}{k}_ep"] = nn.Sequential(nn.Conv2d(2 * g + C, C, 1), nn.ReLU(), last)

    def correct(self, part, k, prev, mu, s):
        c = F.relu(self.nets[f"{part}{k}_ctx"](prev))
        d = self.nets[f"{part}{k}_ep"](torch.cat([mu, s, c], 1))
        dmu, ds = d.chunk(2, 1)
        return mu + dmu, s + ds

    def macs_per_pixel(self, C):
        """Decoder MACs per picture pixel (the nets run at 1/16 of the side)."""
        tot = 0
        for k in range(1, len(self.sizes)):
            prev, g = self.bounds[k], self.sizes[k]
            tot += 2 * (prev * C * 9 + (2 * g + C) * C + C * 2 * g)
        return tot / 256


def rates(model, ctx, y, mu, s, beta, noise, use_ctx=True):
    """Bits of y per picture (B,), with or without the group context."""
    a = model.arch
    lg = model.gain(beta)[:, :, None, None]
    g = torch.exp2(lg)
    h, w = y.shape[2:]
    anc = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == 0).to(y.dtype)[None, None]

    def bits(v, s_):
        s_eff = torch.clamp(s_ + a["sigma_per_octave"] * lg, 0, a["sigma_levels"] - 1)
        sigma = a["sigma_min"] * torch.exp2(s_eff / a["sigma_per_octave"])
        r = (v - mu_all) * g
        r = r + torch.empty_like(r).uniform_(-0.5, 0.5) if noise else torch.round(r)
        return -torch.log2(gaussian_likelihood(r, sigma).clamp_min(1e-9))

    B = ctx.bounds
    # Pass 1: anchors, group by group.
    mu_a, s_a = mu.clone(), s.clone()
    if use_ctx:
        mus, ss = [mu[:, B[0]:B[1]]], [s[:, B[0]:B[1]]]
        yh = []
        for k in range(len(ctx.sizes)):
            lo, hi = B[k], B[k + 1]
            if k:
                m_k, s_k = ctx.correct("a", k, torch.cat(yh, 1) * anc, mu[:, lo:hi], s[:, lo:hi])
                mus.append(m_k)
                ss.append(s_k)
            gk = g[:, lo:hi]
            yh.append(mus[k] + ste_round((y[:, lo:hi] - mus[k]) * gk) / gk)
        mu_a, s_a = torch.cat(mus, 1), torch.cat(ss, 1)
    y_hat_a = (mu_a + ste_round((y - mu_a) * g) / g) * anc
    # Pass 2: the shipped checkerboard.
    d = model.g_ep(torch.cat([mu, s, model.g_cm(y_hat_a)], 1))
    dmu, ds = d.chunk(2, 1)
    mu_n, s_n = mu + dmu, s + ds
    # Pass 3: non-anchors, group by group.
    if use_ctx:
        mus, ss = [mu_n[:, B[0]:B[1]]], [s_n[:, B[0]:B[1]]]
        yh = []
        for k in range(len(ctx.sizes)):
            lo, hi = B[k], B[k + 1]
            if k:
                m_k, s_k = ctx.correct("n", k, torch.cat(yh, 1), mu_n[:, lo:hi], s_n[:, lo:hi])
                mus.append(m_k)
                ss.append(s_k)
            gk = g[:, lo:hi]
            yh_n = mus[k] + ste_round((y[:, lo:hi] - mus[k]) * gk) / gk
            yh.append(y_hat_a[:, lo:hi] + yh_n * (1 - anc))
        mu_n, s_n = torch.cat(mus, 1), torch.cat(ss, 1)
    mu_all = mu_a * anc + mu_n * (1 - anc)
    s_all = s_a * anc + s_n * (1 - anc)
    return bits(y, s_all).sum(dim=(1, 2, 3))


@torch.no_grad()
def latents(model, x):
    y = model.g_a(model.to_ycbcr(x))
    z_hat = torch.round(model.h_a(y))
    bz = -torch.log2(model.entropy_z.likelihood(z_hat).clamp_min(1e-9)).sum(dim=(1, 2, 3))
    mu, s = model.h_s(z_hat).chunk(2, 1)
    return y, mu, s, bz


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=float_weights_of(DEFAULT_MODEL),
                   help="float weights (default: the default model's, model.float_weights_of)")
    p.add_argument("--groups", default="16,16,32,64,128", help="channel group sizes (sum M)")
    p.add_argument("--order", choices=("stored", "rate"), default="rate")
    p.add_argument("--C", type=int, default=128)
    p.add_argument("--crops", type=int, default=820)
    p.add_argument("--crop", type=int, default=384)
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    model = HyperpriorTorch(read_arch(args.weights))
    meta = load_float(model, args.weights)
    model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    M = meta["arch"]["M"]
    sizes = [int(v) for v in args.groups.split(",")]
    assert sum(sizes) == M, f"groups sum to {sum(sizes)}, M = {M}"

    t0 = time.time()
    kodak = load_images(os.path.join(SHARED, "kodak"))
    kod = []
    for im in kodak:
        x = torch.from_numpy(im.copy()).permute(2, 0, 1)[None].float() / 255
        kod.append(latents(model, x) + (im.shape[0] * im.shape[1],))
    images = load_images(os.path.join(SHARED, "train"), min_side=args.crop)
    cache = []
    for i in range(args.crops):
        im = images[i % len(images)]
        hh, ww = im.shape[:2]
        y0, x0 = rng.integers(hh - args.crop + 1), rng.integers(ww - args.crop + 1)
        c = im[y0:y0 + args.crop, x0:x0 + args.crop]
        x = torch.from_numpy(np.ascontiguousarray(c)).permute(2, 0, 1)[None].float() / 255
        y, mu, s, _ = latents(model, x)
        cache.append(torch.cat([y, mu, s], 1)[0])
    cache = torch.stack(cache)
    print(f"latents of {len(kod)} Kodak pictures and {len(cache)} crops of {args.crop}^2 in {time.time() - t0:.0f} s",
          flush=True)

    if args.order == "rate":
        # Channels by decreasing mean rate on the crops at beta 0.6 (no context).
        y, mu, s = cache[:64, :M], cache[:64, M:2 * M], cache[:64, 2 * M:]
        with torch.no_grad():
            lg = model.gain(torch.full((len(y),), 0.6))[:, :, None, None]
            s_eff = torch.clamp(s + 8 * lg, 0, 79)
            sig = A.SIGMA_MIN * torch.exp2(s_eff / 8)
            per = -torch.log2(gaussian_likelihood(torch.round((y - mu) * torch.exp2(lg)), sig)
                              .clamp_min(1e-9)).mean(dim=(0, 2, 3))
        perm = torch.argsort(per, descending=True)
    else:
        perm = torch.arange(M)
    # Permute the channels of y, mu, s everywhere; the frozen nets that read or
    # write the channel axis (g_cm input, g_ep in/out, gains) are permuted too.
    with torch.no_grad():
        model.log2_gain.copy_(model.log2_gain[:, perm])
        model.g_cm[0].weight.copy_(model.g_cm[0].weight[:, perm])
        ep0 = model.g_ep[0].weight
        idx = torch.cat([perm, M + perm, torch.arange(2 * M, ep0.shape[1])])
        ep0.copy_(ep0[:, idx])
        last = model.g_ep[-1]
        last.weight.copy_(last.weight[torch.cat([perm, M + perm])])
        last.bias.copy_(last.bias[torch.cat([perm, M + perm])])
    full = torch.cat([perm, M + perm, 2 * M + perm])
    cache = cache[:, full]
    kod = [(y[:, perm], mu[:, perm], s[:, perm], bz, n) for y, mu, s, bz, n in kod]

    ctx = GroupContext(sizes, args.C)
    print(f"groups {sizes} ({args.order} order), C {args.C}: {sum(q.numel() for q in ctx.parameters())} "
          f"parameters, {ctx.macs_per_pixel(args.C):.0f} decoder MAC/pixel", flush=True)
    betas = [0.3, 0.45, 0.6, 0.75, 0.9]

    @torch.no_grad()
    def kodak_eval():
        out = []
        for beta in betas:
            b = torch.tensor([beta])
            base = new = tot_px = 0.0
            for y, mu, s, bz, n in kod:
                base += float(rates(model, ctx, y, mu, s, b, False, use_ctx=False)) + float(bz)
                new += float(rates(model, ctx, y, mu, s, b, False)) + float(bz)
                tot_px += n
            out.append((beta, base / tot_px, new / tot_px))
        return out

    opt = torch.optim.Adam(ctx.parameters(), lr=args.lr)
    t0 = time.time()
    for it in range(1, args.iters + 1):
        idx = torch.from_numpy(rng.integers(len(cache), size=args.batch))
        batch = cache[idx]
        if rng.random() < 0.5:
            batch = batch.flip(3)
        y, mu, s = batch[:, :M], batch[:, M:2 * M], batch[:, 2 * M:]
        beta = draw_beta(args.batch, 0.3, 0.5)
        loss = rates(model, ctx, y, mu, s, beta, True).mean() / (args.crop ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it == int(args.iters * 0.8):
            for gr in opt.param_groups:
                gr["lr"] = args.lr / 10
        if it % 100 == 0:
            print(f"iter {it} bpp(y) {loss.item():.4f} ({(time.time() - t0) / it:.2f} s/it)", flush=True)
        if it % args.eval_every == 0 or it == args.iters:
            rows = kodak_eval()
            saved = [100 * (n / b - 1) for _, b, n in rows]
            print(f"kodak iter {it}: " + ", ".join(f"beta {bt}: {b:.4f} -> {n:.4f} bpp ({d:+.2f} %)"
                                                    for (bt, b, n), d in zip(rows, saved))
                  + f"; mean {np.mean(saved):+.2f} %", flush=True)


if __name__ == "__main__":
    main()
