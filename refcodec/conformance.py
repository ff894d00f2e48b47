"""Conformance checking (SPEC.md clause 10): ``refcodec conform DIR [--backend B]``.

A conformance directory holds ``manifest.json``; ``models/`` (the model files
the vectors name); one folder per valid vector with ``bitstream.bin``,
``expected.json`` (SHA-256 of each decoded plane R, G, B and of the RGB
output, size) and ``description.txt``; and ``invalid/`` with streams that a
decoder must reject, each with the error class it must raise.

A vector passes when the decoder's output hashes equal the expected ones
(bit-exact output); an invalid stream passes when decoding raises exactly
the listed refcodec error class -- any other exception, or a picture, fails.
"""

import hashlib
import json
import os
import time

import numpy as np

from . import decoder
from .errors import RefcodecError
from .model import Model


def plane_hashes(rgb):
    rgb = np.ascontiguousarray(rgb, np.uint8)
    out = {name: hashlib.sha256(np.ascontiguousarray(rgb[..., i]).tobytes()).hexdigest()
           for i, name in enumerate("RGB")}
    out["rgb"] = hashlib.sha256(rgb.tobytes()).hexdigest()
    return out


def load_manifest(root):
    path = os.path.join(root, "manifest.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise RefcodecError(f"cannot read conformance manifest {path}: {e}") from None


def _models(root, manifest):
    return {name: Model(os.path.join(root, "models", name)) for name in manifest["models"]}


def check(root, backend="cpu", subset=None, log=print, trace=False, vector=None):
    """Check every vector (or those with ``subset`` in their tags); returns (passed, failed).

    ``vector``: only the vector (or invalid stream) of that id -- its folder
    name, or ``invalid/FILE`` -- whatever its tags.

    An unavailable backend (``cuda`` without a GPU or the simulator), a
    subset no vector has and an id no vector has are refused up front
    (RefcodecError), so that a count never includes vectors that did not run
    on the backend.

    ``trace``: decode with the decoder trace (clause 10.1) and compare it
    with the vector's; a failing vector then names the first clause and
    intermediate where this decoder departs."""
    from kernels.config import require_backend
    require_backend(backend)
    manifest = load_manifest(root)
    if subset:
        tags = sorted({t for v in manifest["vectors"] for t in v.get("tags", [])}
                      | {t for v in manifest.get("invalid", []) for t in v.get("tags", ["invalid"])})
        if subset not in tags:
            raise RefcodecError(f"no conformance vector has the tag {subset!r} (tags: {', '.join(tags)})")
    invalid_ids = ["invalid/" + inv["file"] for inv in manifest.get("invalid", [])]
    if vector is not None and vector not in [v["id"] for v in manifest["vectors"]] + invalid_ids:
        raise RefcodecError(f"no conformance vector has the id {vector!r} (the folder names of {root}, "
                            "or invalid/FILE)")
    models = list(_models(root, manifest).values())
    passed = failed = 0
    for v in manifest["vectors"]:
        if subset and subset not in v.get("tags", []) or vector is not None and vector != v["id"]:
            continue
        folder = os.path.join(root, v["id"])
        t0 = time.perf_counter()
        try:
            with open(os.path.join(folder, "bitstream.bin"), "rb") as f:
                data = f.read()
            with open(os.path.join(folder, "expected.json")) as f:
                expected = json.load(f)
            if trace:
                from .trace import first_departure, trace as run_trace
                recs = []
                try:
                    _, rgb = run_trace(data, models=models, backend=backend, out=recs)
                except Exception as e:   # where it stopped: the first record it did not reproduce
                    dep = first_departure(recs, expected.get("trace", []))
                    where = f"departs at clause {dep['clause']} ({dep['name']}); " if dep else ""
                    raise type(e)(f"{where}decoding stopped: {e}") from None
            else:
                rgb = decoder.decode(data, backend=backend, models=models)
            got = plane_hashes(rgb)
            bad = [k for k in ("R", "G", "B", "rgb") if got[k] != expected["sha256"][k]]
            if rgb.shape[:2] != (expected["height"], expected["width"]):
                bad.append("size")
            ok, why = not bad, f"mismatch in {', '.join(bad)}" if bad else ""
            if trace:
                if "trace" not in expected:
                    ok, why = False, "the vector carries no trace"
                else:
                    dep = first_departure(recs, expected["trace"])
                    if dep is not None:
                        ok = False
                        why = (f"departs at clause {dep['clause']} ({dep['name']}, {dep['dtype']} "
                               f"{dep['shape']})" + (f"; output {why}" if why else ""))
            elif not ok:
                why += " (conform --trace names the first clause that departs)"
        except Exception as e:  # a conformance failure, whatever it is
            ok, why = False, f"{type(e).__name__}: {e}"
        dt = time.perf_counter() - t0
        log(f"{'PASS' if ok else 'FAIL'} {v['id']} ({dt:.2f} s){'' if ok else ': ' + why}")
        passed += ok
        failed += not ok
    for inv in manifest.get("invalid", []):
        if (subset and subset not in inv.get("tags", ["invalid"])
                or vector is not None and vector != "invalid/" + inv["file"]):
            continue
        try:
            with open(os.path.join(root, "invalid", inv["file"]), "rb") as f:
                data = f.read()
            decoder.decode(data, backend=backend, models=models)
            ok, why = False, "decoded a picture; expected " + inv["error"]
        except RefcodecError as e:
            ok = type(e).__name__ == inv["error"]
            why = "" if ok else f"raised {type(e).__name__} ({e}); expected {inv['error']}"
        except Exception as e:
            ok, why = False, f"crashed with {type(e).__name__}: {e}"
        log(f"{'PASS' if ok else 'FAIL'} invalid/{inv['file']}{'' if ok else ': ' + why}")
        passed += ok
        failed += not ok
    return passed, failed
