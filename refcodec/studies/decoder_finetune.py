"""Decoder fine-tuning on the codec's own latents (issue 19; ``python -m
refcodec.studies.decoder_finetune --codec W16.npz --weights FLOAT.npz``).

The trainer's synthesis sees y rounded to nearest (straight-through
rounding), but the encoder codes rate-aware rounded latents
(``encoder.RDOQ_KNOTS``), which zero many small values and move others by a
step. The decoder never trains on the latents it will actually decode. This
study caches the dequantized latents y_hat that the integer codec's encoder
codes: rate-aware rounding, the checkerboard context, and the gain unit's
steps at the 16-bit beta code. It takes them for training crops at rates
drawn as the trainer draws them, and for the 24 Kodak pictures at five
betas. It then trains the decoder's networks on them (``--train``: g_s and
g_pf, or g_pf alone, the post-filter pass of docs/training.md) with every
other network frozen.

The latents are fixed, so the rate does not change. A PSNR gain on Kodak at
a beta is a gain at the same stream size. The Kodak PSNR-RGB (8-bit,
rounded; float synthesis) is printed before training and at each
evaluation. ``--save`` writes the float weights (export them with
``python -m refcodec.export``; compare through the integer codec with
``refcodec.studies.compare_models``).

A training patch is cut from the cached latents of a crop. g_s decodes it
with zero padding at its borders, where the picture would have more
latents. ``--margin`` latents at each side therefore feed g_s but not the
loss. Without the margin, the errors at those borders dominate the loss at
high rates, and the decoder learns them: -0.15 dB on Kodak for g_pf alone
after 300 iterations on 128-pixel patches (docs/probes.md, session 21).

Objective (``--objective``): ``logmse``, the mean over crops of log MSE, is
the default. It gives every crop's dB the same weight, as a BD-rate over
rates does. ``mse`` is the plain mean, which favours the low rates.
"""

import argparse
import math
import os
import time

import numpy as np
import torch

from ..nn import read_arch
from ..train.__main__ import SHARED, draw_beta, export_float, load_images
from ..train.nets import HyperpriorTorch, load_float

BETAS = (0.3, 0.45, 0.6, 0.75, 0.9)


def codec_latents(an, beta):
    """y_hat of the integer codec at ``beta`` as float32 (1, M, Hy, Wy), and
    the beta its 16-bit code stands for."""
    from ..decoder import dequantize
    from ..encoder import beta_to_code
    m = an.model
    p = m.prec
    code = beta_to_code(float(beta))
    q, _, mu_q, ig = an.coded(code)
    y_hat = dequantize(mu_q, q, ig, p["p_mu"], p["p_y"], m.ig_p).astype(np.float32) / (1 << p["p_y"])
    return torch.from_numpy(np.ascontiguousarray(y_hat.transpose(2, 0, 1)))[None], code / 65535


def build_cache(codec, crops, crop, seed, betas=BETAS, kodak_images=None, kodak=os.path.join(SHARED, "kodak"),
                train=os.path.join(SHARED, "train")):
    """Kodak: (x uint8 (1, 3, H, W), y_hat (len(betas), M, Hy, Wy)) per picture;
    training crops: x (n, 3, crop, crop) uint8, y_hat (n, M, crop/16, crop/16), beta (n,)."""
    from ..encoder import Analysis
    from ..model import Model
    m = Model(codec)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    pictures = []
    for im in load_images(kodak, max_images=kodak_images):
        an = Analysis(im, m, postfilter=False)
        ys = [codec_latents(an, b)[0] for b in betas]
        pictures.append((torch.from_numpy(im.copy()).permute(2, 0, 1)[None], torch.cat(ys)))
    images = load_images(train, min_side=crop)
    xs, yh, bs = [], [], []
    for i in range(crops):
        im = images[i % len(images)]
        hh, ww = im.shape[:2]
        y0, x0 = rng.integers(hh - crop + 1), rng.integers(ww - crop + 1)
        c = np.ascontiguousarray(im[y0:y0 + crop, x0:x0 + crop])
        y_hat, b = codec_latents(Analysis(c, m, postfilter=False), float(draw_beta(1, 0.3, 0.5)))
        xs.append(torch.from_numpy(c).permute(2, 0, 1)[None])
        yh.append(y_hat)
        bs.append(b)
    print(f"latents cached in {time.time() - t0:.0f} s", flush=True)
    return {"betas": list(betas), "kodak": pictures, "x": torch.cat(xs), "y_hat": torch.cat(yh),
            "beta": torch.tensor(bs, dtype=torch.float32)}


def psnr8(x_hat, x8):
    """PSNR of a float RGB reconstruction in [0, 1] rounded to 8 bits against the uint8 original."""
    mse = float(((torch.round(x_hat.clamp(0, 1) * 255) - x8.float()) ** 2).mean())
    return 10 * math.log10(255 ** 2 / max(mse, 1e-10))


