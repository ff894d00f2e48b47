"""Write tests/data/tiny-float.npz: an untrained, tiny model in the trainer's
float format (N=8, M=8, Z=4, NH=8), for tests that need a whole codec but not
a good one.  Needs torch (the ``train`` extra).  Deterministic (seed 0).

    python tools/make_tiny_float.py
"""

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from refcodec import arch as A  # noqa: E402
from refcodec.train.__main__ import export_float  # noqa: E402
from refcodec.train.nets import HyperpriorTorch  # noqa: E402

torch.manual_seed(0)
model = HyperpriorTorch(A.make_arch(N=8, M=8, Z=4, NH=8))
with torch.no_grad():
    for name, p in model.named_parameters():
        if "beta_p" in name or "gamma_p" in name:
            p.add_(0.05 * torch.rand_like(p))
out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tiny-float.npz")
export_float(model, out, step=0, score=None)
print(f"wrote {out}")
