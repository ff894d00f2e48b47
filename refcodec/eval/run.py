"""``refcodec eval DIR``: RD curves and BD-rates of refcodec and the codecs people know.

    refcodec eval DIR [--targets 0.06,0.12,0.25,0.5,0.75,1.0]
                      [--codecs refcodec,jpeg,webp,avif,jxl,hevc,vvc] [--anchor NAME]
                      [--jobs N] [--out OUTDIR] [--scheduler ADDRESS]

refcodec is coded at every target by bit-rate matching; the other codecs by a
sweep of their quality setting (the settings of ../shared/anchors).  Every
decoded picture is measured (bpp from the file size; PSNR-Y, PSNR-Cb, PSNR-Cr
on BT.709 YCbCr from 8-bit RGB; PSNR-RGB; MS-SSIM on RGB).  Written to
OUTDIR: ``rd.json`` and ``rd.csv`` (per image and mean points), ``table.md``
(the BD-rate table and mean points in Markdown), ``bdrate.json``
(pchip BD-rate of every codec against the anchor on PSNR-RGB, PSNR-Y and
MS-SSIM in dB; also printed) and ``rd.png`` (needs matplotlib, the ``eval``
extra).  Images run in parallel (``--jobs``), or on a Dask cluster
(``--scheduler``, the ``dask`` extra).  A codec that is not installed is
skipped with one line.
"""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
from PIL import Image

from .bdrate import bd_rate
from .metrics import ms_ssim, psnr, psnr_ycbcr

SETTINGS = {
    "jpeg": [5, 10, 15, 20, 30, 50, 70, 85],
    "webp": [0, 5, 10, 20, 40, 60, 75, 85],
    "avif": [2, 10, 20, 30, 40, 50, 60, 70],
    "jxl": [1, 1.5, 2, 3, 5, 8, 12, 18],
    "hevc": [22, 26, 30, 34, 38, 42, 46, 50],
    "vvc": [22, 26, 30, 34, 38, 42, 46, 50],
}
METRICS = ("psnr_rgb", "psnr_y", "psnr_cb", "psnr_cr", "msssim")
#: Every codec eval knows.
CODECS = ("refcodec", "jpeg", "webp", "avif", "jxl", "hevc", "vvc")
#: The image files eval reads (any of them through refcodec.imageio).
EXTENSIONS = (".png", ".ppm", ".pgm", ".pnm", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")
#: The default anchor, and the names ../shared/anchors gives the codecs not installed here.
DEFAULT_ANCHOR = "vvc"
ANCHOR_FILE_NAMES = {"vvc": "vvenc_ai_420", "hevc": "x265_ai_444"}


# ---------------------------------------------------------------- codecs

def _pillow(rgb, fmt, **opts):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **opts)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        return len(data), np.asarray(im.convert("RGB"))


def code_jpeg(rgb, q):
    return _pillow(rgb, "JPEG", quality=int(q), optimize=True)


def code_webp(rgb, q):
    return _pillow(rgb, "WEBP", quality=int(q), method=6)


def code_avif(rgb, q):
    return _pillow(rgb, "AVIF", quality=int(q), speed=4, subsampling="4:4:4", advanced={"tune": "psnr"})


def code_jxl(rgb, d):
    import imagecodecs
    data = imagecodecs.jpegxl_encode(rgb, distance=float(d), effort=7)
    return len(data), np.asarray(imagecodecs.jpegxl_decode(data))[..., :3]


def code_hevc(rgb, qp):
    """HEVC intra through ffmpeg + libx265, 4:4:4 10 bit (the codec's own colour conversion)."""
    h, w = rgb.shape[:2]
    with tempfile.TemporaryDirectory() as d:
        src, bits, out = (os.path.join(d, n) for n in ("in.png", "out.hevc", "out.png"))
        Image.fromarray(rgb).save(src)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", src, "-pix_fmt", "yuv444p10le", "-c:v", "libx265",
                        "-x265-params", f"qp={qp}:keyint=1:info=0:log-level=error", "-preset", "veryslow", "-tune", "psnr", bits],
                       check=True)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", bits, "-pix_fmt", "rgb24", out], check=True)
        return os.path.getsize(bits), np.asarray(Image.open(out).convert("RGB"))[:h, :w]


