"""Command line: ``refcodec COMMAND``.

* ``refcodec encode IN OUT --beta B | --bpp T``  encode an image (``-``: stdin / stdout)
* ``refcodec decode IN OUT [--backend]``        decode a stream (bit-exact on every backend)
* ``refcodec roundtrip IN [--beta B | --bpp T]`` encode, decode, print bpp and PSNR
* ``refcodec conform [DIR] [--backend]``        check conformance vectors
* ``refcodec info STREAM``                      print the syntax elements of a stream
* ``refcodec inspect STREAM --out DIR``         an HTML page of what the decoder does with a stream
* ``refcodec eval DIR``                         RD curves and BD-rates against classical codecs
* ``refcodec warmup``                           compile and cache the numba kernels
* ``refcodec version`` / ``refcodec --version``

Conventions of cwebp, avifenc and cjxl: ``-`` for stdin and stdout; status
lines, warnings and progress on stderr (so the output can be piped); ``-q``
silences them, ``-v`` says more; ``--threads N``.  A rejected input
(unreadable image, corrupt stream, wrong model, an option out of range) is
reported as one line on stderr and exit status 1 (argparse's own usage
errors: status 2), never a traceback.
"""

import argparse
import os
import sys
import threading
import time

#: Work that lasts longer than this shows a progress line on stderr (a terminal only).
PROGRESS_AFTER_S = 2.0


class Progress:
    """An elapsed-time line on stderr for long work: ``with Progress("encoding x.png"):``.

    It appears only after PROGRESS_AFTER_S, only when ``enabled`` (by default:
    stderr is a terminal), and is erased when the work ends.  ``stage(text)``
    names the current step."""

    def __init__(self, what, enabled=None, after=None, stream=None, interval=0.25):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.what, self.step = what, ""
        self.after = PROGRESS_AFTER_S if after is None else after
        self.interval = interval
        self.shown = False
        self._stop = threading.Event()

    def stage(self, text):
        self.step = text

    def _run(self):
        if self._stop.wait(self.after):
            return
        while True:
            el = time.perf_counter() - self.t0
            step = f" ({self.step})" if self.step else ""
            self.stream.write(f"\r\x1b[Krefcodec: {self.what}{step} ... {el:.0f} s")
            self.stream.flush()
            self.shown = True
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self.t0 = time.perf_counter()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()
            if self.shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
        return False


class Console:
    """Where a command's words go: the status (stderr unless ``-q``), details
    (``-v``), warnings (stderr unless ``-q``)."""

    def __init__(self, args):
        self.quiet = getattr(args, "quiet", False)
        self.verbose = getattr(args, "verbose", False) and not self.quiet
        self.progress_on = None if getattr(args, "progress", None) is None else args.progress
        if self.quiet:
            self.progress_on = False

    def status(self, text):
        if not self.quiet:
            print(text, file=sys.stderr)

    def detail(self, text):
        if self.verbose:
            print(text, file=sys.stderr)

    def warn(self, text):
        if not self.quiet:
            print(f"refcodec: warning: {text}", file=sys.stderr)

    def progress(self, what):
        return Progress(what, enabled=self.progress_on)


def cmd_warmup(args, con):
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
    con.status(f"kernels compiled and cached in {time.perf_counter() - t:.1f} s")
    return 0


def read_image(path, con=None):
    """An image file (``-``: stdin) as uint8 RGB; what is dropped is said once, on stderr."""
    from .imageio import load_image
    if path == "-":
        rgb, notes = load_image(sys.stdin.buffer.read(), name="stdin", warn=False)
    else:
        rgb, notes = load_image(path, warn=False)
    for n in notes:
        if con is not None:
            con.warn(n)
    return rgb


def read_stream(path):
    from .errors import RefcodecError
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise RefcodecError(f"cannot read {path}: {e.strerror}") from None


def write_bytes(path, data):
    from .errors import RefcodecError
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise RefcodecError(f"cannot write {path}: {e.strerror}") from None


