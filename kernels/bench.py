"""Kernel benchmark: ``python -m kernels.bench [--threads N] [--repeats R]``.

Prints one line per comparison::

    NAME: ratio R (ours X UNIT, anchor Y UNIT)

R is our throughput over the anchor's (above 1 means faster), from the
medians of interleaved repeats in this one run (each comparison alternates
its two contenders):

* integer convolution on numba CPU against PyTorch float32 ``conv2d`` on the
  same shapes and thread count (multiply-accumulates per second), on the
  layer shapes of a 768 x 512 decode;
* rANS encode and decode against ``constriction``'s ANS coder on the same
  symbols and tables (symbols per second): the categorical model with the
  very same integer tables (one call per table row, its fastest API) and
  the per-symbol quantized Gaussian.  Each side builds its models once,
  outside the timed calls: constriction's ``Categorical`` objects, our
  ``kernels.rans.Tables`` (as a loaded refcodec model holds them).

Needs the ``bench`` extra (torch, constriction).
"""

import argparse
import os
import statistics
import time

import numpy as np


def interleaved(fns, repeats):
    """Run every callable once per round, ``repeats`` rounds; median seconds each."""
    times = {k: [] for k in fns}
    for f in fns.values():          # warm-up (compilation, caches)
        f()
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def line(name, ours, anchor, unit):
    print(f"{name}: ratio {ours / anchor:.2f} (ours {ours:.3g} {unit}, anchor {anchor:.3g} {unit})", flush=True)


# layer shapes of a 768 x 512 decode: (name, Cin, Cout, k, H, W)
CONV_SHAPES = [
    ("conv3x3 128->128 @192x128", 128, 128, 3, 128, 192),
    ("conv3x3 192->512 @48x32", 192, 512, 3, 32, 48),
    ("g_s conv3x3 128->256 @48x32", 128, 256, 3, 32, 48),
    ("g_s conv3x3 64->256 @96x64", 64, 256, 3, 64, 96),
    ("g_s conv3x3 64->256 @192x128", 64, 256, 3, 128, 192),
    ("g_s conv3x3 64->12 @384x256", 64, 12, 3, 256, 384),
]


