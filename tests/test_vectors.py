"""Conformance vectors: every backend decodes them bit-exactly and rejects the
invalid ones; the generator rebuilds them byte for byte."""

import filecmp
import json
import os

import numpy as np
import pytest

from refcodec.conformance import check
from refcodec.vectors import generate

from .conftest import CUDA

VECTORS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vectors")


def manifest():
    with open(os.path.join(VECTORS, "manifest.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_all_vectors_pass(backend):
    lines = []
    passed, failed = check(VECTORS, backend=backend, log=lines.append)
    m = manifest()
    assert failed == 0, "\n".join(line for line in lines if line.startswith("FAIL"))
    assert passed == len(m["vectors"]) + len(m["invalid"])


#: The vectors CI decodes on the CUDA simulator (tag ``cuda``), one test each,
#: so that a parallel run (pytest -n) spreads them over the workers.
CUDA_SUBSET = [v["id"] for v in manifest()["vectors"] if "cuda" in v.get("tags", [])] + \
              ["invalid/" + inv["file"] for inv in manifest()["invalid"] if "cuda" in inv.get("tags", ["invalid"])]


def test_the_cuda_subset_covers_the_tools():
    vs = {v["id"]: v for v in manifest()["vectors"]}
    tags = {t for vid in CUDA_SUBSET if vid in vs for t in vs[vid]["tags"]}
    assert len(CUDA_SUBSET) >= 4 and {"context", "postfilter", "monochrome"} <= tags
    assert {1, 2} <= {vs[vid]["substreams"] for vid in CUDA_SUBSET if vid in vs}


@pytest.mark.skipif(not CUDA, reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set")
@pytest.mark.parametrize("vector", CUDA_SUBSET)
def test_cuda_subset_passes(vector):
    lines = []
    passed, failed = check(VECTORS, backend="cuda", vector=vector, log=lines.append)
    assert (passed, failed) == (1, 0), "\n".join(lines)


def test_manifest_covers_the_tools():
    vs = manifest()["vectors"]
    sizes = {(v["width"], v["height"]) for v in vs}
    assert (1, 1) in sizes
    assert any(w % 2 and h % 2 for w, h in sizes)
    assert any(w % 64 or h % 64 for w, h in sizes)
    assert any(h > w for w, h in sizes)
    assert any(w * h > 2_000_000 for w, h in sizes)
    assert {0.0, 1.0} <= {v["beta"] for v in vs}
    assert {1, 64} <= {v["substreams"] for v in vs} and len({v["substreams"] for v in vs}) >= 4
    assert {"activity", "rdo", "max", "min", "alternating", "random"} <= {v["qmap"] for v in vs}
    assert {0, 1, 2, 3, 4} <= {v["qmap_block_log2"] for v in vs if v["qmap"]}
    assert {"conf-w16.npz", "conf-w8.npz", "conf-ctx-w16.npz", "conf-ctx-w8.npz", "conf-gain-w16.npz",
            "conf-pf-w16.npz", "conf-pf-w8.npz"} == {v["model"] for v in vs}
    pf = [v for v in vs if "postfilter" in v["tags"]]                 # tool_flags bit 3
    assert {v["model"] for v in pf} == {"conf-pf-w16.npz", "conf-pf-w8.npz"}
    assert (1, 1) in {(v["width"], v["height"]) for v in pf} and {0.0, 1.0} <= {v["beta"] for v in pf}
    assert any(v["qmap"] for v in pf) and any("cuda" in v["tags"] for v in pf)
    ctx = [v for v in vs if v["model"].startswith("conf-ctx")]       # the checkerboard context tool
    assert (1, 1) in {(v["width"], v["height"]) for v in ctx} and any(v["qmap"] for v in ctx)
    assert {0.0, 1.0, 64} <= {v["beta"] for v in ctx} | {v["substreams"] for v in ctx}
    assert any(v["escapes"] > 0 for v in ctx) and any("cuda" in v["tags"] for v in ctx)
    assert any(v["escapes"] > 0 for v in vs)
    mono = [v for v in vs if "monochrome" in v["tags"]]          # tool_flags bit 2
    assert mono and any(v["model"].startswith("conf-ctx") for v in mono) and any("cuda" in v["tags"] for v in mono)
    errors = {i["error"] for i in manifest()["invalid"]}
    assert {"TruncatedStreamError", "BitstreamError", "EntropyDecodingError"} <= errors
    assert {"context_odd_substreams.bin", "context_model_without_networks.bin", "context_phase1_bitflip.bin",
            "postfilter_model_without_g_pf.bin", "qmap_direct_with_context.bin", "qmap_num_values_0.bin",
            "qmap_direct_values_above_8.bin", "qmap_freq_0.bin",
            "qmap_direct_escape.bin"} <= {i["file"] for i in manifest()["invalid"]}


def test_monochrome_vectors_fail_a_decoder_that_ignores_the_flag():
    """A decoder that reads tool_flags bit 2 but converts Y, Cb, Cr as for a
    colour picture outputs other samples (g_s's Cb and Cr are small, not
    zero): the vectors pin the rule of clause 6.6."""
    from refcodec import decoder
    from refcodec.conformance import plane_hashes
    from refcodec.model import Model
    m = manifest()
    for v in (v for v in m["vectors"] if "monochrome" in v["tags"]):
        folder = os.path.join(VECTORS, v["id"])
        data = open(os.path.join(folder, "bitstream.bin"), "rb").read()
        assert decoder.picture(data).header.monochrome
        model = Model(os.path.join(VECTORS, "models", v["model"]))
        pic = decoder.picture(data)
        y_hat, *_ = decoder.decode_latents(pic, model, "cpu")
        wrong = decoder.synthesize(model, y_hat, v["height"], v["width"], monochrome=False)
        expected = json.load(open(os.path.join(folder, "expected.json")))["sha256"]
        assert plane_hashes(wrong)["rgb"] != expected["rgb"]
        assert plane_hashes(decoder.decode(data, models=[model]))["rgb"] == expected["rgb"]


def decodes_as_expected(v):
    """Whether the decoder (as the test has patched it) outputs vector v's
    expected picture; a refcodec error counts as another picture."""
    from refcodec import decoder
    from refcodec.conformance import plane_hashes
    from refcodec.errors import RefcodecError
    from refcodec.model import Model
    folder = os.path.join(VECTORS, v["id"])
    data = open(os.path.join(folder, "bitstream.bin"), "rb").read()
    model = Model(os.path.join(VECTORS, "models", v["model"]))
    expected = json.load(open(os.path.join(folder, "expected.json")))["sha256"]["rgb"]
    try:
        return plane_hashes(decoder.decode(data, models=[model]))["rgb"] == expected
    except RefcodecError:
        return False


@pytest.mark.parametrize("defect", ["ignore_flag", "ignore_map"])
def test_postfilter_vectors_fail_a_decoder_that_slips(monkeypatch, defect):
    """Clause 6.5.1: a decoder that skips the post-filter, or builds the rate
    plane without the quality map's Q, outputs another picture for the
    post-filter vectors (every vector but the 1x1 one for the first slip,
    some vector with a map for the second)."""
    from refcodec import decoder
    real = decoder.rate_plane
    if defect == "ignore_flag":
        monkeypatch.setattr(decoder, "postfilter", lambda model, x, r, backend="cpu": x)
    else:
        monkeypatch.setattr(decoder, "rate_plane", lambda m, code, Q, hy, wy: real(m, code, None, hy, wy))
    vs = [v for v in manifest()["vectors"] if "postfilter" in v["tags"]]
    for v in vs:
        data = open(os.path.join(VECTORS, v["id"], "bitstream.bin"), "rb").read()
        assert decoder.picture(data).header.postfilter_enabled
    differ = [not decodes_as_expected(v) for v in vs]
    if defect == "ignore_flag":
        assert all(differ[i] for i, v in enumerate(vs) if v["width"] * v["height"] > 1)
    else:
        assert any(differ) and all(not d for d, v in zip(differ, vs) if not v["qmap"])


@pytest.mark.parametrize("defect", ["no_step", "no_context"])
def test_map_coding_vectors_fail_a_decoder_that_ignores_step_or_context(monkeypatch, defect):
    """Clause 6.7's second edition: a decoder that reads qmap_mode but ignores
    the step 2^s (or the context rows) decodes another map, or none: each
    qmap2 vector that uses the rule catches it."""
    from refcodec.syntax.picture_header import PictureHeader
    vs = [v for v in manifest()["vectors"] if "qmap2" in v["tags"]]
    assert {v["qmap_coding"]["step_log2"] for v in vs} >= {1, 2}
    assert any(v["qmap_coding"]["context"] for v in vs) and any(not v["qmap_coding"]["context"] for v in vs)
    assert any(v["qmap_coding"]["context"] and "cuda" in v["tags"] for v in vs)
    if defect == "no_step":
        from refcodec import qmap
        plain = qmap.reconstruct
        monkeypatch.setattr(qmap, "reconstruct", lambda dq, hq, wq, step_log2=0: plain(dq, hq, wq, 0))
        uses = [v for v in vs if v["qmap_coding"]["step_log2"]]
    else:
        monkeypatch.setattr(PictureHeader, "qmap_ctx_rows", property(lambda h: (h.qmap_sigma_row,) * 3))
        uses = [v for v in vs if v["qmap_coding"]["context"]]
    for v in uses:
        assert not decodes_as_expected(v), v["id"]


@pytest.mark.parametrize("defect", ["ceil", "no_escape_room", "ignore_step"])
def test_direct_coding_vectors_fail_a_decoder_that_builds_another_table(monkeypatch, defect):
    """Clause 6.7's third edition: a decoder that builds the direct coding's
    table another way (rounding F_a * 65535 / F up; scaling by 65536 so the
    escape gets nothing) or ignores the step decodes another map, or none:
    the qmap3 vectors catch it.  They cover one value to all 17, frequencies
    1 and 255, a step, the context model and the CUDA subset."""
    from kernels import rans
    from refcodec import qmap
    vs = [v for v in manifest()["vectors"] if "qmap3" in v["tags"]]
    assert all("direct" in v["qmap_coding"] for v in vs)
    assert any(len(v["qmap_coding"]["direct"]["freqs"]) == 17 for v in vs)
    assert any({1, 255} <= set(v["qmap_coding"]["direct"]["freqs"]) for v in vs)
    assert any(v["qmap_coding"]["step_log2"] for v in vs) and any("cuda" in v["tags"] for v in vs)
    real = qmap.direct_tables
    if defect == "ignore_step":
        plain = qmap.decode_direct
        monkeypatch.setattr(qmap, "decode_direct", lambda data, hq, wq, v_min, freqs, step_log2=0, backend="cpu":
                            plain(data, hq, wq, v_min, freqs, 0, backend))
        vs = [v for v in vs if v["qmap_coding"]["step_log2"]]
    else:
        def other(v_min, freqs):
            cdf, n, off = real(v_min, freqs)
            F = np.concatenate([[0], np.cumsum(freqs)])
            cdf = cdf.copy()
            if defect == "ceil":
                cdf[0, :len(freqs) + 1] = (F * 65535 + F[-1] - 1) // F[-1]
            else:
                cdf[0, 1:len(freqs)] = F[1:-1] * 65536 // F[-1]
            return rans.Tables(cdf, n, off)
        monkeypatch.setattr(qmap, "direct_tables", other)
    differ = [not decodes_as_expected(v) for v in vs]
    # a table off by one in a few entries moves only the symbols whose slots it moves: some vector
    # catches it (for some frequencies both rules give the same table); ignoring the step, every one
    assert all(differ) if defect != "no_escape_room" else any(differ), differ


def test_generator_rebuilds_every_vector_byte_for_byte(tmp_path):
    generate(str(tmp_path))
    ref = manifest()
    for v in ref["vectors"]:
        for f in ("bitstream.bin", "expected.json", "description.txt"):
            assert filecmp.cmp(os.path.join(VECTORS, v["id"], f), tmp_path / v["id"] / f, shallow=False), (v["id"], f)
    for inv in ref["invalid"]:
        assert filecmp.cmp(os.path.join(VECTORS, "invalid", inv["file"]), tmp_path / "invalid" / inv["file"],
                           shallow=False)
    assert json.loads((tmp_path / "manifest.json").read_text()) == ref
    assert filecmp.cmp(os.path.join(VECTORS, "README.md"), tmp_path / "README.md", shallow=False)


# ------------------------------------------------------------------ the decoder trace (SPEC.md 10.1)

@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_every_vector_carries_a_trace_the_decoder_reproduces(backend):
    lines = []
    passed, failed = check(VECTORS, backend=backend, log=lines.append, trace=True)
    assert failed == 0, "\n".join(line for line in lines if line.startswith("FAIL"))
    for v in manifest()["vectors"]:
        recs = json.load(open(os.path.join(VECTORS, v["id"], "expected.json")))["trace"]
        names = [r["name"] for r in recs]
        assert names[0] == "header" and names[-1] == "rgb" and "y_hat" in names and "z_hat" in names
        assert ("q_phase1" in names) == ("context" in v["tags"]) and ("Q" in names) == bool(
            v["qmap"] and v["qmap"] not in ("escape", "gain_floor", "z_clamp"))


@pytest.mark.parametrize("where,patch", [("6.4", "dequantize"), ("6.6", "colour_transform"), ("6.3", "h_s")])
def test_trace_names_the_first_clause_where_a_decoder_departs(monkeypatch, where, patch):
    """A decoder with one deliberate slip (y_hat one off, a colour sample one
    off, h_s's output one off) fails the vectors, and --trace says where."""
    from refcodec import decoder
    from refcodec.model import IntNet
    if patch == "dequantize":
        real = decoder.dequantize
        monkeypatch.setattr(decoder, "dequantize", lambda *a: (real(*a) + 1).astype(np.int16))
    elif patch == "colour_transform":
        real = decoder.colour_transform
        monkeypatch.setattr(decoder, "colour_transform", lambda *a, **k: real(*a, **k) ^ np.uint8(1))
    else:
        real = IntNet.__call__

        def slipped(self, x, backend="cpu"):
            out = real(self, x, backend)
            return (out + 1).astype(np.int16) if self.name == "h_s" else out
        monkeypatch.setattr(IntNet, "__call__", slipped)
    lines = []
    passed, failed = check(VECTORS, backend="cpu", subset="cuda", log=lines.append, trace=True)
    fails = [line for line in lines if line.startswith("FAIL") and "invalid/" not in line]
    assert failed and fails
    assert all(f"departs at clause {where}" in line for line in fails), fails


def test_decode_writes_the_trace(tmp_path):
    from refcodec.cli import main
    v = next(v for v in manifest()["vectors"] if "context" in v["tags"] and v["qmap"] == "random")
    folder = os.path.join(VECTORS, v["id"])
    assert main(["decode", os.path.join(folder, "bitstream.bin"), str(tmp_path / "o.png"), "--trace",
                 str(tmp_path / "t.json"), "--model", os.path.join(VECTORS, "models", v["model"]), "-q"]) == 0
    got = json.loads((tmp_path / "t.json").read_text())
    assert got["format"] == "refcodec-trace"
    assert got["records"] == json.load(open(os.path.join(folder, "expected.json")))["trace"]


def test_rule_vectors_fail_a_decoder_that_breaks_their_rule():
    """gain_floor_division fails a decoder whose gain interpolation truncates
    (6.4); z_hat_clamp one whose h_s reads z_hat unclamped (6.3).  Every
    other vector passes such decoders: these two are what pins the rules."""
    from refcodec import decoder, gain
    from refcodec.model import Model
    from refcodec.vectors import COVERS, breaks_rule, truncating_log2_gain
    vs = {v["id"]: v for v in manifest()["vectors"]}
    assert set(COVERS) <= set(vs) and all(vs[k]["covers"] == COVERS[k] for k in COVERS)
    models = {}
    for vid, v in vs.items():
        m = models.setdefault(v["model"], Model(os.path.join(VECTORS, "models", v["model"])))
        data = open(os.path.join(VECTORS, vid, "bitstream.bin"), "rb").read()
        if vid in COVERS:
            assert breaks_rule(vid, data, m), vid
        else:
            # the truncating slip changes nothing elsewhere (the gains of the other models only rise)
            G = m.gain_log2_fp
            code = decoder.picture(data).header.beta_code
            assert np.array_equal(gain.log2_gain_fp(G, code), truncating_log2_gain(G, code)), vid


def test_the_derived_gain_model_is_reproducible(tmp_path):
    from refcodec.vectors import derive_gain_model
    derive_gain_model(os.path.join(VECTORS, "models", "conf-w16.npz"), str(tmp_path / "g.npz"))
    assert filecmp.cmp(tmp_path / "g.npz", os.path.join(VECTORS, "models", "conf-gain-w16.npz"), shallow=False)