def write_image(path, rgb, gray=False):
    """Write a decoded picture: PNG to stdout for ``-``, else by the file's
    extension; a monochrome picture as a one-channel image."""
    import io
    from PIL import Image
    from .errors import ImageError
    im = Image.fromarray(rgb[..., 0] if gray else rgb)
    try:
        if path == "-":
            buf = io.BytesIO()
            im.save(buf, "PNG", compress_level=1)
            write_bytes("-", buf.getvalue())
            return
        # PNG is lossless at any level; level 1 writes several times faster than the default 6
        opts = {"compress_level": 1} if str(path).lower().endswith(".png") else {}
        im.save(path, **opts)
    except (OSError, ValueError, KeyError) as e:
        raise ImageError(f"cannot write image {path}: {e}") from None


def _models(args):
    from . import model
    return model.load(args.model) if args.model else None


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


def _encode_kwargs(args):
    """The encoder options of ``encode`` and ``roundtrip``, checked together."""
    from .errors import RefcodecError
    if args.bpp is not None and args.beta is not None:
        raise RefcodecError("give either --beta or --bpp, not both")
    is_mask = isinstance(args.qmap, str) and args.qmap not in ("flat", "activity", "rdo") \
        and not args.qmap.lower().endswith(".npy")
    if args.roi_q is not None and not is_mask:
        raise RefcodecError("--roi-q sets the Q values of a region-of-interest mask: give the mask with "
                            "--qmap MASK.png")
    if args.qmap_block is not None and args.qmap in (None, "flat"):
        raise RefcodecError("--qmap-block sets the block size of a quality map: give one with --qmap")
    roi_q = (6, -3)
    if args.roi_q is not None:
        try:
            fg, bg = (int(v) for v in args.roi_q.split(","))
        except ValueError:
            raise RefcodecError(f"--roi-q takes two integers FG,BG, got {args.roi_q!r}") from None
        roi_q = (fg, bg)
    if args.bpp is None:
        for opt in ("tolerance", "side", "method", "nearest"):
            if getattr(args, opt) != DEFAULTS[opt]:
                raise RefcodecError(f"--{opt} belongs to bit-rate matching: give a target with --bpp")
    qmap = args.qmap
    if args.tune != "psnr":
        if qmap is None:
            qmap = "rdo"                        # the metric shapes the rdo map
        elif qmap != "rdo":
            raise RefcodecError(f"--tune {args.tune} shapes the rdo quality map; --qmap {qmap} does not use it")
    return {"qmap": qmap, "qmap_block_log2": args.qmap_block, "roi_q": roi_q, "refine": args.refine,
            "context": args.context, "rdoq": args.rdoq, "num_y_substreams": args.substreams, "tune": args.tune,
            "postfilter": args.postfilter}


DEFAULTS = {"tolerance": 0.01, "side": "both", "method": "fast", "nearest": False}


def _encode(args, rgb, con, what):
    """Encode per the command line: (data, info dict)."""
    import warnings
    from .encoder import encode
    kw = _encode_kwargs(args)
    model = _models(args)
    t0 = time.perf_counter()
    with con.progress(what) as prog:
        if args.bpp is not None:
            from .ratecontrol import match
            prog.stage(f"bit-rate matching to {args.bpp} bpp")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")          # reported below, once, as refcodec warnings
                res = match(rgb, args.bpp, model=model, method=args.method, tolerance=args.tolerance,
                            side=args.side, nearest=args.nearest, **kw)
            data, info = res.data, res.as_dict()
        else:
            beta = 0.5 if args.beta is None else args.beta
            data = encode(rgb, beta=beta, model=model, **kw)
            info = {"beta": beta, "trials": 1, "seconds": time.perf_counter() - t0, "method": "fixed-beta",
                    "bytes": len(data), "target_bpp": None}
    info["bpp"] = 8 * len(data) / (rgb.shape[0] * rgb.shape[1])
    for w in info.get("warnings", []):
        con.warn(w)
    return data, info


def _describe(info):
    ext = f", uniform quality map Q = {info['extension_q']}" if info.get("extension_q") else ""
    return (f"beta {info['beta']:.4f}{ext}, {info['trials']} trial{'s' if info['trials'] != 1 else ''}, "
            f"{info['seconds']:.2f} s")