def bench_conv(repeats, threads):
    import torch
    from .conv import conv2d_cpu, interleave_weights
    rng = np.random.default_rng(0)
    for name, cin, cout, k, h, w in CONV_SHAPES:
        x = rng.integers(-4096, 4096, (h, w, cin)).astype(np.int16)
        wt = rng.integers(-256, 256, (cout, k, k, cin)).astype(np.int16)
        b = rng.integers(-1000, 1000, cout).astype(np.int32)
        shift = np.full(cout, 12, np.int32)
        xt = torch.randn(1, cin, h, w)
        wtt = torch.randn(cout, cin, k, k)
        bt = torch.randn(cout)
        Wi = interleave_weights(wt)          # done once per layer when a model loads
        with torch.no_grad():
            med = interleaved({
                "ours": lambda: conv2d_cpu(x, wt, b, shift, Wi=Wi),
                "torch": lambda: torch.nn.functional.conv2d(xt, wtt, bt, padding=k // 2),
            }, repeats)
        macs = cin * cout * k * k * h * w
        line(f"conv int16 vs torch f32 [{name}, {threads} threads]", macs / med["ours"] / 1e9,
             macs / med["torch"] / 1e9, "GMAC/s")


def bench_rans(repeats, threads):
    import constriction
    from . import rans

    # the y tables of the shipped model, read from its file (kernels import nothing of refcodec):
    # row k is the discretized Gaussian of sigma 0.11 * 2^(k/8) (SPEC.md 8.3)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "refcodec", "models", "refcodec-v12-w16.npz")
    with np.load(path) as z:
        cdf, cdf_len, offset = z["y_cdf"], z["y_cdf_len"], z["y_offset"]
    sigmas = [0.11 * 2 ** (k / 8) for k in range(cdf.shape[0])]
    rng = np.random.default_rng(0)
    n = 192 * 32 * 48
    rows = rng.integers(0, len(sigmas), n).astype(np.int32)
    values = np.round(rng.normal(0, 1, n) * np.array(sigmas)[rows]).astype(np.int32)
    lo = offset[rows]
    hi = lo + cdf_len[rows] - 2
    clipped = np.clip(values, lo, hi).astype(np.int32)   # the anchors have no escape

    # constriction, categorical with our integer tables: one model per row, symbols grouped by row
    order = np.argsort(rows, kind="stable")
    groups = []
    for r in range(len(sigmas)):
        idx = order[np.searchsorted(rows[order], r):np.searchsorted(rows[order], r, side="right")]
        freq = np.diff(cdf[r, :cdf_len[r] + 1]).astype(np.float64)
        model = constriction.stream.model.Categorical(freq / freq.sum(), perfect=False)
        groups.append((model, (clipped[idx] - offset[r]).astype(np.int32)))

    def cat_encode():
        coder = constriction.stream.stack.AnsCoder()
        for model, sym in reversed(groups):
            coder.encode_reverse(sym, model)
        return coder.get_compressed()

    cat_data = cat_encode()

    def cat_decode():
        coder = constriction.stream.stack.AnsCoder(cat_data)
        return [coder.decode(model, sym.size) for model, sym in groups]

    # constriction, quantized Gaussian with per-symbol sigma
    K = int(cdf_len.max())
    family = constriction.stream.model.QuantizedGaussian(-K, K)
    means = np.zeros(n, np.float64)
    stds = np.array(sigmas)[rows].astype(np.float64)
    sym_g = np.clip(values, -K, K).astype(np.int32)

    def gauss_encode():
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(sym_g, family, means, stds)
        return coder.get_compressed()

    g_data = gauss_encode()

    def gauss_decode():
        coder = constriction.stream.stack.AnsCoder(g_data)
        return coder.decode(family, means, stds)

    tables = rans.Tables(cdf, cdf_len, offset)
    for S in (1, 8):
        starts = np.linspace(0, n, S + 1).astype(np.int64)
        streams = rans.encode_cpu(values, rows, starts, tables)
        data = b"".join(streams)
        lengths = [len(s) for s in streams]
        assert np.array_equal(rans.decode_cpu(data, lengths, starts, rows, tables)[0], values)
        ours = {"enc": lambda: rans.encode_cpu(values, rows, starts, tables),
                "dec": lambda: rans.decode_cpu(data, lengths, starts, rows, tables)}
        anchors = {("enc", "categorical"): cat_encode, ("dec", "categorical"): cat_decode,
                   ("enc", "quantized-gaussian"): gauss_encode, ("dec", "quantized-gaussian"): gauss_decode}
        tag = f"{S} substream{'s' if S > 1 else ''}, {threads if S > 1 else 1} thread{'s' if S > 1 and threads > 1 else ''}"
        for (op, anchor), fn in anchors.items():
            # each comparison interleaves its own two contenders only, so each
            # runs right after the other (a third coder's long calls would
            # leave the caches cold for whoever follows them)
            med = interleaved({"ours": ours[op], "anchor": fn}, repeats)
            word = "encode" if op == "enc" else "decode"
            line(f"rans {word} vs constriction {anchor} [{n} symbols, {tag}]",
                 n / med["ours"] / 1e6, n / med["anchor"] / 1e6, "Msym/s")
    ideal = rans.ideal_bits(values[:20000], rows[:20000], cdf, cdf_len, offset) / 8
    print(f"# size check on 20000 symbols: ideal {ideal:.0f} bytes; constriction categorical "
          f"{len(cat_data) * 4} bytes for all {n}; ours {len(data)} bytes for all {n}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--only", choices=["conv", "rans"], default=None)
    args = p.parse_args(argv)
    import numba
    import torch
    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"# numba {numba.__version__}, torch {torch.__version__}, {args.threads} threads, "
          f"medians of {args.repeats} interleaved repeats")
    if args.only in (None, "conv"):
        bench_conv(args.repeats, args.threads)
    if args.only in (None, "rans"):
        bench_rans(args.repeats, args.threads)


if __name__ == "__main__":
    main()
