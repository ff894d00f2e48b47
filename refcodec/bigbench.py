"""Camera-sized pictures: ``python -m refcodec.bigbench [--sizes 4000x3000,8064x6048] [--beta B]``.

A picture of each size (kodim23 scaled up, so it has a photo's structure)
is encoded and decoded by the command line as a user runs it, each in a
fresh process; the line gives the wall time and the process's peak
resident memory (VmHWM), the figure to hold against "a 48-megapixel
picture encodes and decodes in at most 3 GB".
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(__file__)

#: Runs the command line in this process, then prints its peak resident memory in kB.
WRAP = """
import sys
from refcodec.cli import main
rc = main(sys.argv[1:])
kb = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print("VMHWM", kb, file=sys.stderr)
sys.exit(rc)
"""


def run(args):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", WRAP, *args], capture_output=True, text=True)
    secs = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {r.stderr.strip()}")
    kb = int(r.stderr.split("VMHWM")[1].split()[0])
    return secs, kb / 2 ** 20


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.bigbench", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="4000x3000,8064x6048", help="WxH,... (default 12 and 48 megapixels)")
    p.add_argument("--beta", default="0.5")
    p.add_argument("--threads", default=str(min(2, os.cpu_count() or 1)))
    args = p.parse_args(argv)
    src = Image.open(os.path.join(HERE, "..", "tests", "data", "kodim23.png")).convert("RGB")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.lower().split("x"))
            png, rcd, out = (os.path.join(tmp, f"big.{e}") for e in ("png", "rcd", "out.png"))
            src.resize((w, h), Image.BICUBIC).save(png, compress_level=1)
            te, me = run(["encode", png, rcd, "--beta", args.beta, "--threads", args.threads, "-q"])
            td, md = run(["decode", rcd, out, "--threads", args.threads, "-q"])
            a = np.asarray(Image.open(png))
            b = np.asarray(Image.open(out))
            mse = np.mean((a.astype(np.float64) - b) ** 2)
            bpp = 8 * os.path.getsize(rcd) / (w * h)
            print(f"# {w}x{h} ({w * h / 1e6:.1f} MP), beta {args.beta}: {bpp:.4f} bpp, PSNR-RGB "
                  f"{10 * np.log10(255 ** 2 / mse):.2f} dB; encode {te:.1f} s, peak {me:.2f} GB; "
                  f"decode {td:.1f} s, peak {md:.2f} GB (command line, fresh processes, {args.threads} threads)",
                  flush=True)


if __name__ == "__main__":
    main()
