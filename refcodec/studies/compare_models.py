"""Whether a new model may become the default: ``python -m refcodec.studies.compare_models NEW.npz
[--old DEFAULT.npz] [--kodak DIR] [--jobs 2] [--pick 1,20] [--json OUT] [--old-points EARLIER.json]``.

Both models code every Kodak image at the same target rates by bit-rate
matching (the codec as it ships: rate-aware rounding, the context), the
streams are decoded by the integer decoder, and the line per image gives the
BD-rate (PSNR-RGB, pchip) of the new model against the old; then the
24-image mean curves against VVC intra (../shared/anchors), PSNR-RGB and
PSNR-Y, for both.  The rule of the project: a new model becomes the default
only when it beats the shipped one on all 24 images.

``--pick`` codes only those Kodak pictures (1-based, in name order): a quick
look at the ones a candidate lost before (the mean curves against VVC need
all 24 and are left out).  ``--old-points`` takes the old model's points
from the ``--json`` of an earlier run instead of coding them again (half
the time); they are valid only while the encoder is the same (rounding
knots, rate matching), which the caller answers for.
"""

import argparse
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..eval.bdrate import bd_rate

HERE = os.path.dirname(__file__)
SHARED = os.path.join(HERE, "..", "..", "..", "shared")
TARGETS = (0.06, 0.12, 0.25, 0.5, 0.75, 1.0)


def job(path, model_path, targets):
    from .. import decoder, model as model_mod
    from ..eval.metrics import psnr, psnr_ycbcr
    from ..imageio import load_image
    from ..ratecontrol import RateError, match
    m = model_mod.load(model_path)
    rgb = load_image(path, warn=False)[0]
    pts = []
    for t in targets:
        try:
            r = match(rgb, t, model=m)
        except RateError:
            continue
        out = decoder.decode(r.data, models=[m])
        pts.append({"target": t, "bpp": r.bpp, "psnr_rgb": psnr(rgb, out), "psnr_y": psnr_ycbcr(rgb, out)[0]})
    return path, model_path, pts


def mean_curve(per_image):
    common = set.intersection(*({p["target"] for p in pts} for pts in per_image.values()))
    return [{k: float(np.mean([next(p[k] for p in pts if p["target"] == t) for pts in per_image.values()]))
             for k in ("bpp", "psnr_rgb", "psnr_y")} for t in sorted(common)]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.compare_models", description=__doc__.split("\n")[0])
    p.add_argument("new")
    p.add_argument("--old", default=None, help="the model to beat (default: the default model)")
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", default=None, help="write every point here")
    p.add_argument("--pick", default=None, help="only these Kodak pictures, e.g. 1,20 (1-based, in name order)")
    p.add_argument("--old-points", default=None, metavar="JSON",
                   help="the old model's points from an earlier run's --json (the same encoder)")
    args = p.parse_args(argv)
    if args.old is None:
        from ..model import DEFAULT_MODEL
        args.old = DEFAULT_MODEL
    files = sorted(os.path.join(args.kodak, f) for f in os.listdir(args.kodak) if f.endswith(".png"))
    every = len(files)
    if args.pick:
        idx = [int(v) for v in args.pick.split(",")]
        if any(not 1 <= i <= len(files) for i in idx):
            raise SystemExit(f"--pick {args.pick}: pictures are numbered 1 ... {len(files)}")
        files = [files[i - 1] for i in idx]
    per = {args.old: {}, args.new: {}}
    if args.old_points:
        earlier = json.load(open(args.old_points))
        got = earlier.get(args.old) or next((v for k, v in earlier.items()
                                             if os.path.basename(k) == os.path.basename(args.old)), None)
        if got is None:
            raise SystemExit(f"--old-points {args.old_points}: no points of {os.path.basename(args.old)} there")
        per[args.old] = {os.path.basename(f): got[os.path.basename(f)] for f in files
                         if os.path.basename(f) in got}
        print(f"old model's points of {len(per[args.old])} pictures from {args.old_points} (not coded again)")
    todo = [(f, m) for f in files for m in (args.old, args.new) if m == args.new or os.path.basename(f) not in per[m]]
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for path, mp, pts in pool.map(job, [f for f, _ in todo], [m for _, m in todo], [TARGETS] * len(todo)):
            per[mp][os.path.basename(path)] = pts
    wins = 0
    for name in sorted(per[args.new]):
        a, b = per[args.old][name], per[args.new][name]
        bd = bd_rate([q["bpp"] for q in a], [q["psnr_rgb"] for q in a], [q["bpp"] for q in b],
                     [q["psnr_rgb"] for q in b])
        wins += bd < 0
        print(f"{name}: new vs old {bd:+.2f} % PSNR-RGB", flush=True)
    print(f"the new model is better on {wins} of {len(files)} images")
    anchors = os.path.join(SHARED, "anchors", "kodak_rd.json")
    if len(files) < every:
        print("the mean curves against VVC intra need every picture: left out with --pick")
    elif os.path.exists(anchors):
        vvc = json.load(open(anchors))["vvenc_ai_420"]
        for label, mp in (("old", args.old), ("new", args.new)):
            c = mean_curve(per[mp])
            row = [bd_rate([q["bpp"] for q in vvc], [q[k] for q in vvc], [q["bpp"] for q in c], [q[k] for q in c])
                   for k in ("psnr_rgb", "psnr_y")]
            pts = ", ".join(f"{q['bpp']:.3f} / {q['psnr_rgb']:.2f}" for q in c)
            print(f"{label} ({os.path.basename(mp)}): vs VVC intra {row[0]:+.1f} % PSNR-RGB, {row[1]:+.1f} % "
                  f"PSNR-Y; mean points (bpp / PSNR-RGB) {pts}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(per, f, indent=1)


if __name__ == "__main__":
    main()
