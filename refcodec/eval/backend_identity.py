"""Every backend decodes every Kodak stream to the same bytes.

``python -m refcodec.eval.backend_identity [--kodak DIR] [--betas 0.1,0.5,0.9] [--backends numpy,cpu,cuda]
[--images N] [--json DONE.json]``

For each image and beta it encodes one stream with the shipped model, decodes
it on every backend named, and compares the SHA-256 of the RGB output; one
line per stream with each backend's time.  With ``--json`` the results are
written after every stream and streams already there are skipped, so a long
run (the CUDA simulator takes about half an hour per 768 x 512 picture) can
be stopped and resumed.  Exits with status 1 if any two backends differ.
"""

import argparse
import glob
import hashlib
import json
import os
import time

import numpy as np
from PIL import Image

from .. import decoder, encoder, model as model_mod

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.eval.backend_identity", description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--betas", default="0.1,0.5,0.9")
    p.add_argument("--backends", default="numpy,cpu,cuda")
    p.add_argument("--json", default=None, help="results so far; streams already there are skipped")
    args = p.parse_args(argv)

    m = model_mod.load()
    backends = args.backends.split(",")
    done = {}
    if args.json and os.path.exists(args.json):
        with open(args.json) as f:
            done = json.load(f)
    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))[:args.images]
    differ = 0
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        an = None
        for b in (float(v) for v in args.betas.split(",")):
            key = f"{os.path.basename(f)} beta {b} {m.model_id.hex()}"
            have = done.get(key, {})
            todo = [be for be in backends if be not in have]
            if todo:
                an = an or encoder.Analysis(rgb, m)
                data = an.stream(encoder.beta_to_code(b))
                for be in todo:
                    t0 = time.perf_counter()
                    out = decoder.decode(data, backend=be, models=[m])
                    have[be] = {"sha256": hashlib.sha256(out.tobytes()).hexdigest(),
                                "seconds": round(time.perf_counter() - t0, 2)}
                    done[key] = have
                    if args.json:
                        with open(args.json + ".tmp", "w") as fh:
                            json.dump(done, fh, indent=1)
                        os.replace(args.json + ".tmp", args.json)
            hashes = {have[be]["sha256"] for be in backends}
            same = len(hashes) == 1
            differ += not same
            print(f"{'SAME' if same else 'DIFFER'} {key}: " + ", ".join(
                f"{be} {have[be]['seconds']} s" for be in backends) + f" sha256 {sorted(hashes)[0][:16]}", flush=True)
    n = len(files) * len(args.betas.split(","))
    print(f"{n - differ} of {n} streams decode identically on {', '.join(backends)}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
