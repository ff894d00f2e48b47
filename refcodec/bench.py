"""Codec benchmark: ``python -m refcodec.bench [--image PNG] [--threads N] [--repeats R]``.

One line per comparison, ``NAME: ratio R (ours X s, anchor Y s)`` with
R = anchor time / our time (above 1 means we are faster), medians of
interleaved repeats in this one run, same thread count for both:

* full decode (parse, rANS, integer h_s, integer g_s, colour) on numba CPU
  against PyTorch float32 running the same h_s and g_s networks;
* the integer g_s alone against PyTorch float32 g_s;
* full encode at a fixed beta (numpy float analysis, integer h_s, rANS)
  against PyTorch float32 running g_a, h_a and h_s.

Needs torch (the ``bench`` extra).
"""

import argparse
import os
import numpy as np
from PIL import Image

from kernels.bench import interleaved

from . import decoder, encoder, model as model_mod

HERE = os.path.dirname(__file__)


def line(name, ours, anchor):
    print(f"{name}: ratio {anchor / ours:.2f} (ours {ours:.3f} s, anchor {anchor:.3f} s)", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.bench", description=__doc__.split("\n")[0])
    p.add_argument("--image", default=os.path.join(HERE, "..", "tests", "data", "kodim23.png"))
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--beta", type=float, default=0.5)
    args = p.parse_args(argv)

    import numba
    import torch
    from .export import load_float
    from .train.nets import HyperpriorTorch
    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)

    m = model_mod.load()
    arch, params, _ = load_float(os.path.join(model_mod.MODELS_DIR, "hp1-float.npz"))
    net = HyperpriorTorch(arch)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=False)
    net.eval()

    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    h, w = rgb.shape[:2]
    data = encoder.encode(rgb, beta=args.beta, model=m)
    pic = decoder.picture(data)
    y_hat_q, *_ = decoder.decode_latents(pic, m, "cpu")
    (hp, wp), (hy, wy), (hz, wz) = decoder.grid_sizes(w, h)
    z_t = torch.randn(1, arch["Z"], hz, wz).round()
    y_t = torch.randn(1, arch["M"], hy, wy)
    x_t = torch.rand(1, 3, hp, wp)
    print(f"# {os.path.basename(args.image)} {w}x{h}, beta {args.beta}, {len(data)} bytes; numba "
          f"{numba.__version__}, torch {torch.__version__}, {args.threads} threads, medians of {args.repeats}")

    with torch.no_grad():
        med = interleaved({
            "dec": lambda: decoder.decode(data, models=[m]),
            "dec_t": lambda: net.g_s(net.h_s(z_t)[:, :0].sum() + y_t),
            "gs": lambda: m.g_s(y_hat_q),
            "gs_t": lambda: net.g_s(y_t),
            "enc": lambda: encoder.encode(rgb, beta=args.beta, model=m),
            "enc_t": lambda: net.h_s(torch.round(net.h_a(net.g_a(x_t)))),
        }, args.repeats)
    line(f"decode {w}x{h} numba-cpu vs torch-f32 h_s+g_s", med["dec"], med["dec_t"])
    line(f"g_s {w}x{h} int16 numba-cpu vs torch-f32", med["gs"], med["gs_t"])
    line(f"encode {w}x{h} at fixed beta vs torch-f32 g_a+h_a+h_s", med["enc"], med["enc_t"])


if __name__ == "__main__":
    main()
