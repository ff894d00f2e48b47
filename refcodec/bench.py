"""Codec benchmark: ``python -m refcodec.bench [--image PNG] [--threads N] [--repeats R]``.

One line per comparison, ``NAME: ratio R (ours X s, anchor Y s)`` with
R = anchor time / our time (above 1 means we are faster), medians of
interleaved repeats in this one run, same thread count for both:

* full decode (parse, rANS, integer h_s, the context networks g_cm and g_ep
  where the model has them, integer g_s, colour) on numba CPU against
  PyTorch float32 running the same networks;
* the integer g_s alone against PyTorch float32 g_s;
* full encode at a fixed beta (numpy float analysis, integer h_s, g_cm and
  g_ep, rANS) against PyTorch float32 running g_a, h_a, h_s, g_cm and g_ep;
* bit-rate matching to ``--bpp`` (fast method) against the bisection
  baseline (a full encode and decode per trial) and against one encode at a
  fixed beta;
* on a CUDA GPU (numba.cuda and torch.cuda both available, not the
  simulator): full decode on numba CUDA against PyTorch CUDA float32, at
  768x512 and at 3840x2160;
* unless ``--no-4k``: a 3840x2160 decode in a fresh process, its time and
  peak resident memory (``#`` line);
* unless ``--no-cli``: the command line ``refcodec decode`` as a user runs
  it, in a fresh process: the first run with an empty numba cache (compile
  time included) and warm runs (median), printed as ``#`` lines.

``--model W16.npz --float FLOAT.npz`` measures another model (a candidate
not yet shipped) against its own float weights.  Needs torch (the
``bench`` extra).
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


def torch_decode(net, z_t, y_t):
    """The float networks a decode runs: h_s, with the context tool g_cm and
    g_ep on the latent grid, then g_s and, with the post-filter, g_pf on
    g_s's output and a rate plane."""
    p = net.h_s(z_t)
    if hasattr(net, "g_cm"):
        mu, s = p.chunk(2, dim=1)
        p = net.g_ep(torch_cat([mu, s, net.g_cm(y_t)]))
    x = net.g_s(p[:, :0].sum() + y_t)
    if hasattr(net, "g_pf"):
        x = x + net.g_pf(torch_cat([x, x[:, :1] * 0 + 0.1]))
    return x


def torch_encode(net, x_t):
    """The float networks an encode runs: g_a, h_a, h_s and, with the context
    tool, g_cm and g_ep."""
    p = net.h_s(torch_round(net.h_a(net.g_a(x_t))))
    if hasattr(net, "g_cm"):
        mu, s = p.chunk(2, dim=1)
        p = net.g_ep(torch_cat([mu, s, net.g_cm(mu)]))
    return p


def torch_round(x):
    import torch
    return torch.round(x)