def cmd_encode(args, con):
    import json
    rgb = read_image(args.input, con)
    data, info = _encode(args, rgb, con, f"encoding {args.input}")
    write_bytes(args.output, data)
    if args.json:
        # the result goes to stdout, unless the stream does
        print(json.dumps(info), file=sys.stderr if args.output == "-" else sys.stdout)
    else:
        con.status(f"{args.output}: {len(data)} bytes, {info['bpp']:.4f} bpp ({_describe(info)})")
    return 0


def cmd_decode(args, con):
    from .decoder import decode
    from .errors import RefcodecError
    from .syntax import picture_header
    from .syntax.bytereader import ByteReader
    data = read_stream(args.input)
    models = [m for m in [_models(args)] if m is not None] or None
    t0 = time.perf_counter()
    with con.progress(f"decoding {args.input}"):
        if args.trace:
            from .trace import trace, write
            recs, rgb = trace(data, models=models, backend=args.backend)
            try:
                write(args.trace, recs)
            except OSError as e:
                raise RefcodecError(f"cannot write {args.trace}: {e.strerror}") from None
        else:
            rgb = decode(data, backend=args.backend, models=models)
    gray = picture_header(ByteReader(data)).monochrome
    write_image(args.output, rgb, gray=gray)
    con.status(f"{args.output}: {rgb.shape[1]} x {rgb.shape[0]}{' monochrome' if gray else ''}")
    con.detail(f"decoded in {time.perf_counter() - t0:.2f} s on backend {args.backend}")
    return 0


def cmd_roundtrip(args, con):
    from .decoder import decode
    rgb = read_image(args.input, con)
    data, info = _encode(args, rgb, con, f"encoding {args.input}")
    t1 = time.perf_counter()
    models = [m for m in [_models(args)] if m is not None] or None
    out = decode(data, backend=args.backend, models=models)
    t2 = time.perf_counter()
    target = f" (target {args.bpp})" if args.bpp is not None else ""
    print(f"{args.input}: {rgb.shape[1]}x{rgb.shape[0]} beta {info['beta']:.4f}: {len(data)} bytes, "
          f"{info['bpp']:.4f} bpp{target}, PSNR-RGB {psnr(rgb, out):.2f} dB, PSNR-Y {psnr_y(rgb, out):.2f} dB "
          f"(encode {info['seconds']:.2f} s, decode {t2 - t1:.2f} s, backend {args.backend})")
    return 0


def _parse_targets(text):
    import math
    from .errors import RefcodecError
    try:
        targets = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise RefcodecError(f"--targets takes comma-separated rates in bpp, got {text!r}") from None
    if not targets or not all(math.isfinite(t) and 0 < t <= 24 for t in targets):
        raise RefcodecError(f"--targets: every rate must lie in (0, 24] bpp, got {text!r}")
    return sorted(set(targets))


def cmd_eval(args, con):
    from .errors import RefcodecError
    from .eval.run import CODECS, run
    targets = _parse_targets(args.targets)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    unknown = [c for c in codecs if c not in CODECS]
    if unknown or not codecs:
        raise RefcodecError(f"--codecs: unknown codec(s) {', '.join(unknown) or '(none given)'}; known: "
                            f"{', '.join(CODECS)}")
    if args.jobs < 1:
        raise RefcodecError(f"--jobs must be at least 1, got {args.jobs}")
    if not os.path.exists(args.dir):
        raise RefcodecError(f"eval: {args.dir}: no such directory")
    if not os.path.isdir(args.dir):
        raise RefcodecError(f"eval: {args.dir} is a file; give a directory of images")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise RefcodecError(f"--out {args.out} is an existing file; give a directory")
    cache = None if args.cache == "none" else (args.cache or os.path.join(args.out, "cache"))
    log = print if not con.quiet else (lambda *a, **k: None)
    run(args.dir, targets, codecs, args.anchor, args.jobs, args.out, args.scheduler, cache=cache, log=log,
        show_progress=not con.quiet and sys.stderr.isatty(), model=args.model)
    return 0


