"""Every backend decodes every Kodak stream to the same bytes.

``python -m refcodec.studies.backend_identity [--kodak DIR] [--betas 0.1,0.5,0.9] [--backends numpy,cpu,cuda]
[--images N] [--json DONE.json] [--streams DIR]``

For each image and beta it encodes one stream with the shipped model, decodes
it on every backend named, and compares the SHA-256 of the RGB output; one
line per stream with each backend's time.  With ``--json`` the results are
written after every stream, each with the SHA-256 of the stream it decoded,
and backends already recorded for the same stream are skipped, so a long run
can be stopped and resumed.  With ``--streams DIR`` the streams are written
to (and, when there, read from) DIR; where the Kodak folder is absent the run
decodes the streams of DIR alone.  That is how a GPU check works: record
numpy and numba CPU here, carry DIR and the JSON to the GPU machine (no Kodak,
no encoder, whose float arithmetic may differ there), and decode the very same
bytes with ``--backends numpy,cpu,cuda`` (only ``cuda`` runs there).  Exits
with status 1 if any two backends differ.
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


def _file_name(name):
    return name.replace(" beta ", "_beta") + ".rcd"


def streams(args, m):
    """Yield ``(name, data)``: ``name`` is "IMAGE beta B"."""
    betas = [float(v) for v in args.betas.split(",")]
    files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))[:args.images]
    if not files:
        if not args.streams:
            raise SystemExit(f"no PNG images in {args.kodak} (and no --streams folder to decode)")
        paths = sorted(glob.glob(os.path.join(args.streams, "*.rcd")))
        if not paths:
            raise SystemExit(f"no PNG images in {args.kodak} and no .rcd streams in {args.streams}")
        for path in paths:
            with open(path, "rb") as f:
                yield os.path.basename(path)[:-4].replace("_beta", " beta "), f.read()
        return
    if args.streams:
        os.makedirs(args.streams, exist_ok=True)
    for f in files:
        an = None
        for b in betas:
            name = f"{os.path.splitext(os.path.basename(f))[0]} beta {b}"
            path = os.path.join(args.streams, _file_name(name)) if args.streams else None
            if path and os.path.exists(path):
                with open(path, "rb") as fh:
                    data = fh.read()
            else:
                an = an or encoder.Analysis(np.asarray(Image.open(f).convert("RGB")), m)
                data = an.stream(encoder.beta_to_code(b))
                if path:
                    with open(path, "wb") as fh:
                        fh.write(data)
            yield name, data


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.backend_identity", description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=os.path.join(SHARED, "data", "kodak"))
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--betas", default="0.1,0.5,0.9")
    p.add_argument("--backends", default="numpy,cpu,cuda")
    p.add_argument("--json", default=None, help="results so far; backends recorded for the same stream are skipped")
    p.add_argument("--streams", default=None, metavar="DIR", help="write the streams here, read them when present")
    args = p.parse_args(argv)

    m = model_mod.load()
    backends = args.backends.split(",")
    done = {}
    if args.json and os.path.exists(args.json):
        with open(args.json) as f:
            done = json.load(f)
    differ = n = 0
    for name, data in streams(args, m):
        sha = hashlib.sha256(data).hexdigest()
        have = done.get(name, {})
        if have.get("stream") != sha:
            have = {"stream": sha, "bytes": len(data)}          # another stream under this name: start over
        for be in (be for be in backends if be not in have):
            t0 = time.perf_counter()
            out = decoder.decode(data, backend=be, models=[m])
            have[be] = {"sha256": hashlib.sha256(out.tobytes()).hexdigest(),
                        "seconds": round(time.perf_counter() - t0, 2)}
            done[name] = have
            if args.json:
                with open(args.json + ".tmp", "w") as fh:
                    json.dump(done, fh, indent=1)
                os.replace(args.json + ".tmp", args.json)
        hashes = {have[be]["sha256"] for be in backends}
        same = len(hashes) == 1
        differ += not same
        n += 1
        print(f"{'SAME' if same else 'DIFFER'} {name} ({len(data)} bytes, stream {sha[:12]}): " + ", ".join(
            f"{be} {have[be]['seconds']} s" for be in backends) + f"; output sha256 {sorted(hashes)[0][:16]}",
            flush=True)
    print(f"{n - differ} of {n} streams decode identically on {', '.join(backends)}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
