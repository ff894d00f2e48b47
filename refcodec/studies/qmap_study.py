"""Quality-map study over Kodak: each strategy against flat, rates matched.

``python -m refcodec.studies.qmap_study [--kodak DIR] [--images N] [--targets 0.12,0.25,0.5,0.75]``

For ``activity``, ``rdo`` and ``rdo/ms-ssim`` (the rdo map with ``tune
"ms-ssim"``) against ``flat``, with every (image, target) rate-matched
(bit-rate matching, ±1 %): BD-rate on PSNR-Y, PSNR-RGB and MS-SSIM (in dB,
-10 log10(1 - MS-SSIM); mean curves, pchip), the best per-image PSNR-Y gain
at equal rate, the map's share of the stream, and the time of the matched
encode against flat's (median ratio).  Then a region-of-interest example: a
centred rectangle as the mask (Q 6 inside, -3 outside), PSNR-Y inside and
outside against flat at the same total rate.

``--strategies`` also takes ``bdmGAMMA`` (:func:`bdm_map`, a map from the
picture's own bit distribution) and ``rdo@LO:HI:REFINE[:BUDGET]`` (the rdo
map with candidates LO ... HI, REFINE refining passes and, optionally, the
map's bit budget in percent); ``--oracle`` prints what
a per-block Q could save at most (:func:`oracle_headroom`).

``--json RESULTS.json`` keeps every (picture, target, strategy) result
there, written after each picture, and codes only the ones it lacks, so a
study over 24 pictures can run in parts (``--pick``) and be summed up by a
last run over all of them.  The file names its model and encoder settings
(``results_key``); a file of another model, or of other settings, is
refused.  Encode times come from the run that coded each result.
"""

import argparse
import functools
import glob
import json
import os
import time
import warnings

import numpy as np
from PIL import Image

from .. import decoder, encoder, model as model_mod
from ..encoder import Analysis
from ..ratecontrol import RateError, match
from ..syntax import picture
from ..eval.bdrate import bd_rate
from ..eval.metrics import ms_ssim, psnr, psnr_ycbcr

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")


#: The strategies the study compares with flat: a --qmap value, and after a
#: slash the --tune of the rdo map; "bdm" followed by gamma (e.g. bdm1.25):
#: :func:`bdm_map`, a map from the picture's own bit distribution, for
#: comparison (not an encoder option).
STRATEGIES = ("flat", "activity", "rdo", "rdo/ms-ssim", "bdm1.25", "bdm0.75")

#: The Q values bdm_map and oracle_headroom choose from (by default).
STUDY_CANDIDATES = tuple(range(-4, 5))

#: The block of the bdm maps (32 x 32 pixels: the size rdo picks most often).
BDM_BLOCK_LOG2 = 1


def bdm_map(an, beta_code, gamma, block_log2=BDM_BLOCK_LOG2, candidates=None):
    """A Q map (block grid) from the picture's own bit distribution map, the way
    the JPEG AI study turns VVC intra's distribution into Q (arXiv 2402.17470;
    VVC cannot be run here).  The BDM is the exact y bits per block of the
    picture coded at ``beta_code`` with a flat map; the target distribution
    is the BDM raised to ``gamma`` and rescaled to the same total (gamma > 1
    spreads the bits the way VVC's larger-variance distribution does, < 1
    evens them out); each block takes the candidate Q whose measured bits
    (the picture coded with that uniform Q) are nearest the target in log.
    Rates only: no reconstruction."""
    from ..encoder import _blocks
    cand = np.array(candidates or STUDY_CANDIDATES)
    R = []
    for v in cand:
        q, rows = an.quantize(beta_code, np.full((an.hy, an.wy), v, np.int32), 0)
        R.append(an.model.y_tables.symbol_bits(q, rows).reshape(an.hy, an.wy, -1).sum(axis=2))
    R = _blocks(np.array(R, np.float64), block_log2)
    b = R[list(cand).index(0)]
    t = b.sum() * b ** gamma / max((b ** gamma).sum(), 1e-12)
    return cand[np.argmin(np.abs(np.log1p(R) - np.log1p(t)[None]), axis=0)].astype(np.int32)