def model_info(path):
    """Print what a model file holds: its id, widths, weight bits and the
    multiply-accumulates per pixel of each network (the decoder's and the
    encoder's)."""
    import json
    import zipfile
    import numpy as np
    from . import arch as A
    from .errors import ModelError
    from .model import Model
    if not os.path.isfile(path):
        raise ModelError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a refcodec model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode()) if "__meta__" in z.files else None
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise ModelError(f"{path} is not a refcodec model file ({type(e).__name__}: {e})") from None
    if meta is not None:                 # the trainer's float weights
        if not isinstance(meta, dict) or not isinstance(meta.get("arch"), dict):
            raise ModelError(f"{path}: float weights without an architecture")
        a = meta["arch"]
        print(f"{path}: float weights (the trainer's), training step {meta.get('step', '?')}, "
              f"Kodak score {meta.get('kodak_score', '?')}"
              + (f"; g_a and h_a from {meta['encoder_from'].get('file')}"
                 if isinstance(meta.get("encoder_from"), dict) else ""))
    else:
        m = Model(path)
        a = m.arch
        ref = m.header.get("encoder_from")
        train = any(k.startswith("train.") for k in m._npz.files)
        print(f"{path}: refcodec model {m.model_id.hex()}, W{m.weight_bits}A16"
              + (f"; encoder weights from {ref.get('file')}" if isinstance(ref, dict) else "")
              + (", training step {}; the trainer resumes from it (SPEC.md 8.5)".format(
                  m.header.get("train_step", "?")) if train else ""))
    macs = A.macs_per_pixel(a)
    ra = sum(1 for layer in a["g_a"] if layer[0] == "res") // 3
    print(f"  widths             N={a['N']} M={a['M']} Z={a['Z']} NH={a['NH']}"
          + (f" C={a['C']} NE={a['NE']}" if A.has_context(a) else " (no context networks)")
          + (f", {ra} residual block(s) per scale in g_a" if ra else "")
          + (f", post-filter PF={a['PF']}" if A.has_postfilter(a) else ""))
    dec = [n for n in A.DECODER_NETS if n in macs]
    print("  decoder MAC/pixel  " + ", ".join(f"{n} {macs[n]:.0f}" for n in dec)
          + f"; total {sum(macs[n] for n in dec):.0f}")
    print(f"  encoder MAC/pixel  g_a {macs['g_a']:.0f}, h_a {macs['h_a']:.0f} (float, plus the decoder's "
          "h_s and context networks)")
    return 0


def cmd_info(args, con):
    """Print the syntax elements of a stream, with SPEC.md's names (or what a model file holds)."""
    from .syntax import picture
    if args.input.endswith(".npz"):
        return model_info(args.input)
    data = read_stream(args.input)
    pic = picture(data)
    h, z = pic.header, pic.sizes
    print(f"{args.input}: {len(data)} bytes, {8 * len(data) / (h.width * h.height):.4f} bpp")
    print(f"  version            {h.version}")
    print(f"  model_id           {h.model_id.hex()}")
    print(f"  width x height     {h.width} x {h.height}")
    print(f"  beta_code          {h.beta_code} (beta {h.beta:.4f})")
    print(f"  tool_flags         {h.tool_flags:#04x} (quality map {'on' if h.quality_map_enabled else 'off'}, "
          f"context {'on' if h.context_enabled else 'off'}, monochrome {'on' if h.monochrome else 'off'}, "
          f"post-filter {'on' if h.postfilter_enabled else 'off'})")
    if h.quality_map_enabled:
        print(f"  qmap_mode          {h.qmap_mode:#04x} (block 2^{h.qmap_block_log2}, step 2^{h.qmap_step_log2}, "
              + ("direct)" if h.qmap_direct else f"contexts {'on' if h.qmap_context else 'off'})"))
        if h.qmap_direct:
            print(f"  qmap_freq          V {h.qmap_v_min} ... {h.qmap_v_min + len(h.qmap_freqs) - 1}: "
                  f"{', '.join(str(f) for f in h.qmap_freqs)}")
        else:
            print(f"  qmap_sigma_row     "
                  f"{', '.join(str(r) for r in h.qmap_ctx_rows) if h.qmap_context else h.qmap_sigma_row}")
        print(f"  q_size             {z.q_size}")
    print(f"  z_size             {z.z_size}")
    print(f"  num_y_substreams   {h.num_y_substreams}: y_size {list(z.y_size)}")
    return 0


