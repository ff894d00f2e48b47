"""What the map codings of the later editions save: ``python -m refcodec.studies.qmap_syntax_study``.

For each picture, the `rdo` quality map the encoder picks at ``--beta``
(block size by its own rule) is coded five ways (clause 6.7, SPEC.md):
the first edition's (no step, one table row), the step alone, the step with
contexts (second edition), the values directly under a table of their
frequencies (third edition), and the encoder's choice (``auto``, the
cheapest).  Printed: the bytes of q_data plus the header bytes each coding
adds, the map's order-0 entropy of its differences (the bound of a one-row
coding) and of its values (the bound of the direct coding), and the share of
the stream the map takes under the first and the chosen coding.
"""

import argparse
import glob
import os

import numpy as np
from PIL import Image

from .. import qmap as qm
from ..encoder import Analysis, beta_to_code, resolve_qmap
from ..model import Model

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "kodak")


def entropy_bits(d):
    _, counts = np.unique(d, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def study(path, beta, model, block=None):
    rgb = np.asarray(Image.open(path).convert("RGB"))
    an = Analysis(rgb, model)
    code = beta_to_code(beta)
    Q, k = resolve_qmap(an, rgb, "rdo", block, beta_code=code)
    out = {"image": os.path.basename(path), "k": k, "grid": Q.shape}
    for coding in ("first", "step", "context", "direct", "auto"):
        syn = qm.map_syntax(Q, model.y_tables, coding)
        data = qm.encode_map(Q, syn, model.y_tables)
        out[coding] = len(data) + (2 if syn.context else 0) + (1 + len(syn.direct[1]) if syn.direct else 0)
        if coding == "auto":
            out["auto_is"] = (f"step 2^{syn.step_log2}, "
                              + ("direct" if syn.direct else "contexts" if syn.context else "one row"))
    out["entropy_bytes"] = entropy_bits(qm.differences(Q)) / 8
    out["value_entropy_bytes"] = entropy_bits(Q.reshape(-1)) / 8
    an.qmap_coding = "first"
    out["stream_first"] = len(an.stream(code, None, Q, k))
    an.qmap_coding = "auto"
    out["stream_auto"] = len(an.stream(code, None, Q, k))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.studies.qmap_syntax_study",
                                description=__doc__.split("\n")[0])
    p.add_argument("images", nargs="*", help="pictures (default: the 24 Kodak images of ../shared)")
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--model", default=None)
    p.add_argument("--block", type=int, default=None, help="map block size 2^k (default: the encoder's choice)")
    args = p.parse_args(argv)
    files = args.images or sorted(glob.glob(os.path.join(SHARED, "*.png")))
    model = Model(args.model) if args.model else Model.default()
    print(f"rdo maps at beta {args.beta}; q_data bytes (+ the header bytes a coding adds)\n")
    print("| image | block | first edition | step | step + contexts | direct | auto | order-0 entropy: "
          "differences, values | map share: first → auto |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---|")
    tot = {"first": 0, "auto": 0, "sf": 0, "sa": 0}
    for f in files:
        r = study(f, args.beta, model, args.block)
        share_f = 100 * r["first"] / r["stream_first"]
        share_a = 100 * r["auto"] / r["stream_auto"]
        print(f"| {r['image']} | 2^{r['k']} | {r['first']} | {r['step']} | {r['context']} | {r['direct']} | "
              f"{r['auto']} ({r['auto_is']}) | {r['entropy_bytes']:.0f}, {r['value_entropy_bytes']:.0f} | "
              f"{share_f:.2f} % → {share_a:.2f} % |", flush=True)
        tot["first"] += r["first"]
        tot["auto"] += r["auto"]
        tot["sf"] += r["stream_first"]
        tot["sa"] += r["stream_auto"]
    print(f"\nall: map {tot['first']} → {tot['auto']} bytes ({100 * (tot['auto'] / tot['first'] - 1):+.1f} %); "
          f"streams {tot['sf']} → {tot['sa']} bytes ({100 * (tot['sa'] / tot['sf'] - 1):+.2f} %)")


if __name__ == "__main__":
    main()
