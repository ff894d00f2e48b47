"""Command line: ``refcodec COMMAND``.

* ``refcodec encode IN.png OUT --beta B``      encode an image
* ``refcodec decode IN OUT.png [--backend]``   decode a stream (bit-exact on every backend)
* ``refcodec roundtrip IN.png [--beta B]``     encode, decode, print bpp and PSNR
* ``refcodec conform [DIR] [--backend]``      check conformance vectors
* ``refcodec info STREAM``                     print the syntax elements of a stream
* ``refcodec eval DIR``                        RD curves and BD-rates against classical codecs
* ``refcodec warmup``                          compile and cache the numba kernels
* ``refcodec version``

A rejected input (unreadable image, corrupt stream, wrong model) is reported
as one line on stderr and exit status 1, never a traceback.
"""

import argparse
import os
import sys
import time


def cmd_warmup(args):
    import numpy as np

    import kernels
    from kernels import rans
    t = time.perf_counter()
    x = np.zeros((3, 3, 2), np.int16)
    for wdt in (np.int16, np.int8):
        kernels.conv2d(x, np.zeros((4, 3, 3, 2), wdt), np.zeros(4, np.int32), np.zeros(4, np.int32))
        kernels.conv2d(x, np.zeros((4, 1, 1, 2), wdt), np.zeros(4, np.int32), np.zeros(4, np.int32))
    kernels.depth_to_space(np.zeros((2, 2, 4), np.int16), 2)
    kernels.abs_sat(x)
    kernels.mul_shift(x, x, np.zeros(2, np.int32))
    kernels.clamp(x, 0, 1)
    cdf = np.array([[0, 40000, 65536]], np.int32)
    streams = rans.encode(np.array([0], np.int32), np.array([0], np.int32), np.array([0, 1]), cdf,
                          np.array([2], np.int32), np.array([0], np.int32))
    rans.decode(streams[0], [len(streams[0])], np.array([0, 1]), np.array([0], np.int32), cdf,
                np.array([2], np.int32), np.array([0], np.int32))
    print(f"kernels compiled and cached in {time.perf_counter() - t:.1f} s")
    return 0


def read_image(path):
    from PIL import Image, UnidentifiedImageError
    import numpy as np
    from .errors import ImageError
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ImageError(f"cannot read image {path}: {e}") from None


def read_stream(path):
    from .errors import RefcodecError
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise RefcodecError(f"cannot read {path}: {e.strerror}") from None


def write_image(path, rgb):
    from PIL import Image
    from .errors import ImageError
    try:
        # PNG is lossless at any level; level 1 writes several times faster than the default 6
        opts = {"compress_level": 1} if str(path).lower().endswith(".png") else {}
        Image.fromarray(rgb).save(path, **opts)
    except (OSError, ValueError, KeyError) as e:
        raise ImageError(f"cannot write image {path}: {e}") from None


def _models(args):
    from . import model
    return model.load(args.model)