def cmd_inspect(args, con):
    from .inspector import inspect
    data = read_stream(args.input)
    models = [m for m in [_models(args)] if m is not None] or None
    original = read_image(args.original, con) if args.original else None
    t0 = time.perf_counter()
    with con.progress(f"inspecting {args.input}"):
        report = inspect(data, args.out, original=original, models=models, backend=args.backend)
    q = report.get("quality")
    extra = f", PSNR-RGB {q['psnr_rgb']:.2f} dB" if q else ""
    con.status(f"{os.path.join(args.out, 'index.html')}: {report['stream']['bytes']} bytes, "
               f"{report['stream']['bpp']:.4f} bpp{extra} ({time.perf_counter() - t0:.2f} s)")
    return 0


#: The repository's conformance vectors (the default of ``conform``).
VECTORS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vectors")


def cmd_conform(args, con):
    from .conformance import check
    from .errors import RefcodecError
    root = args.dir
    if root is None:
        root = "vectors" if os.path.isfile(os.path.join("vectors", "manifest.json")) else VECTORS
    if not os.path.isfile(os.path.join(root, "manifest.json")):
        raise RefcodecError(f"no conformance vectors at {os.path.abspath(root)} (no manifest.json): give the "
                            "vectors folder of a refcodec checkout, e.g. refcodec conform path/to/refcodec/vectors")
    passed, failed = check(root, backend=args.backend, subset=args.subset, vector=args.vector,
                           log=(lambda s: None) if con.quiet else print, trace=args.trace)
    print(f"{passed} passed, {failed} failed ({root}, backend {args.backend})")
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


def set_threads(n):
    """numba's (and, when loaded, PyTorch's) thread count."""
    from .errors import RefcodecError
    import numba
    top = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= top:
        raise RefcodecError(f"--threads {n}: between 1 and {top} (this machine's cores; NUMBA_NUM_THREADS)")
    numba.set_num_threads(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)      # PyTorch, if refinement imports it


def _int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return v


def _number(text):
    import math
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _add_encoder_options(q):
    q.add_argument("--beta", type=_number, default=None, help="rate parameter in [0, 1]: 0 lowest rate, "
                                                              "1 highest (default 0.5)")
    q.add_argument("--bpp", type=_number, default=None, help="target rate in bits per pixel (bit-rate matching)")
    q.add_argument("--tolerance", type=_number, default=DEFAULTS["tolerance"],
                   help="with --bpp: relative rate tolerance in (0, 1) (default 0.01 = 1 %%)")
    q.add_argument("--side", choices=("both", "below"), default=DEFAULTS["side"],
                   help="with --bpp: 'below' never lands above the target (default both)")
    q.add_argument("--method", choices=("fast", "bisect"), default=DEFAULTS["method"],
                   help="with --bpp: fast (rate-only trials on one analysis) or bisect (the baseline search)")
    q.add_argument("--nearest", action="store_true",
                   help="with --bpp: when the target is out of reach, use the nearest reachable rate (warning)")
    q.add_argument("--substreams", type=_int, default=None, metavar="S",
                   help="number of y substreams, 1-64 (even with the checkerboard context, which is on by "
                        "default); default: up to 4 per phase")
    q.add_argument("--qmap", default=None, metavar="MAP",
                   help="spatial quality map: flat, rdo (rate-distortion optimized for --tune), activity "
                        "(JPEG AI's variance thresholds, for comparison: it loses on PSNR and MS-SSIM), a .npy "
                        "of Q values, or a PNG mask (white = region of interest)")
    q.add_argument("--qmap-block", type=_int, default=None, choices=range(5), metavar="K",
                   help="with --qmap: log2 of the map block in latent positions, 0-4 (0: one Q per 16x16 "
                        "pixels); default: rdo picks the block by RD cost among those whose map costs at most "
                        "2 %% of the stream, the others 0")
    q.add_argument("--roi-q", default=None, metavar="FG,BG",
                   help="with a PNG mask: Q inside,outside the region, each in [-8, 8] (default 6,-3)")
    q.add_argument("--tune", default="psnr", choices=("psnr", "ms-ssim"),
                   help="the metric the rdo quality map optimizes (default psnr: squared error, YUV 6:1:1); "
                        "ms-ssim alone implies --qmap rdo")
    q.add_argument("--no-postfilter", dest="postfilter", action="store_false", default=None,
                   help="code without the model's post-filter g_pf (SPEC.md 6.5.1; on by default when the model "
                        "has it, unless a quality map takes its rate beyond the trained rates and it measures worse)")
    q.add_argument("--no-context", dest="context", action="store_false", default=None,
                   help="code without the checkerboard context (on by default when the model has it)")
    q.add_argument("--rdoq", type=_number, default=None, metavar="C",
                   help="rate weight of the rate-aware rounding of y, in [0, 1] (default: follows beta; "
                        "0 rounds to nearest)")
    q.add_argument("--refine", type=_int, default=0, metavar="N",
                   help="optimize the latents for this picture with N gradient steps (slow; needs PyTorch, "
                        "the train extra)")