def available(codec):
    """(ok, reason) for a codec name."""
    try:
        if codec in ("jpeg", "webp"):
            from PIL import features
            ok = features.check("jpg" if codec == "jpeg" else "webp")
            return ok, "" if ok else f"Pillow built without {codec}"
        if codec == "avif":
            from PIL import features
            ok = features.check("avif")
            return ok, "" if ok else "Pillow built without AVIF"
        if codec == "jxl":
            import imagecodecs
            ok = hasattr(imagecodecs, "jpegxl_encode") and imagecodecs.JPEGXL.available
            return ok, "" if ok else "imagecodecs without JPEG XL"
        if codec == "hevc":
            if not shutil.which("ffmpeg"):
                return False, "ffmpeg not on PATH"
            enc = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
            return "libx265" in enc, "" if "libx265" in enc else "ffmpeg without libx265"
        if codec == "vvc":
            return bool(shutil.which("vvencapp")), "vvencapp not on PATH"
        if codec == "refcodec":
            return True, ""
    except ImportError as e:
        return False, f"{e.name} not installed"
    return False, "unknown codec"


CODERS = {"jpeg": code_jpeg, "webp": code_webp, "avif": code_avif, "jxl": code_jxl, "hevc": code_hevc}


# ---------------------------------------------------------------- jobs

def measure(ref, out, nbytes):
    y, cb, cr = psnr_ycbcr(ref, out)
    return {"bpp": 8 * nbytes / (ref.shape[0] * ref.shape[1]), "psnr_rgb": psnr(ref, out), "psnr_y": y,
            "psnr_cb": cb, "psnr_cr": cr, "msssim": ms_ssim(ref, out)}


def image_job(path, codec, targets, model=None):
    """All points of one codec on one image (a picklable unit of work);
    ``model``: refcodec's model file (None: the default)."""
    import warnings
    warnings.simplefilter("ignore")
    from ..imageio import load_image
    rgb = load_image(path, warn=False)[0]
    name = os.path.splitext(os.path.basename(path))[0]
    points = []
    if codec == "refcodec":
        from ..ratecontrol import RateError, match
        from .. import decoder, model as model_mod
        m = model_mod.load(model)
        for t in targets:
            try:
                r = match(rgb, t, m, nearest=False)
            except RateError:
                continue
            p = measure(rgb, decoder.decode(r.data, models=[m]), len(r.data))
            p.update(setting=f"bpp={t}", target=t, beta=r.beta)
            points.append(p)
    else:
        for s in SETTINGS[codec]:
            nbytes, out = CODERS[codec](rgb, s)
            p = measure(rgb, out, nbytes)
            p.update(setting=f"{'qp' if codec in ('hevc', 'vvc') else 'd' if codec == 'jxl' else 'q'}={s}")
            points.append(p)
    return codec, name, points


def mean_curve(per_image):
    """Mean over images of each setting present for every image (anchors' averaging)."""
    settings = None
    for pts in per_image.values():
        s = {p["setting"] for p in pts}
        settings = s if settings is None else settings & s
    curve = []
    for s in settings or ():
        vals = [next(p for p in pts if p["setting"] == s) for pts in per_image.values()]
        m = {k: float(np.mean([v[k] for v in vals])) for k in ("bpp",) + METRICS}
        m["setting"] = s
        curve.append(m)
    return sorted(curve, key=lambda p: p["bpp"])


def _msssim_db(v):
    return -10 * np.log10(max(1 - v, 1e-12))