def psnr(a, b):
    import numpy as np
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def psnr_y(a, b):
    """PSNR on BT.709 luma computed from 8-bit RGB (as JPEG AI reports)."""
    import numpy as np
    w = np.array([0.2126, 0.7152, 0.0722])
    ya, yb = a.astype(np.float64) @ w, b.astype(np.float64) @ w
    mse = np.mean((ya - yb) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _qmap_args(args):
    from .errors import RefcodecError
    try:
        fg, bg = (int(v) for v in args.roi_q.split(","))
    except ValueError:
        raise RefcodecError(f"--roi-q takes two integers FG,BG, got {args.roi_q!r}") from None
    return {"qmap": args.qmap, "qmap_block_log2": args.qmap_block, "roi_q": (fg, bg)}


def cmd_encode(args):
    import json
    from .encoder import encode
    from .errors import RefcodecError
    rgb = read_image(args.input)
    t0 = time.perf_counter()
    if args.bpp is not None:
        if args.beta is not None:
            raise RefcodecError("give either --beta or --bpp, not both")
        import warnings
        from .ratecontrol import match
        warnings.simplefilter("ignore")          # reported below, once, as a refcodec warning
        res = match(rgb, args.bpp, model=_models(args), method=args.method, tolerance=args.tolerance,
                    side=args.side, nearest=args.nearest, num_y_substreams=args.substreams, **_qmap_args(args),
                    refine=args.refine, context=args.context, rdoq=args.rdoq)
        data, info = res.data, res.as_dict()
    else:
        beta = 0.5 if args.beta is None else args.beta
        data = encode(rgb, beta=beta, model=_models(args), num_y_substreams=args.substreams, **_qmap_args(args),
                      refine=args.refine, context=args.context, rdoq=args.rdoq)
        info = {"beta": beta, "trials": 1, "seconds": time.perf_counter() - t0, "method": "fixed-beta",
                "bytes": len(data), "target_bpp": None}
    try:
        with open(args.output, "wb") as f:
            f.write(data)
    except OSError as e:
        raise RefcodecError(f"cannot write {args.output}: {e.strerror}") from None
    info["bpp"] = 8 * len(data) / (rgb.shape[0] * rgb.shape[1])
    if args.json:
        print(json.dumps(info))
    else:
        for w in info.get("warnings", []):
            print(f"refcodec: warning: {w}", file=sys.stderr)
        ext = f", uniform quality map Q = {info['extension_q']}" if info.get("extension_q") else ""
        print(f"{args.output}: {len(data)} bytes, {info['bpp']:.4f} bpp (beta {info['beta']:.4f}{ext}, "
              f"{info['trials']} trial{'s' if info['trials'] != 1 else ''}, {info['seconds']:.2f} s)")
    return 0


def cmd_decode(args):
    from .decoder import decode
    rgb = decode(read_stream(args.input), backend=args.backend, models=[_models(args)])
    write_image(args.output, rgb)
    print(f"{args.output}: {rgb.shape[1]} x {rgb.shape[0]}")
    return 0


def cmd_roundtrip(args):
    from .decoder import decode
    from .encoder import encode
    m = _models(args)
    rgb = read_image(args.input)
    t0 = time.perf_counter()
    data = encode(rgb, beta=args.beta, model=m, refine=args.refine)
    t1 = time.perf_counter()
    out = decode(data, backend=args.backend, models=[m])
    t2 = time.perf_counter()
    bpp = 8 * len(data) / (rgb.shape[0] * rgb.shape[1])
    print(f"{args.input}: {rgb.shape[1]}x{rgb.shape[0]} beta {args.beta:.3f}: {len(data)} bytes, {bpp:.4f} bpp, "
          f"PSNR-RGB {psnr(rgb, out):.2f} dB, PSNR-Y {psnr_y(rgb, out):.2f} dB "
          f"(encode {t1 - t0:.2f} s, decode {t2 - t1:.2f} s, backend {args.backend})")
    return 0


def cmd_eval(args):
    from .eval.run import run
    targets = [float(t) for t in args.targets.split(",")]
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    cache = None if args.cache == "none" else (args.cache or os.path.join(args.out, "cache"))
    run(args.dir, targets, codecs, args.anchor, args.jobs, args.out, args.scheduler, cache=cache)
    return 0


def cmd_info(args):
    """Print the syntax elements of a stream, with SPEC.md's names."""
    from .syntax import picture
    data = read_stream(args.input)
    pic = picture(data)
    h, z = pic.header, pic.sizes
    print(f"{args.input}: {len(data)} bytes, {8 * len(data) / (h.width * h.height):.4f} bpp")
    print(f"  version            {h.version}")
    print(f"  model_id           {h.model_id.hex()}")
    print(f"  width x height     {h.width} x {h.height}")
    print(f"  beta_code          {h.beta_code} (beta {h.beta:.4f})")
    print(f"  tool_flags         {h.tool_flags:#04x} (quality map {'on' if h.quality_map_enabled else 'off'}, "
          f"context {'on' if h.context_enabled else 'off'})")
    if h.quality_map_enabled:
        print(f"  qmap_block_log2    {h.qmap_block_log2}")
        print(f"  qmap_sigma_row     {h.qmap_sigma_row}")
        print(f"  q_size             {z.q_size}")
    print(f"  z_size             {z.z_size}")
    print(f"  num_y_substreams   {h.num_y_substreams}: y_size {list(z.y_size)}")
    return 0


def cmd_conform(args):
    from .conformance import check
    passed, failed = check(args.dir, backend=args.backend, subset=args.subset)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def _start_numba():
    """Initialize numba's CPU target without its SciPy probe (saves ~0.15 s per command).

    numba's first compile or cache load in a process imports
    ``numba.np.arraymath``, which imports ``scipy.linalg`` only to learn
    whether ``np.dot`` inside jitted code can call BLAS.  refcodec's kernels
    use no BLAS, so the command line hides ``scipy.linalg`` while numba
    initializes (numba then sees no BLAS in this process) and SciPy imports
    normally afterwards.  The library itself never does this.
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    import numpy as np
    from kernels import ops
    sys.modules["scipy.linalg"] = None
    try:
        ops.clamp(np.zeros((1, 1, 1), np.int16), 0, 0, backend="cpu")
    finally:
        del sys.modules["scipy.linalg"]


def main(argv=None):
    from . import __version__
    from .errors import RefcodecError
    p = argparse.ArgumentParser(prog="refcodec", description="Reference learned image codec with a bit-exact "
                                                             "integer decoder.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("encode", help="encode an image")
    e.add_argument("input")
    e.add_argument("output")
    e.add_argument("--beta", type=float, default=None, help="rate parameter in [0, 1] (default 0.5)")
    e.add_argument("--bpp", type=float, default=None, help="target rate in bits per pixel (bit-rate matching)")
    e.add_argument("--tolerance", type=float, default=0.01, help="relative rate tolerance (default 0.01)")
    e.add_argument("--side", choices=("both", "below"), default="both",
                   help="'below': never above the target")
    e.add_argument("--method", choices=("fast", "bisect"), default="fast",
                   help="fast: rate-only trials on one analysis; bisect: the baseline search")
    e.add_argument("--nearest", action="store_true",
                   help="when the target is out of reach, use the nearest reachable rate (with a warning)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--substreams", type=int, default=None, help="number of y substreams (1-64)")
    e.add_argument("--qmap", default=None,
                   help="spatial quality map: flat, activity, a .npy of Q values, or a PNG mask (white = ROI)")
    e.add_argument("--qmap-block", type=int, default=None, choices=range(5),
                   help="log2 of the map block in latent positions (0: one Q per 16x16 pixels); default: "
                        "rdo picks the finest block whose map costs at most 2 %% of the stream, the others 0")
    e.add_argument("--roi-q", default="6,-3", help="Q inside,outside the region of a PNG mask (default 6,-3)")
    e.add_argument("--no-context", dest="context", action="store_false", default=None,
                   help="code without the checkerboard context (on by default when the model has it)")
    e.add_argument("--rdoq", type=float, default=None, metavar="C",
                   help="rate weight of the rate-aware rounding of y (default 0.04; 0 rounds to nearest)")
    e.add_argument("--refine", type=int, default=0, metavar="N",
                   help="optimize the latents for this picture with N gradient steps (slow; needs PyTorch)")
    d = sub.add_parser("decode", help="decode a stream to PNG")
    d.add_argument("input")
    d.add_argument("output")
    r = sub.add_parser("roundtrip", help="encode and decode an image, print bpp and PSNR")
    r.add_argument("input")
    r.add_argument("--beta", type=float, default=0.5)
    r.add_argument("--refine", type=int, default=0, metavar="N",
                   help="optimize the latents for this picture with N gradient steps (slow; needs PyTorch)")
    for q in (e, d, r):
        q.add_argument("--model", default=None, help="model file (default: the shipped W16A16 model)")
    for q in (d, r):
        q.add_argument("--backend", choices=("numpy", "cpu", "cuda"), default="cpu")
    ev = sub.add_parser("eval", help="RD curves and BD-rates of refcodec and classical codecs on a folder")
    ev.add_argument("dir")
    ev.add_argument("--targets", default="0.06,0.12,0.25,0.5,0.75,1.0")
    ev.add_argument("--codecs", default="refcodec,jpeg,webp,avif,jxl,hevc,vvc")
    ev.add_argument("--anchor", default="vvc", help="BD-rate anchor (a codec name; vvc/hevc fall back to "
                                                    "../shared/anchors when not installed)")
    ev.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ev.add_argument("--out", default="eval-out")
    ev.add_argument("--cache", default=None,
                    help="folder of per-(image, codec) results to reuse (default OUT/cache; 'none' disables)")
    ev.add_argument("--scheduler", default=None, help="Dask scheduler address (the dask extra)")
    inf = sub.add_parser("info", help="print the header and substream sizes of a stream")
    inf.add_argument("input")
    c = sub.add_parser("conform", help="check conformance vectors (bit-exact output, invalid streams rejected)")
    c.add_argument("dir", nargs="?", default="vectors")
    c.add_argument("--backend", choices=("numpy", "cpu", "cuda"), default="cpu")
    c.add_argument("--subset", default=None, help="only vectors with this tag (e.g. cuda, invalid)")
    sub.add_parser("warmup", help="compile and cache the numba kernels")
    sub.add_parser("version", help="print the version")
    args = p.parse_args(argv)
    try:
        if args.command == "warmup":
            return cmd_warmup(args)
        if args.command in ("encode", "decode"):
            _start_numba()
        if args.command == "encode":
            return cmd_encode(args)
        if args.command == "decode":
            return cmd_decode(args)
        if args.command == "roundtrip":
            return cmd_roundtrip(args)
        if args.command == "conform":
            return cmd_conform(args)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "info":
            return cmd_info(args)
        print(f"refcodec {__version__}")
        return 0
    except RefcodecError as e:
        print(f"refcodec: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
