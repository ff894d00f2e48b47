"""Command line: ``refcodec COMMAND``.

Commands available now:

* ``refcodec warmup`` -- compile (and cache) every numba CPU kernel, so the
  next command pays no compile time;
* ``refcodec version``.
"""

import argparse
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


def main(argv=None):
    from . import __version__
    from .errors import RefcodecError
    p = argparse.ArgumentParser(prog="refcodec", description="Reference learned image codec with a bit-exact "
                                                             "integer decoder.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("warmup", help="compile and cache the numba kernels")
    sub.add_parser("version", help="print the version")
    args = p.parse_args(argv)
    try:
        if args.command == "warmup":
            return cmd_warmup(args)
        print(f"refcodec {__version__}")
        return 0
    except RefcodecError as e:
        print(f"refcodec: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