def bd_table(curves, anchor):
    a = curves[anchor]
    out = {}
    for name, c in curves.items():
        if name == anchor or len(c) < 4 or len(a) < 4:
            continue
        row = {}
        for key in ("psnr_rgb", "psnr_y", "msssim"):
            f = _msssim_db if key == "msssim" else (lambda v: v)
            qa, qc = [f(p[key]) for p in a], [f(p[key]) for p in c]
            if not (np.all(np.isfinite(qa)) and np.all(np.isfinite(qc))):
                row[key] = float("nan")          # e.g. MS-SSIM of pictures under 161 pixels
                continue
            row[key] = bd_rate([p["bpp"] for p in a], qa, [p["bpp"] for p in c], qc)
        out[name] = row
    return out


def anchor_curves(names):
    """Mean curves of ../shared/anchors (kodak_rd.json), for names not run here."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "anchors", "kodak_rd.json")
    if not os.path.exists(path):
        return {}
    rd = json.load(open(path))
    return {f"{k} (anchors)": [{"bpp": p["bpp"], "psnr_rgb": p["psnr_rgb"], "psnr_y": p["psnr_y"],
                                "msssim": p["msssim"], "setting": p["setting"]} for p in rd[k]]
            for k in names if k in rd}


def progress(done, total, t0):
    frac = done / max(total, 1)
    bar = "#" * int(30 * frac)
    sys.stderr.write(f"\r[{bar:30s}] {done}/{total} jobs, {time.time() - t0:.0f} s")
    sys.stderr.flush()


def codec_version(codec, model=None):
    """What a cached result depends on besides the image and the settings
    (for refcodec, the model's id -- ``model`` or the default -- and the
    encoder's defaults that shape its streams: the rate-aware rounding's
    knots, encoder.RDOQ_KNOTS)."""
    if codec == "refcodec":
        from .. import encoder, model as model_mod
        return f"model {model_mod.load(model).model_id.hex()}, rdoq knots {list(map(list, encoder.RDOQ_KNOTS))}"
    if codec in ("jpeg", "webp", "avif"):
        import PIL
        return "Pillow " + PIL.__version__
    if codec == "jxl":
        import imagecodecs
        return "imagecodecs " + imagecodecs.__version__
    if codec == "hevc":
        return subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return codec


def cache_path(cache, path, codec, targets, version):
    """One file per (image content, codec, settings, codec version)."""
    import hashlib
    with open(path, "rb") as f:
        h = hashlib.sha256(f.read())
    h.update(json.dumps([codec, SETTINGS.get(codec) if codec != "refcodec" else targets, version]).encode())
    return os.path.join(cache, f"{codec}-{os.path.splitext(os.path.basename(path))[0]}-{h.hexdigest()[:16]}.json")


def _fmt(v):
    return "n/a" if not np.isfinite(v) else f"{v:+.1f} %"


def resolve_anchor(anchor, all_curves, log):
    """The curve name of the BD-rate anchor.  An anchor the user names must be
    there (RefcodecError otherwise); the default (vvc) falls back to
    ../shared/anchors' curve, then to the first codec run, with a note."""
    from ..errors import RefcodecError
    name = anchor or DEFAULT_ANCHOR
    for cand in (name, f"{ANCHOR_FILE_NAMES.get(name, name)} (anchors)"):
        if cand in all_curves and all_curves[cand]:
            return cand
    if anchor is not None:
        raise RefcodecError(f"--anchor {anchor}: no curve for it in this run (have: "
                            f"{', '.join(k for k, c in all_curves.items() if c) or 'none'})")
    have = [k for k, c in all_curves.items() if c]
    if not have:
        return None
    log(f"note: the default anchor {DEFAULT_ANCHOR} is not installed and ../shared/anchors is not there; "
        f"BD-rates are against {have[0]} (choose one with --anchor)")
    return have[0]


def list_images(image_dir):
    from ..errors import RefcodecError
    try:
        names = sorted(os.listdir(image_dir))
    except NotADirectoryError:
        raise RefcodecError(f"eval: {image_dir} is not a directory") from None
    except OSError as e:
        raise RefcodecError(f"eval: cannot list {image_dir}: {e.strerror}") from None
    files = [os.path.join(image_dir, f) for f in names if f.lower().endswith(EXTENSIONS)]
    if not files:
        raise RefcodecError(f"eval: no images in {image_dir} (looked for {', '.join(EXTENSIONS)})")
    return files