def decode(model, y_hat, beta):
    """RGB in [0, 1] from y_hat at rate parameters beta (B,): g_s, then g_pf with its rate plane."""
    lg = model.gain(beta)[:, :, None, None]
    return model.to_rgb(model.synthesis(y_hat, lg))


@torch.no_grad()
def kodak_psnr(model, cache):
    """Mean PSNR-RGB over the Kodak pictures at each cached beta."""
    out = []
    for j, beta in enumerate(cache["betas"]):
        b = torch.tensor([beta], dtype=torch.float32)
        out.append(float(np.mean([psnr8(decode(model, y[j:j + 1], b), x) for x, y in cache["kodak"]])))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.decoder_finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", required=True, metavar="W16.npz", help="the integer model whose encoder codes the latents")
    p.add_argument("--weights", required=True, metavar="FLOAT.npz", help="the float weights it was exported from")
    p.add_argument("--train", default="g_s,g_pf", help="the networks to train (comma-separated; default g_s,g_pf)")
    p.add_argument("--objective", default="logmse", choices=("logmse", "mse"))
    p.add_argument("--crops", type=int, default=820)
    p.add_argument("--kodak", default=os.path.join(SHARED, "kodak"), help="the pictures measured")
    p.add_argument("--kodak-images", type=int, default=None, help="the first N of them only (default: all)")
    p.add_argument("--train-images", default=os.path.join(SHARED, "train"), help="where the training crops come from")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--margin", type=int, default=2,
                   help="latent rows and columns at each side of a patch that feed g_s but not the loss: there g_s "
                        "sees its zero padding where the picture has more latents (default 2, 32 pixels)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--cache", default="runs/decoder_finetune_cache.pt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, metavar="FLOAT.npz", help="write the float weights after training")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    if args.patch % 16 or args.crop % 16 or args.patch > args.crop or args.patch <= 32 * args.margin:
        p.error("--patch and --crop must be multiples of 16, the patch no larger than the crop and larger than "
                "its margins")

    model = HyperpriorTorch(read_arch(args.weights))
    meta = load_float(model, args.weights)
    model.eval()
    nets = [n.strip() for n in args.train.split(",") if n.strip()]
    for n in nets:
        if not hasattr(model, n) or n not in ("g_s", "g_pf"):
            p.error(f"--train {n}: not a decoder network of this model (g_s, g_pf)")
    params = []
    for name, q in model.named_parameters():
        q.requires_grad_(name.split(".")[0] in nets)
        if q.requires_grad:
            params.append(q)
    print(f"training {', '.join(nets)}: {sum(q.numel() for q in params)} parameters, objective {args.objective}, "
          f"lr {args.lr}", flush=True)

    if os.path.exists(args.cache):
        cache = torch.load(args.cache)
    else:
        cache = build_cache(args.codec, args.crops, args.crop, args.seed, kodak_images=args.kodak_images,
                            kodak=args.kodak, train=args.train_images)
        torch.save(cache, args.cache)
    betas = cache["betas"]
    before = kodak_psnr(model, cache)
    print("kodak iter 0: " + ", ".join(f"beta {b}: {v:.3f} dB" for b, v in zip(betas, before)), flush=True)

    X, Y, B = cache["x"], cache["y_hat"], cache["beta"]
    P, L = args.patch, args.patch // 16
    opt = torch.optim.Adam(params, lr=args.lr)
    t0 = time.time()
    for it in range(1, args.iters + 1):
        idx = torch.from_numpy(rng.integers(len(X), size=args.batch))
        r0, c0 = (int(v) for v in rng.integers(args.crop // 16 - L + 1, size=2))
        y = Y[idx, :, r0:r0 + L, c0:c0 + L].float()
        x = X[idx, :, 16 * r0:16 * r0 + P, 16 * c0:16 * c0 + P].float() / 255
        e = 16 * args.margin
        err = ((decode(model, y, B[idx]) - x)[:, :, e:P - e, e:P - e] ** 2).mean(dim=(1, 2, 3))
        loss = torch.log(err + 1e-10).mean() if args.objective == "logmse" else err.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it == int(args.iters * 0.8):
            for g in opt.param_groups:
                g["lr"] = args.lr / 10
        if it % 100 == 0:
            print(f"iter {it} mean psnr {float((10 * torch.log10(1 / err.detach())).mean()):.2f} dB "
                  f"({(time.time() - t0) / it:.3f} s/it)", flush=True)
        if it % args.eval_every == 0 or it == args.iters:
            now = kodak_psnr(model, cache)
            print(f"kodak iter {it}: " + ", ".join(f"beta {b}: {v:.3f} dB ({v - v0:+.3f})"
                                                     for b, v, v0 in zip(betas, now, before))
                  + f"; mean {np.mean(now) - np.mean(before):+.3f} dB", flush=True)
    if args.save:
        export_float(model, args.save, meta.get("step"), meta.get("kodak_score"))
        print(f"wrote {args.save}", flush=True)


if __name__ == "__main__":
    main()