def torch_cat(xs):
    import torch
    return torch.cat(xs, dim=1)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.bench", description=__doc__.split("\n")[0])
    p.add_argument("--image", default=os.path.join(HERE, "..", "tests", "data", "kodim23.png"))
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--bpp", type=float, default=0.25, help="bit-rate matching target")
    p.add_argument("--no-cli", action="store_true", help="skip the command-line timings")
    p.add_argument("--no-4k", action="store_true", help="skip the 3840x2160 decode")
    p.add_argument("--model", default=None, metavar="W16.npz",
                   help="an exported model to measure (default: the shipped one); with --float")
    p.add_argument("--float", dest="float_weights", default=None, metavar="FLOAT.npz",
                   help="the float weights the model was exported from, for PyTorch's side (default: "
                        "the default model's, model.float_weights_of)")
    args = p.parse_args(argv)

    import numba
    import torch
    from .export import load_float
    from .train.nets import HyperpriorTorch
    from .ratecontrol import match
    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)

    if (args.model is None) != (args.float_weights is None):
        p.error("--model and --float go together (the integer model and the float weights it came from)")
    m = model_mod.load(args.model)
    arch, params, _ = load_float(args.float_weights or model_mod.float_weights_of(model_mod.DEFAULT_MODEL))
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
            "dec_t": lambda: torch_decode(net, z_t, y_t),
            "gs": lambda: m.g_s(y_hat_q),
            "gs_t": lambda: net.g_s(y_t),
            "enc": lambda: encoder.encode(rgb, beta=args.beta, model=m),
            "enc_t": lambda: torch_encode(net, x_t),
            "brm": lambda: match(rgb, args.bpp, model=m, method="fast"),
            "brm_b": lambda: match(rgb, args.bpp, model=m, method="bisect"),
        }, args.repeats)
    nets = ("h_s+g_cm+g_ep+g_s" if m.context else "h_s+g_s") + ("+g_pf" if m.postfilter else "")
    line(f"decode {w}x{h} numba-cpu vs torch-f32 {nets}", med["dec"], med["dec_t"])
    line(f"g_s {w}x{h} int16 numba-cpu vs torch-f32", med["gs"], med["gs_t"])
    enc_nets = "g_a+h_a+h_s+g_cm+g_ep" if m.context else "g_a+h_a+h_s"
    line(f"encode {w}x{h} at fixed beta vs torch-f32 {enc_nets}", med["enc"], med["enc_t"])
    line(f"bit-rate matching to {args.bpp} bpp, fast vs bisect", med["brm"], med["brm_b"])
    line(f"bit-rate matching to {args.bpp} bpp, fast vs one encode at fixed beta", med["brm"], med["enc"])
    big = None
    if not args.no_4k or _gpu(torch):
        big_rgb = np.pad(rgb, ((0, 2160 - h % 2160 if h < 2160 else 0), (0, 3840 - w if w < 3840 else 0), (0, 0)),
                         mode="reflect")[:2160, :3840]
        big = encoder.encode(big_rgb, beta=args.beta, model=m)
    if _gpu(torch):
        for name, stream, (bh, bw) in (("768x512", data, (h, w)), ("3840x2160", big, (2160, 3840))):
            (_, (bhy, bwy), (bhz, bwz)) = decoder.grid_sizes(bw, bh)
            zc = torch.randn(1, arch["Z"], bhz, bwz, device="cuda").round()
            yc = torch.randn(1, arch["M"], bhy, bwy, device="cuda")
            netc = net.to("cuda")

            def torch_cuda():
                out = torch_decode(netc, zc, yc)
                torch.cuda.synchronize()
                return out

            with torch.no_grad():
                medc = interleaved({"ours": lambda: decoder.decode(stream, backend="cuda", models=[m]),
                                    "torch": torch_cuda}, args.repeats)
            line(f"decode {name} numba-cuda vs torch-cuda-f32 {nets}", medc["ours"], medc["torch"])
    if not args.no_4k:
        big_decode(big, args.model)
    if not args.no_cli:
        cli_times(data, args.repeats, args.model)


def _gpu(torch):
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or not torch.cuda.is_available():
        return False
    from numba import cuda
    return cuda.is_available()


BIG_SCRIPT = """
import resource, sys, time
from refcodec.decoder import decode
from refcodec.model import load
data = open(sys.argv[1], "rb").read()
models = [load(sys.argv[2])] if len(sys.argv) > 2 else None
decode(data, models=models)   # the first call loads the kernels
t = time.perf_counter()
rgb = decode(data, models=models)
secs = time.perf_counter() - t
try:   # this process's own peak (ru_maxrss would include the parent's from before exec)
    kb = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
except OSError:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(secs, kb, rgb.shape)
"""


def big_decode(stream, model=None):
    """Decode a 3840x2160 stream in a fresh process: time of the second
    decode and the process's peak resident memory (both decodes); ``model``:
    the model file's path (None: the shipped ones)."""
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "big.rcd")
        with open(src, "wb") as f:
            f.write(stream)
        out = subprocess.run([sys.executable, "-c", BIG_SCRIPT, src] + ([os.path.abspath(model)] if model else []),
                             check=True, capture_output=True, text=True)
    secs, rss_kb, shape = out.stdout.split(maxsplit=2)
    print(f"# decode 3840x2160 ({len(stream)} bytes) on numba CPU, fresh process: {float(secs):.2f} s, "
          f"peak resident memory {int(rss_kb) / 2**20:.2f} GB", flush=True)


def cli_times(data, repeats, model=None):
    """``refcodec decode`` in fresh processes: once with an empty numba
    cache, then warm (the cache the first run filled); ``model``: its
    --model (None: the shipped ones)."""
    import subprocess
    import sys
    import tempfile
    import time
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.rcd")
        with open(src, "wb") as f:
            f.write(data)
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "numba-cache"))
        cmd = [sys.executable, "-m", "refcodec", "decode", src, os.path.join(tmp, "out.png")]
        cmd += ["--model", os.path.abspath(model)] if model else []

        def run():
            t = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            return time.perf_counter() - t

        first = run()
        warm = float(np.median([run() for _ in range(repeats)]))
    print(f"# cli decode (refcodec decode, fresh process): first run {first:.2f} s with an empty numba "
          f"cache, warm {warm:.2f} s (median of {repeats})", flush=True)


if __name__ == "__main__":
    main()
