"""Bit-rate matching benchmark over Kodak.

``python -m refcodec.ratecontrol.bench [--kodak DIR] [--images N] [--pick I,J,...] [--targets ...]
[--side both|below] [--qmap rdo]``

Prints, in one run: the share of (image, target) pairs inside the tolerance,
mean and maximum trials per pair, mean |relative error|, the wall-time ratio
bisect / fast, and the fast match time over one encode at a fixed beta.
Targets outside an image's reachable range count as misses (they are listed).
``--qmap rdo`` matches with the rdo quality map (each trial prices the map
too; issue 21 asks for at most 4 trials on average); the plain encode it is
timed against then codes the rdo map as well.
"""

import argparse
import glob
import os
import statistics
import time
import warnings

import numpy as np
from PIL import Image

from .. import encoder, model as model_mod
from . import RateError, match

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.ratecontrol.bench", description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--targets", default="0.06,0.12,0.25,0.5,0.75,1.0")
    p.add_argument("--tolerance", type=float, default=0.01)
    p.add_argument("--side", choices=("both", "below"), default="both")
    p.add_argument("--no-bisect", action="store_true", help="skip the (slow) baseline")
    p.add_argument("--pick", default=None, metavar="I,J,...",
                   help="only these pictures of the folder, by their place in it from 1 (instead of --images)")
    p.add_argument("--qmap", choices=("flat", "rdo"), default="flat", help="the quality map to match with")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    m = model_mod.load()
    targets = [float(t) for t in args.targets.split(",")]
    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))
    files = [files[int(i) - 1] for i in args.pick.split(",")] if args.pick else files[:args.images]
    qmap = None if args.qmap == "flat" else args.qmap
    fast, slow, enc_times, misses = [], [], [], []
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        t = time.perf_counter()
        encoder.encode(rgb, beta=0.5, model=m, qmap=qmap)
        enc_times.append(time.perf_counter() - t)
        for tgt in targets:
            for method, out in (("fast", fast), ("bisect", slow)):
                if method == "bisect" and args.no_bisect:
                    continue
                try:
                    r = match(rgb, tgt, m, method=method, tolerance=args.tolerance, side=args.side, qmap=qmap)
                    err = (r.bpp - tgt) / tgt
                    ok = (-args.tolerance <= err <= 0) if args.side == "below" else abs(err) <= args.tolerance
                    out.append({"ok": ok, "trials": r.trials, "err": abs(err), "s": r.seconds,
                                "ext": getattr(r, "extension_q", 0)})
                except RateError as e:
                    out.append({"ok": False, "trials": 0, "err": float("nan"), "s": float("nan")})
                    if method == "fast":
                        misses.append(f"{os.path.basename(f)} @ {tgt}: {e}")
        print(f"# {os.path.basename(f)} done", flush=True)
    n = len(fast)
    ok = [d for d in fast if d["ok"]]
    print(f"fast: {len(ok)}/{n} pairs inside ±{args.tolerance:.0%} ({args.side}) = {100 * len(ok) / n:.1f} %; "
          f"trials mean {statistics.mean(d['trials'] for d in fast if d['trials']):.2f}, "
          f"max {max(d['trials'] for d in fast)}; mean |error| "
          f"{100 * np.nanmean([d['err'] for d in fast]):.3f} %")
    ext = [d for d in fast if d.get("ext")]
    if ext:
        print(f"  of which {len(ext)} beyond the gain unit's range, matched with a uniform quality map "
              f"(Q {min(d['ext'] for d in ext)} ... {max(d['ext'] for d in ext)}; trials mean "
              f"{statistics.mean(d['trials'] for d in ext):.2f})")
    t_fast = np.nanmedian([d["s"] for d in fast])
    print(f"fast match median {t_fast:.3f} s; one encode at fixed beta median {statistics.median(enc_times):.3f} s; "
          f"ratio {t_fast / statistics.median(enc_times):.2f}")
    if slow:
        oks = [d for d in slow if d["ok"]]
        t_slow = np.nansum([d["s"] for d in slow])
        t_f = np.nansum([d["s"] for d in fast])
        print(f"bisect: {len(oks)}/{len(slow)} inside; trials mean "
              f"{statistics.mean(d['trials'] for d in slow if d['trials']):.2f}; "
              f"wall time bisect/fast: ratio {t_slow / t_f:.2f} (fast {t_f:.1f} s, bisect {t_slow:.1f} s)")
    for line in misses:
        print(f"miss: {line}")


if __name__ == "__main__":
    main()
