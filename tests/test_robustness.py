"""Untrusted input: a short seeded fuzz run, and the same output whatever the thread count."""

import os
import subprocess
import sys

from refcodec import fuzz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_short_fuzz_run_has_no_failures():
    counts, failures = fuzz.run(1500, seed=1234, max_seconds=10.0, log=lambda s: None)
    assert not failures, failures[:5]
    assert counts["rejected"] > 0 and sum(v for k, v in counts.items() if k in ("decoded", "rejected")) == 1500
    assert counts.get("EntropyDecodingError", 0) > 0          # the mutations reach the entropy decoder


SCRIPT = """
import hashlib, json, os, sys
from refcodec.conformance import plane_hashes
from refcodec import decoder
from refcodec.model import Model
root = sys.argv[1]
man = json.load(open(os.path.join(root, 'manifest.json')))
models = [Model(os.path.join(root, 'models', m)) for m in man['models']]
for v in man['vectors']:
    if v['width'] * v['height'] > 100000:
        continue
    rgb = decoder.decode(open(os.path.join(root, v['id'], 'bitstream.bin'), 'rb').read(), models=models)
    print(v['id'], plane_hashes(rgb)['rgb'])
"""


def test_output_is_identical_with_one_and_two_threads():
    outs = []
    for threads in ("1", "2", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        r = subprocess.run([sys.executable, "-c", SCRIPT, os.path.join(ROOT, "vectors")], capture_output=True,
                           text=True, env=env, timeout=600, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1] == outs[2] and outs[0].count("\n") >= 10
