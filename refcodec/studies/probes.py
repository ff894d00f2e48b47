"""Architecture probes: ``python -m refcodec.studies.probes RUN [RUN ...]``.

Compares training runs of candidate architectures at equal CPU time
(issue 19, "probe before you commit").  For each run folder it reads the
trainer's log and prints, at each Kodak evaluation:

- the CPU-hours the run's process had used (``cpu ... h`` in the log: all
  its threads, the evaluations included);
- the trainer's Kodak score (mean of bpp + lambda * MSE over its 8 images and
  5 rates; lower is better);
- a proxy BD-rate against VVC intra: the trainer's estimated bpp and PSNR-RGB
  at its 5 rates, averaged over its 8 Kodak images (kodim01, 04, ..., 22),
  against the mean VVC curve of the same 8 images (../shared/anchors).  It is
  an estimate from likelihoods, not from streams: use it to rank the runs,
  and ``refcodec.studies.compare_models`` for the figures of a model;

then the iterations per CPU-hour and the unquantized ceiling of the run's
last weights: the PSNR-RGB of g_s(g_a(x)) on kodim01, in float, y not
rounded: what the transforms alone can reconstruct, whatever the rate.
``--markdown`` prints the same as tables for docs/.
"""

import argparse
import csv
import math
import os
import re

import numpy as np

from .. import arch as A
from ..eval.bdrate import bd_rate

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")
#: The trainer's evaluation images (``files[::3]`` of the 24).
EVAL_IMAGES = [f"kodim{i:02d}" for i in range(1, 25, 3)]

_KODAK = re.compile(r"kodak step (\d+) score ([\d.]+)(?: cpu ([\d.]+) h)?(.*)")
_ROW = re.compile(r"\[beta ([\d.]+): ([\d.]+) bpp ([\d.]+) dB\]")
_START = re.compile(r"(initialised from .*|resumed .*) \(step (\d+)")


def vvc_curve(images=EVAL_IMAGES, shared=SHARED):
    """Mean (bpp, PSNR-RGB) of VVC intra over ``images``, per QP."""
    path = os.path.join(shared, "anchors", "kodak_rd_per_image.csv")
    if not os.path.exists(path):
        return None
    pts = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["codec"] == "vvenc_ai_420" and r["image"] in images:
                pts.setdefault(r["setting"], []).append((float(r["bpp"]), float(r["psnr_rgb"])))
    rows = [np.mean(v, axis=0) for v in pts.values() if len(v) == len(images)]
    return np.array(sorted(rows, key=lambda r: r[0]))


def read_log(path):
    """[(step, score, cpu_hours or None, [(beta, bpp, psnr)...])] of a train.log
    (the last training of the folder: from its last start on)."""
    evals = []
    with open(path) as f:
        for line in f:
            if _START.search(line):
                evals = []
            m = _KODAK.search(line)
            if m:
                rows = [tuple(float(v) for v in r) for r in _ROW.findall(m.group(4))]
                evals.append((int(m.group(1)), float(m.group(2)),
                              float(m.group(3)) if m.group(3) else None, rows))
    return evals


def proxy_bd(rows, vvc):
    if vvc is None:
        return float("nan")
    pts = [(b, p) for _, b, p in rows if b > 0]
    return bd_rate(vvc[:, 0], vvc[:, 1], [b for b, _ in pts], [p for _, p in pts])


def ceiling(weights, image):
    """PSNR-RGB of g_s(g_a(x)) in float, y unrounded (numpy float networks)."""
    from PIL import Image
    from ..arch import YCBCR_TO_RGB
    from ..colour import to_ycbcr
    from ..nn import load_float, run_float
    arch, params, _ = load_float(weights)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    rgb = rgb[:rgb.shape[0] // 16 * 16, :rgb.shape[1] // 16 * 16]
    y = run_float(arch["g_a"], params, "g_a", to_ycbcr(rgb))
    x_hat = run_float(arch["g_s"], params, "g_s", y).astype(np.float64) + [0.5, 0.0, 0.0]
    out = np.clip(np.round(x_hat @ np.array(YCBCR_TO_RGB).T * 255), 0, 255)
    mse = np.mean((out - rgb.astype(np.float64)) ** 2)
    return 10 * math.log10(255 ** 2 / mse)


def steps_per_cpu_hour(evals):
    timed = [(s, c) for s, _, c, _ in evals if c is not None]
    if len(timed) < 2:
        return float("nan")
    (s0, c0), (s1, c1) = timed[0], timed[-1]
    return (s1 - s0) / (c1 - c0)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.probes", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run folders (train.log, last.npz)")
    p.add_argument("--image", default=os.path.join(SHARED, "data", "kodak", "kodim01.png"),
                   help="picture of the unquantized ceiling (default kodim01)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    vvc = vvc_curve()
    summary = []
    for run in args.runs:
        evals = read_log(os.path.join(run, "train.log"))
        name = os.path.basename(os.path.normpath(run))
        if args.markdown:
            print(f"\n{name}\n\n| step | CPU-hours | score | proxy BD vs VVC (8 images) |\n|---:|---:|---:|---:|")
        else:
            print(f"{name}: step, CPU-hours, score, proxy BD-rate vs VVC (8 images)")
        for step, score, cpu, rows in evals:
            bd = proxy_bd(rows, vvc)
            c = f"{cpu:.2f}" if cpu is not None else "-"
            print(f"| {step} | {c} | {score:.4f} | {bd:+.1f} % |" if args.markdown
                  else f"  {step:7d} {c:>6s} {score:.4f} {bd:+6.1f} %")
        last = os.path.join(run, "last.npz")
        ceil, macs = float("nan"), {}
        if os.path.exists(last):
            from ..nn import load_float
            macs = A.macs_per_pixel(load_float(last)[0])
            if os.path.exists(args.image):
                ceil = ceiling(last, args.image)
        summary.append((name, steps_per_cpu_hour(evals), ceil, evals[-1] if evals else None, macs))
    print("\n| run | iterations per CPU-hour | ceiling g_s(g_a(x)), kodim01 | last score | last proxy BD "
          "| kMAC/pixel: g_a, decoder |\n|---|---:|---:|---:|---:|---:|")
    for name, rate, ceil, last, macs in summary:
        score = f"{last[1]:.4f}" if last else "-"
        bd = f"{proxy_bd(last[3], vvc):+.1f} %" if last else "-"
        mac = (f"{macs['g_a'] / 1000:.1f}, {sum(macs[n] for n in A.DECODER_NETS if n in macs) / 1000:.1f}"
               if macs else "-")
        print(f"| {name} | {rate:.0f} | {ceil:.2f} dB | {score} | {bd} | {mac} |")


if __name__ == "__main__":
    main()