def _common(q, progress=True):
    q.add_argument("-q", "--quiet", action="store_true", help="no status lines, warnings or progress on stderr")
    q.add_argument("-v", "--verbose", action="store_true", help="more detail on stderr")
    q.add_argument("--threads", type=_int, default=None, metavar="N",
                   help="CPU threads for numba (and PyTorch); default: all cores")
    if progress:
        q.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="an elapsed-time line on stderr for work over 2 s (default: when stderr is a "
                            "terminal)")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (status 2), as refcodec's own errors are one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    from .version import __version__
    p = Parser(prog="refcodec", description="Reference learned image codec with a bit-exact "
                                                             "integer decoder.")
    p.add_argument("--version", action="version", version=f"refcodec {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    e = sub.add_parser("encode", help="encode an image", description="Encode an image to a refcodec stream.")
    e.add_argument("input", help="image file (any format Pillow reads; - for stdin)")
    e.add_argument("output", help="stream file to write (- for stdout)")
    _add_encoder_options(e)
    e.add_argument("--json", action="store_true", help="print the result as one JSON object (on stdout; on "
                                                       "stderr when the stream goes to stdout)")
    d = sub.add_parser("decode", help="decode a stream to an image", description="Decode a refcodec stream.")
    d.add_argument("input", help="stream file (- for stdin)")
    d.add_argument("output", help="image file to write, format by extension (- for PNG on stdout)")
    d.add_argument("--trace", default=None, metavar="FILE",
                   help="write the decoder trace (SPEC.md 10.1: each intermediate's SHA-256, clause by clause)")
    r = sub.add_parser("roundtrip", help="encode and decode an image, print bpp and PSNR",
                       description="Encode and decode an image; print its rate and PSNR-RGB / PSNR-Y.")
    r.add_argument("input", help="image file (- for stdin)")
    _add_encoder_options(r)
    for q in (e, d, r):
        q.add_argument("--model", default=None, metavar="FILE",
                       help="model file (default: the shipped W16A16 model; decoding finds every shipped model "
                            "by the stream's model_id)")
        _common(q)
    for q in (d, r):
        q.add_argument("--backend", choices=("numpy", "cpu", "cuda"), default="cpu",
                       help="decoder backend; all give identical output (default cpu)")
    ev = sub.add_parser("eval", help="RD curves and BD-rates of refcodec and classical codecs on a folder",
                        description="RD curves and BD-rates of refcodec and classical codecs on a folder of "
                                    "images.")
    ev.add_argument("dir", help="folder of images (png, jpg, tif, webp, bmp, ppm)")
    ev.add_argument("--targets", default="0.06,0.12,0.25,0.5,0.75,1.0",
                    help="refcodec's target rates in bpp, comma-separated")
    ev.add_argument("--codecs", default="refcodec,jpeg,webp,avif,jxl,hevc,vvc",
                    help="codecs to run, comma-separated (those not installed are skipped with a line)")
    ev.add_argument("--anchor", default=None,
                    help="BD-rate anchor, a codec name (default vvc; vvc/hevc fall back to ../shared/anchors "
                         "when not installed, and the default to the first codec available, with a note)")
    ev.add_argument("--jobs", type=_int, default=os.cpu_count() or 1, help="parallel processes")
    ev.add_argument("--out", default="eval-out", help="output folder (rd.json, rd.csv, table.md, rd.png)")
    ev.add_argument("--cache", default=None,
                    help="folder of per-(image, codec) results to reuse (default OUT/cache; 'none' disables)")
    ev.add_argument("--scheduler", default=None, help="Dask scheduler address (the dask extra)")
    ev.add_argument("--model", default=None, help="refcodec's model file (default: the default model)")
    _common(ev, progress=False)
    inf = sub.add_parser("info", help="print the header and substream sizes of a stream (or a model's figures)",
                         description="Print the syntax elements of a stream (SPEC.md clause 5); given a model "
                                     "file (.npz), its id, widths and MACs per pixel of each network.")
    inf.add_argument("input", help="stream file (- for stdin), or a model file (.npz)")
    ins = sub.add_parser("inspect", help="show what the decoder does with a stream (an HTML page and JSON)",
                         description="Decode a stream with the integer decoder and write DIR/index.html and "
                                     "DIR/inspect.json: the header, where the bits go, what each stage produces.")
    ins.add_argument("input", help="stream file (- for stdin)")
    ins.add_argument("--out", required=True, metavar="DIR", help="folder for index.html, inspect.json and pictures")
    ins.add_argument("--original", default=None, metavar="IN.png",
                     help="the picture that was encoded: adds PSNR, MS-SSIM and an error map")
    ins.add_argument("--model", default=None, metavar="FILE", help="model file (default: the shipped models)")
    ins.add_argument("--backend", choices=("numpy", "cpu", "cuda"), default="cpu", help="decoder backend")
    _common(ins)
    c = sub.add_parser("conform", help="check conformance vectors (bit-exact output, invalid streams rejected)",
                       description="Check a decoder backend against the conformance vectors (SPEC.md clause 10).")
    c.add_argument("dir", nargs="?", default=None,
                   help="vectors folder (default: ./vectors if there, else the repository's vectors)")
    c.add_argument("--backend", choices=("numpy", "cpu", "cuda"), default="cpu", help="decoder backend")
    c.add_argument("--subset", default=None, help="only vectors with this tag (cuda, context, large, monochrome, "
                                                  "invalid)")
    c.add_argument("--vector", default=None, metavar="ID",
                   help="only the vector with this id (its folder name, or invalid/FILE)")
    c.add_argument("--trace", action="store_true",
                   help="compare the decoder trace too: a failing vector names the first clause that departs")
    _common(c, progress=False)
    w = sub.add_parser("warmup", help="compile and cache the numba kernels",
                       description="Compile the numba kernels and cache them beside the modules.")
    _common(w, progress=False)
    sub.add_parser("version", help="print the version", description="Print the version.")
    return p


def main(argv=None):
    from .version import __version__
    from .errors import RefcodecError
    args = build_parser().parse_args(argv)
    con = Console(args)
    try:
        if getattr(args, "threads", None) is not None:
            set_threads(args.threads)
        if args.command == "warmup":
            return cmd_warmup(args, con)
        if args.command in ("encode", "decode", "roundtrip", "inspect"):
            _start_numba()
        handler = {"encode": cmd_encode, "decode": cmd_decode, "roundtrip": cmd_roundtrip, "conform": cmd_conform,
                   "eval": cmd_eval, "info": cmd_info, "inspect": cmd_inspect}.get(args.command)
        if handler is not None:
            return handler(args, con)
        print(f"refcodec {__version__}")
        return 0
    except RefcodecError as e:
        print(f"refcodec: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("refcodec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