#: The fields of one result in --json (``res`` below, then the map's share of
#: the stream and its block in pixels; ``None`` for flat's).
RESULT_FIELDS = ("bpp", "psnr_y", "ms_ssim", "psnr_rgb", "beta_code", "seconds", "share", "block")


def results_key(m, block):
    """What a --json file's results depend on besides the picture, target and
    strategy: the model (its id), the forced block size and the encoder's
    defaults that shape every map (rdo's candidates, passes, budget; the
    rounding knots)."""
    return {"model_id": m.model_id.hex(), "block": block,
            "rdo": {tune: [list(c), passes] for tune, (c, passes) in encoder.RDO_SETTINGS.items()},
            "rdo_budget": encoder.RDO_MAP_BUDGET,
            "rdoq_knots": [list(k) for k in encoder.RDOQ_KNOTS]}


def load_results(path, key):
    """The results of an earlier --json run, {(picture, target, strategy):
    record or None (unreachable)}; {} when the file does not exist.  A file
    written for another model or other settings raises ValueError."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or data.get("key") != json.loads(json.dumps(key)):
        raise ValueError(f"{path}: results of another model or other encoder settings "
                         f"({data.get('key') if isinstance(data, dict) else 'not a results file'}; "
                         f"this run: {key})")
    return {(r["picture"], r["target"], r["strategy"]): r.get("result") for r in data["results"]}


def save_results(path, key, results):
    """Write ``results`` ({(picture, target, strategy): record or None}) to
    ``path`` atomically (a stopped run leaves the previous file whole)."""
    rows = [{"picture": f, "target": t, "strategy": s, "result": r} for (f, t, s), r in sorted(
        results.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2]))]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"key": key, "results": rows}, f, indent=0)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.qmap_study", description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--pick", default=None, metavar="I,J,...",
                   help="only these pictures of the folder, by their place in it from 1 (kodimII.png on Kodak)")
    p.add_argument("--targets", default="0.12,0.25,0.5,0.75")
    p.add_argument("--block", type=int, default=None,
                   help="qmap_block_log2 (default: rdo picks its own, the others 0)")
    p.add_argument("--strategies", default=",".join(STRATEGIES[:4]),
                   help=f"flat and any of {', '.join(STRATEGIES[1:])}, bdmGAMMA, rdo@LO:HI:REFINE[:BUDGET] (rdo's "
                        "candidates LO ... HI, its refining passes, its map budget in %%) (default: "
                        f"{', '.join(STRATEGIES[:4])})")
    p.add_argument("--roi", action=argparse.BooleanOptionalAction, default=True,
                   help="the region-of-interest example at the end")
    p.add_argument("--model", default=None, help="model file (default: the shipped default)")
    p.add_argument("--oracle", action="store_true",
                   help="also print, per pair, what a per-block Q could save at most (oracle_headroom)")
    p.add_argument("--json", default=None, metavar="RESULTS.json",
                   help="keep every result here and code only those it lacks (a study in parts)")
    args = p.parse_args(argv)
    strategies = ["flat"] + [s for s in args.strategies.split(",") if s and s != "flat"]
    for s in strategies:
        if s not in STRATEGIES and not _bdm_gamma(s) and not _valid_rdo_variant(s):
            p.error(f"unknown strategy {s!r} (have {', '.join(STRATEGIES)})")
    warnings.simplefilter("ignore")
    m = model_mod.load(args.model)
    key = results_key(m, args.block)
    try:
        stored = load_results(args.json, key) if args.json else {}
    except (ValueError, KeyError, TypeError) as e:
        p.error(f"--json: {e}")
    targets = [float(t) for t in args.targets.split(",")]
    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))
    files = [files[int(i) - 1] for i in args.pick.split(",")] if args.pick else files[:args.images]
    oracle = []
    res = {s: {} for s in strategies}
    secs = {s: {} for s in strategies}
    shares = {s: [] for s in strategies[1:]}
    blocks = {s: [] for s in strategies[1:]}
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        for t in targets:
            for s in strategies:
                name = (os.path.basename(f), t, s)
                if name in stored:
                    r = stored[name]
                    if r is not None:
                        res[s][(f, t)] = tuple(r[k] for k in RESULT_FIELDS[:5])
                        secs[s][(f, t)] = r["seconds"]
                        if s != "flat":
                            shares[s].append(r["share"])
                            blocks[s].append(r["block"])
                    continue
                qmap, _, tune = s.partition("/")
                try:
                    t0 = time.perf_counter()
                    if _bdm_gamma(s):
                        # at the flat match's operating point (its time counted too)
                        if (f, t) not in res["flat"]:
                            continue
                        code0 = res["flat"][(f, t)][4]
                        k = BDM_BLOCK_LOG2 if args.block is None else args.block
                        Q = bdm_map(Analysis(rgb, m), code0, _bdm_gamma(s), k)
                        r = match(rgb, t, m, qmap=Q, qmap_block_log2=k, nearest=False)
                        t0 -= secs["flat"][(f, t)]
                    else:
                        qmap, kw = _rdo_variant(qmap)
                        saved = encoder.rdo_map
                        if kw:
                            encoder.rdo_map = functools.partial(saved, **kw)
                        try:
                            r = match(rgb, t, m, qmap=qmap, qmap_block_log2=args.block, nearest=False,
                                      tune=tune or "psnr")
                        finally:
                            encoder.rdo_map = saved
                    secs[s][(f, t)] = time.perf_counter() - t0
                except RateError:
                    stored[name] = None
                    continue
                out = decoder.decode(r.data, models=[m])
                res[s][(f, t)] = (r.bpp, psnr_ycbcr(rgb, out)[0], ms_ssim(rgb, out), psnr(rgb, out), r.beta_code)
                share = block = None
                if s != "flat":
                    pic = picture(r.data)
                    share, block = pic.sizes.q_size / len(r.data), 16 << pic.header.qmap_block_log2
                    shares[s].append(share)
                    blocks[s].append(block)
                stored[name] = dict(zip(RESULT_FIELDS, (*map(float, res[s][(f, t)][:4]), int(r.beta_code),
                                                        secs[s][(f, t)], share, block)))
                if args.oracle and s == "flat":
                    an = Analysis(rgb, m)
                    heads = [oracle_headroom(an, rgb, r.beta_code, block_log2=k) for k in (0, 1)]
                    oracle.append(heads)
                    print(f"# {os.path.basename(f)} @ {t} bpp: oracle headroom {heads[0]:.2f} % (16 px), "
                          f"{heads[1]:.2f} % (32 px) of the flat rate", flush=True)
        if args.json:
            save_results(args.json, key, stored)
        print(f"# {os.path.basename(f)} done", flush=True)
    keys = sorted(set.intersection(*(set(res[s]) for s in strategies)))
    if not keys:
        print("no (image, target) pair was reachable by every strategy")
        return
    blk = (f"rdo's own choice, {16 << BDM_BLOCK_LOG2} px for bdm, 16 px for the others" if args.block is None
           else f"{16 << args.block} px")
    print(f"\n{len(keys)} (image, target) pairs reachable by every strategy; blocks: {blk}")
    for s in strategies[1:]:
        curves = {}
        for name in ("flat", s):
            pts = [(np.mean([res[name][k][0] for k in keys if k[1] == t]),
                    np.mean([res[name][k][1] for k in keys if k[1] == t]),
                    np.mean([-10 * np.log10(max(1 - res[name][k][2], 1e-12)) for k in keys if k[1] == t]),
                    np.mean([res[name][k][3] for k in keys if k[1] == t]))
                   for t in targets if any(k[1] == t for k in keys)]
            curves[name] = np.array(pts)
        a, b = curves["flat"], curves[s]
        # MS-SSIM is undefined (nan) on pictures too small for its five scales
        bd_y, bd_ms, bd_rgb = (bd_rate(a[:, 0], a[:, i], b[:, 0], b[:, i])
                               if np.isfinite(a[:, i]).all() and np.isfinite(b[:, i]).all() else float("nan")
                               for i in (1, 2, 3))
        gains = [(res[s][k][1] - res["flat"][k][1], k) for k in keys]
        g, (f, t) = max(gains)
        ratio = np.median([secs[s][k] / secs["flat"][k] for k in keys])
        print(f"{s:12s} vs flat: BD-rate PSNR-Y {bd_y:+.2f} %, PSNR-RGB {bd_rgb:+.2f} %, MS-SSIM(dB) {bd_ms:+.2f} %; "
              f"best PSNR-Y gain {g:+.3f} dB ({os.path.basename(f)} @ {t} bpp); map share of the stream: mean "
              f"{100 * np.mean(shares[s]):.2f} %, max {100 * np.max(shares[s]):.2f} %; encode time x{ratio:.2f} "
              f"flat's (median); blocks (pixels: count) "
              f"{ {int(b): int(n) for b, n in zip(*np.unique(blocks[s], return_counts=True))} }")
    if oracle:
        o = np.array(oracle)
        print(f"oracle headroom (per-block Q, map bits free): mean {o[:, 0].mean():.2f} % of the flat rate on "
              f"16 px blocks (range {o[:, 0].min():.2f} ... {o[:, 0].max():.2f}), {o[:, 1].mean():.2f} % on 32 px")
    if not args.roi:
        return

    # region of interest
    f = files[0]
    rgb = np.asarray(Image.open(f).convert("RGB"))
    h, w = rgb.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4:3 * h // 4, w // 4:3 * w // 4] = 255
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "roi.png")
        Image.fromarray(mask).save(path)
        for t in targets[::-1]:
            try:
                flat = match(rgb, t, m)
                roi = match(rgb, flat.bpp, m, qmap=path, roi_q=(6, -3))
            except RateError:
                continue
            a, b = decoder.decode(flat.data, models=[m]), decoder.decode(roi.data, models=[m])
            inside = mask > 0

            def py(x, sel):
                return psnr_ycbcr(rgb[sel][None], x[sel][None])[0]
            print(f"ROI {os.path.basename(f)} (centre rectangle, Q 6/-3) at {flat.bpp:.3f} vs {roi.bpp:.3f} bpp: "
                  f"PSNR-Y inside {py(a, inside):.2f} -> {py(b, inside):.2f} dB, outside {py(a, ~inside):.2f} -> "
                  f"{py(b, ~inside):.2f} dB")
            break


def oracle_headroom(an, rgb, beta_code, candidates=None, block_log2=0):
    """What a per-block Q could save at most: each block takes the candidate
    with the least D + lambda R as measured on the picture coded with that
    uniform Q (the rdo strategy's own measurements, encoder._rdo_measure),
    its map bits free and its neighbours' choices ignored; returned as the
    saving in D + lambda R against no map, in bits (divided by lambda), as a
    percentage of the picture's y bits without a map."""
    from ..encoder import _blocks, _rdo_measure
    cand = list(candidates or STUDY_CANDIDATES)
    R, D, lam = _rdo_measure(an, rgb, beta_code, cand)
    i0 = cand.index(0)
    if lam <= 0:
        return 0.0
    J = _blocks(D, block_log2) + lam * _blocks(R, block_log2)
    return float((J[i0].sum() - J.min(axis=0).sum()) / lam / R[i0].sum() * 100)


def _rdo_variant(qmap):
    """("rdo", rdo_map keywords) of "rdo@LO:HI:REFINE[:BUDGET]" (candidates
    LO ... HI, REFINE refining passes, the map's bit budget in percent of the
    picture's, default encoder.RDO_MAP_BUDGET), else (qmap, {})."""
    if not qmap.startswith("rdo@"):
        return qmap, {}
    fields = qmap[4:].split(":")
    if len(fields) not in (3, 4):
        raise ValueError(f"{qmap}: rdo@LO:HI:REFINE[:BUDGET]")
    lo, hi, refine = (int(v) for v in fields[:3])
    kw = {"candidates": tuple(range(lo, hi + 1)), "refine": refine}
    if len(fields) == 4:
        kw["budget"] = float(fields[3]) / 100
    return "rdo", kw


def _bdm_gamma(s):
    """gamma of a bdm strategy name (bdm1.25), else None."""
    if s.startswith("bdm"):
        try:
            g = float(s[3:])
        except ValueError:
            return None
        return g if g > 0 else None
    return None


def _valid_rdo_variant(s):
    qmap = s.partition("/")[0]
    try:
        q, kw = _rdo_variant(qmap)
    except ValueError:
        return False
    return (q == "rdo" and bool(kw) and 0 in kw["candidates"] and kw["refine"] >= 0
            and 0 < kw.get("budget", 1) <= 1)


if __name__ == "__main__":
    main()