def run(image_dir, targets, codecs, anchor, jobs, out, scheduler=None, log=print, cache=None, show_progress=True,
        model=None):
    """``model``: refcodec's model file (None: the default), so that a
    candidate can be measured against every codec before it is the default."""
    from ..errors import RefcodecError
    from ..imageio import load_image
    unknown = [c for c in codecs if c not in CODECS]
    if unknown:
        raise RefcodecError(f"unknown codec(s) {', '.join(unknown)}; known: {', '.join(CODECS)}")
    if anchor is not None and anchor not in CODECS:
        raise RefcodecError(f"--anchor {anchor}: not a codec eval knows ({', '.join(CODECS)})")
    if model is not None and "refcodec" in codecs:
        from .. import model as model_mod
        model = os.path.abspath(model)
        m = model_mod.load(model)          # a wrong model file: one clear error before any job starts
        log(f"refcodec: model {os.path.basename(model)} ({m.model_id.hex()})")
    files = list_images(image_dir)
    small = []
    for f in files:           # every image readable before any job starts: one clear error, not a traceback
        rgb = load_image(f, warn=False)[0]
        if min(rgb.shape[:2]) < 161:
            small.append(os.path.basename(f))
    if small:
        log(f"note: MS-SSIM needs pictures of at least 161 pixels a side; it is n/a for {', '.join(small)} "
            "and for the mean curves")
    todo = []
    for c in codecs:
        ok, why = available(c)
        if ok:
            todo.append(c)
        else:
            log(f"skipping {c}: {why}")
    per = {c: {} for c in todo}
    tasks = [(f, c) for c in todo for f in files]
    cached = {}
    if cache:
        os.makedirs(cache, exist_ok=True)
        versions = {c: codec_version(c, model) for c in todo}
        keys = {(f, c): cache_path(cache, f, c, targets, versions[c]) for f, c in tasks}
        for (f, c), k in keys.items():
            if os.path.exists(k):
                with open(k) as fh:
                    per[c][os.path.splitext(os.path.basename(f))[0]] = json.load(fh)
                cached[(f, c)] = True
        if cached:
            log(f"{len(cached)} of {len(tasks)} (image, codec) results from the cache {cache}")
        tasks = [t for t in tasks if t not in cached]
    t0 = time.time()
    if scheduler:
        from dask.distributed import Client
        client = Client(scheduler)
        futs = [client.submit(image_job, f, c, targets, model, pure=False) for f, c in tasks]
        from dask.distributed import as_completed as dask_completed
        iterator = dask_completed(futs)
        get = lambda fut: fut.result()  # noqa: E731
    else:
        # spawned, not forked: a fork of a process whose numba threads already ran can crash
        import multiprocessing
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
        futs = [pool.submit(image_job, f, c, targets, model) for f, c in tasks]
        iterator = as_completed(futs)
        get = lambda fut: fut.result()  # noqa: E731
    by_name = {(os.path.splitext(os.path.basename(f))[0], c): f for f, c in tasks}
    for k, fut in enumerate(iterator, 1):
        codec, name, points = get(fut)
        per[codec][name] = points
        if cache:
            with open(keys[(by_name[(name, codec)], codec)], "w") as fh:
                json.dump(points, fh)
        if show_progress:
            progress(k, len(tasks), t0)
    if show_progress and tasks:
        sys.stderr.write("\r\x1b[K")          # the bar is erased: stderr keeps only what has to be read
        sys.stderr.flush()
    if scheduler:
        client.close()
    else:
        pool.shutdown()
    curves = {c: mean_curve(per[c]) for c in todo}
    for c in todo:
        if len(curves[c]) < 4:
            why = (f"; targets out of an image's reach are left out (asked: {', '.join(map(str, targets))} bpp)"
                   if c == "refcodec" else "")
            log(f"note: {c} has {len(curves[c])} point(s) common to every image; a BD-rate needs 4{why}")
    extra = anchor_curves([ANCHOR_FILE_NAMES[c] for c in codecs if c in ANCHOR_FILE_NAMES and c not in todo])
    all_curves = dict(curves)
    all_curves.update(extra)
    anchor_name = resolve_anchor(anchor, all_curves, log)
    bd = bd_table(all_curves, anchor_name) if anchor_name else {}
    if extra:
        log(f"note: {', '.join(extra)} are the 24-image Kodak means of ../shared/anchors; they match this run "
            "only when DIR is that Kodak set")
    os.makedirs(out, exist_ok=True)
    result = {"images": [os.path.basename(f) for f in files], "targets": targets, "per_image": per,
              "mean": all_curves, "anchor": anchor_name}
    with open(os.path.join(out, "rd.json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    with open(os.path.join(out, "rd.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["codec", "image", "setting", "bpp"] + list(METRICS))
        for c in todo:
            for name in sorted(per[c]):
                for p in per[c][name]:
                    w.writerow([c, name, p["setting"], p["bpp"]] + [p[m] for m in METRICS])
            for p in curves[c]:
                w.writerow([c, "mean", p["setting"], p["bpp"]] + [p[m] for m in METRICS])
    with open(os.path.join(out, "bdrate.json"), "w") as f:
        json.dump({"anchor": anchor_name, "bd_rate_percent": bd}, f, indent=1, sort_keys=True)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(markdown_table(all_curves, anchor_name, bd, len(files)))
    try:
        plot(all_curves, os.path.join(out, "rd.png"))
    except ImportError:
        log("rd.png not written: matplotlib is not installed (pip install -e '.[eval]')")
    if not bd:
        raise RefcodecError(f"no BD-rate could be computed (anchor {anchor_name or 'none'}; curves with at least "
                            f"4 points: {', '.join(k for k, c in all_curves.items() if len(c) >= 4) or 'none'}); "
                            f"the RD points are in {out}")
    log(f"BD-rate against {anchor_name} (pchip; negative = fewer bits):")
    log(f"{'codec':28s} {'PSNR-RGB':>10s} {'PSNR-Y':>10s} {'MS-SSIM':>10s}")
    for name, row in bd.items():
        log(f"{name:28s} {_fmt(row['psnr_rgb']):>10s} {_fmt(row['psnr_y']):>10s} {_fmt(row['msssim']):>10s}")
    return result, bd


def markdown_table(curves, anchor, bd, n_images):
    """The BD-rate table and the mean RD points of every curve, in Markdown."""
    lines = [f"BD-rate against {anchor} ({n_images} images; pchip; negative = fewer bits for the same quality):",
             "", "| codec | PSNR-RGB | PSNR-Y | MS-SSIM (dB) |", "| --- | --- | --- | --- |"]
    for name, row in bd.items():
        lines.append(f"| {name} | {_fmt(row['psnr_rgb'])} | {_fmt(row['psnr_y'])} | {_fmt(row['msssim'])} |")
    lines += ["", "Mean RD points (bpp / PSNR-RGB dB / PSNR-Y dB / MS-SSIM):", ""]
    for name, c in curves.items():
        pts = ", ".join(f"{p['bpp']:.3f} / {p['psnr_rgb']:.2f} / {p['psnr_y']:.2f} / "
                        f"{p['msssim']:.4f}" if np.isfinite(p["msssim"]) else
                        f"{p['bpp']:.3f} / {p['psnr_rgb']:.2f} / {p['psnr_y']:.2f} / n/a" for p in c)
        lines.append(f"- {name}: {pts}")
    return "\n".join(lines) + "\n"


def plot(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for name, c in curves.items():
        if not c:
            continue
        bpp = [p["bpp"] for p in c]
        axes[0].plot(bpp, [p["psnr_rgb"] for p in c], "o-", label=name, ms=3)
        axes[1].plot(bpp, [p["psnr_y"] for p in c], "o-", label=name, ms=3)
    for ax, t in zip(axes, ("PSNR-RGB (dB)", "PSNR-Y (dB)")):
        ax.set_xlabel("bpp")
        ax.set_ylabel(t)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
