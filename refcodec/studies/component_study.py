"""What a component dimension of the quality map could buy (issue 21, item 4).

``python -m refcodec.studies.component_study [--images 1,5,14,20] [--betas 0.25,0.45,0.65,0.85]``

JPEG AI's 3-D quality map moves bits between the latent channels that
reconstruct luma and those that reconstruct chroma.  Before a syntax for it,
this study simulates it (no stream is written): the channels of y are split
by what they reconstruct, and the log2 gain of the chroma group is lowered
by ``o / 4`` octaves (o = -1 ... -4, the quality map's own step) on top of
the model's gain; the y bits (exact table bits) plus z's, and PSNR-RGB,
PSNR-Y and PSNR-YUV 6:1:1 of the integer decoder's picture are measured at
each beta, and each offset's BD-rate against offset 0 (per picture, then the
mean) is printed.

The split: on a 256 x 256 crop (``--probe``) of tests/data/kodim23.png at beta 0.5, each
channel of y_hat is pushed by half its standard deviation and the integer
g_s's change measured in Y, Cb and Cr; a channel whose luma share of that
energy is below ``--threshold`` is a chroma channel.
"""

import argparse
import contextlib
import os

import numpy as np
from PIL import Image

from .. import encoder as E
from .. import gain as G
from .. import model as model_mod
from ..decoder import dequantize
from ..eval.bdrate import bd_rate
from ..eval.metrics import psnr, psnr_ycbcr

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")
CROP = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "kodim23.png")


def luma_share(m, rgb, beta_code=32768):
    """Per channel of y: the luma share of the energy of g_s's response to a push of that channel."""
    an = E.Analysis(rgb, m)
    p = m.prec
    q, _, mu_q, ig = an.coded(beta_code)
    y0 = dequantize(mu_q, q, ig, p["p_mu"], p["p_y"], m.ig_p)
    x0 = m.g_s(y0).astype(np.float64)
    M = y0.shape[-1]
    sd = y0.astype(np.float64).reshape(-1, M).std(axis=0)
    energy = np.zeros((M, 3))
    for c in range(M):
        y = y0.astype(np.int32)
        y[..., c] += int(max(1, 0.5 * sd[c]))
        x = m.g_s(np.clip(y, -32768, 32767).astype(np.int16)).astype(np.float64)
        energy[c] = ((x - x0) ** 2).sum(axis=(0, 1))
    return energy[:, 0] / np.maximum(energy.sum(axis=1), 1e-12)


@contextlib.contextmanager
def channel_offsets(offsets):
    """The encoder's gain maps with ``offsets`` (per channel, in quality-map
    steps of 1/4 octave) added: a simulation, the decoder knows nothing of it."""
    saved = E.gain_maps
    o = np.asarray(offsets, np.int64)

    def gain_maps(model, beta_code, Q_lat=None):
        lg = G.log2_gain_fp(model.gain_log2_fp, beta_code)[None, None, :] + (o[None, None, :] << 14)
        if Q_lat is not None:
            lg = lg + (Q_lat.astype(np.int64)[:, :, None] << 14)
        return G.sigma_shift(lg, model.prec["p_s"]), G.inverse_gain(lg, model.exp2)
    E.gain_maps = gain_maps
    try:
        yield
    finally:
        E.gain_maps = saved


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.component_study",
                                description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--images", default="1,5,14,20", help="Kodak picture numbers")
    p.add_argument("--betas", default="0.25,0.45,0.65,0.85")
    p.add_argument("--offsets", default="-1,-2,-3,-4")
    p.add_argument("--threshold", type=float, default=0.5, help="luma share below which a channel is chroma")
    p.add_argument("--probe", type=int, default=256, help="side of the kodim23 crop that splits the channels")
    p.add_argument("--model", default=None)
    args = p.parse_args(argv)
    m = model_mod.load(args.model)
    crop = np.asarray(Image.open(CROP).convert("RGB"))[:args.probe, 128:128 + args.probe]
    share = luma_share(m, crop)
    chroma = share < args.threshold
    print(f"{share.size} channels; luma share quantiles 0/10/25/50/75/90/100 %: "
          f"{np.round(np.quantile(share, [0, .1, .25, .5, .75, .9, 1]), 2).tolist()}; "
          f"{int(chroma.sum())} chroma channels (share < {args.threshold})")
    betas = [float(b) for b in args.betas.split(",")]
    offsets = [0] + [int(o) for o in args.offsets.split(",")]
    files = [os.path.join(args.kodak, f"kodim{int(i):02d}.png") for i in args.images.split(",")]
    res = {}
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        an = E.Analysis(rgb, m)
        z_bits = 8 * len(an.z_stream())
        npx = rgb.shape[0] * rgb.shape[1]
        for o in offsets:
            with channel_offsets(np.where(chroma, o, 0)):
                for b in betas:
                    code = E.beta_to_code(b)
                    q, rows = an.quantize(code)
                    out = an.reconstruct(code)
                    y, cb, cr = psnr_ycbcr(rgb, out)
                    res[f, o, b] = ((m.y_tables.symbol_bits(q, rows).sum() + z_bits) / npx, psnr(rgb, out), y,
                                    (6 * y + cb + cr) / 8)
        print(f"# {os.path.basename(f)} done", flush=True)
    for o in offsets[1:]:
        bd = []
        for f in files:
            a = np.array([res[f, 0, b] for b in betas])
            t = np.array([res[f, o, b] for b in betas])
            bd.append([bd_rate(a[:, 0], a[:, k], t[:, 0], t[:, k]) for k in (1, 2, 3)])
        bd = np.array(bd)
        print(f"chroma group offset {o:+d}: BD-rate PSNR-RGB {bd[:, 0].mean():+.2f} %, PSNR-Y {bd[:, 1].mean():+.2f} %, "
              f"PSNR-YUV 6:1:1 {bd[:, 2].mean():+.2f} %  (PSNR-Y per picture {np.round(bd[:, 1], 2).tolist()})")


if __name__ == "__main__":
    main()
