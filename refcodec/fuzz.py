"""Fuzz the decoder with mutated valid streams: ``python -m refcodec.fuzz [--n N] [--seed S]``.

Seeds are the conformance vectors (small ones).  Each input is a seed with
one to four mutations: bit flips, byte overwrites (often in the header, where
the fields are), truncation, extension, chunk duplication or deletion.  The
decoder (numba CPU) must either return a picture of the size the header
states, or raise one of refcodec's own errors -- any other exception, and
any decode that takes more than ``--max-seconds`` of CPU time, is a failure.  Prints the number
of inputs tried, how they ended, and every failure (with the input saved to
``--save``).
"""

import argparse
import json
import os
import time

import numpy as np

from . import decoder
from .errors import RefcodecError
from .model import Model

VECTORS = os.path.join(os.path.dirname(__file__), "..", "vectors")


def seeds(root=VECTORS, max_bytes=4096):
    with open(os.path.join(root, "manifest.json")) as f:
        man = json.load(f)
    out = []
    for v in man["vectors"]:
        with open(os.path.join(root, v["id"], "bitstream.bin"), "rb") as f:
            data = f.read()
        if len(data) <= max_bytes:
            out.append(data)
    models = [Model(os.path.join(root, "models", m)) for m in man["models"]]
    return out, models


def mutate(data, rng):
    b = bytearray(data)
    # half the inputs keep their length, so that they get past the container's
    # size checks and exercise entropy decoding and the networks
    kinds = 3 if rng.random() < 0.5 else 7
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(kinds))
        if kind == 0 and b:                              # bit flip anywhere
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
        elif kind == 1 and b:                            # byte in the header region
            i = int(rng.integers(min(len(b), 40)))
            b[i] = int(rng.integers(256))
        elif kind == 2 and b:                            # random byte anywhere
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        elif kind == 3:                                  # truncate
            b = b[:int(rng.integers(len(b) + 1))]
        elif kind == 4:                                  # extend
            b += bytes(rng.integers(0, 256, int(rng.integers(1, 9))).astype(np.uint8))
        elif kind == 5 and len(b) > 4:                   # duplicate a chunk
            i = int(rng.integers(len(b) - 2))
            j = int(rng.integers(i + 1, min(len(b), i + 16) + 1))
            b[i:i] = b[i:j]
        elif kind == 6 and len(b) > 4:                   # delete a chunk
            i = int(rng.integers(len(b) - 2))
            del b[i:i + int(rng.integers(1, 9))]
    return bytes(b)


def run(n, seed=0, max_seconds=10.0, save=None, log=print, backend="cpu", max_bytes=4096):
    """Decode n mutated streams; returns (counts, failures)."""
    base, models = seeds(max_bytes=max_bytes)
    for data in base:           # compile / load every kernel first: the time limit is for decoding
        decoder.decode(data, backend=backend, models=models)
    rng = np.random.default_rng(seed)
    counts = {"decoded": 0, "rejected": 0}
    failures = []
    for k in range(n):
        data = mutate(base[int(rng.integers(len(base)))], rng)
        if k and k % 5000 == 0:
            log(f"# {k} inputs, {len(failures)} failures: {counts}")
        t0 = time.process_time()      # CPU time of this process: robust to a busy machine
        try:
            rgb = decoder.decode(data, backend=backend, models=models)
            pic = decoder.picture(data)
            if rgb.shape != (pic.header.height, pic.header.width, 3):
                raise AssertionError(f"decoded shape {rgb.shape} differs from the header")
            counts["decoded"] += 1
            problem = None
        except RefcodecError as e:
            counts["rejected"] += 1
            counts[type(e).__name__] = counts.get(type(e).__name__, 0) + 1
            problem = None
        except Exception as e:  # the failures this script exists to find
            problem = f"{type(e).__name__}: {e}"
        dt = time.process_time() - t0
        if problem is None and dt > max_seconds:
            problem = f"decode took {dt:.1f} s of CPU time"
        if problem:
            failures.append((k, problem))
            log(f"FAILURE input {k}: {problem}")
            if save:
                os.makedirs(save, exist_ok=True)
                with open(os.path.join(save, f"fail_{seed}_{k}.bin"), "wb") as f:
                    f.write(data)
    return counts, failures


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.fuzz", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--save", default="fuzz-failures")
    p.add_argument("--max-bytes", type=int, default=4096, help="use seed streams up to this size")
    args = p.parse_args(argv)
    t0 = time.time()
    counts, failures = run(args.n, args.seed, args.max_seconds, args.save, max_bytes=args.max_bytes)
    print(f"{args.n} inputs tried in {time.time() - t0:.0f} s: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
