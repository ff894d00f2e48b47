"""Metrics and BD-rate."""

import numpy as np
import pytest

from refcodec.eval.bdrate import bd_psnr, bd_rate
from refcodec.eval.metrics import ms_ssim, psnr, psnr_ycbcr

# Mean Kodak curves (bpp, PSNR-RGB, PSNR-Y) measured for ../shared/anchors (kodak_rd.json)
VVENC = [(0.045755, 25.7948, 26.4136), (0.091899, 27.6584, 28.3061), (0.17492, 29.6231, 30.4985),
         (0.314037, 31.7354, 32.9849), (0.52679, 34.1752, 35.7091), (0.822503, 36.6116, 38.5975),
         (1.205485, 38.9018, 41.5205), (1.726614, 41.151, 44.5609)]
WEBP = [(0.10257, 25.6749, 26.2387), (0.217424, 28.1086, 28.826), (0.274416, 28.9319, 29.7239),
        (0.377487, 30.1936, 31.0986), (0.577216, 32.2019, 33.3174), (0.76866, 33.7324, 35.0379),
        (0.939036, 34.872, 36.3522), (1.447547, 37.6061, 39.7076)]
JPEG = [(0.140802, 23.8522, 25.5182), (0.255512, 26.6718, 28.019), (0.358682, 28.1448, 29.3612),
        (0.449147, 29.1445, 30.2976), (0.610103, 30.4915, 31.6382), (0.869191, 32.1738, 33.3756),
        (1.213014, 33.9167, 35.2928), (1.835571, 36.4615, 38.2719)]


def cols(curve, i):
    return [p[0] for p in curve], [p[i] for p in curve]


@pytest.mark.parametrize("test,metric,expected", [(WEBP, 1, 75.54), (WEBP, 2, 77.43), (JPEG, 1, 181.79),
                                                  (JPEG, 2, 168.00)])
def test_bd_rate_reproduces_the_anchor_table(test, metric, expected):
    """Values of ../shared/anchors/bdrate_table.txt (pchip, anchor vvenc_ai_420)."""
    assert bd_rate(*cols(VVENC, metric), *cols(test, metric)) == pytest.approx(expected, abs=0.01)


def test_bd_rate_of_a_curve_against_itself_and_a_scaled_copy():
    r, q = cols(WEBP, 1)
    assert bd_rate(r, q, r, q) == pytest.approx(0, abs=1e-9)
    assert bd_rate(r, q, [x * 0.9 for x in r], q) == pytest.approx(-10, abs=1e-9)
    assert bd_psnr(r, q, r, [x + 0.5 for x in q]) == pytest.approx(0.5, abs=1e-9)


def test_psnr_and_ycbcr(rng):
    a = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    b = a.astype(np.int32)
    b[0, 0, 0] += 16 if b[0, 0, 0] < 128 else -16
    mse = 256 / a.size
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / mse))
    assert psnr(a, a) == float("inf")
    y, cb, cr = psnr_ycbcr(a, b)
    assert y == pytest.approx(10 * np.log10(255 ** 2 / ((16 * 0.2126) ** 2 / 256)))


def test_ms_ssim_basic_properties(rng):
    a = rng.integers(0, 256, (192, 192, 3)).astype(np.float64)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    small = np.clip(a + rng.normal(0, 3, a.shape), 0, 255)
    large = np.clip(a + rng.normal(0, 30, a.shape), 0, 255)
    assert 1.0 > ms_ssim(a, small) > ms_ssim(a, large) > 0


@pytest.mark.parametrize("pair", [(VVENC, WEBP), (VVENC, JPEG), (WEBP, JPEG), (JPEG, VVENC)])
@pytest.mark.parametrize("metric", [1, 2])
def test_bd_rate_agrees_with_the_bjontegaard_package(pair, metric):
    bj = pytest.importorskip("bjontegaard")
    a, t = pair
    ours = bd_rate(*cols(a, metric), *cols(t, metric))
    theirs = bj.bd_rate(*cols(a, metric), *cols(t, metric), method="pchip", require_matching_points=False,
                        min_overlap=0)
    assert ours == pytest.approx(theirs, abs=0.01)


def test_refine_study_merges_runs_over_disjoint_images(tmp_path, capsys):
    """refine_study --merge: the mean curves of two runs' points, and the
    BD-rate of refined against plain computed on them (here refined needs
    0.8x the rate of plain everywhere: -20 %); runs that differ are refused."""
    import json
    from refcodec.studies import refine_study
    betas = [0.1, 0.3, 0.5, 0.7]
    plain = [[(r, p, p + 0.5)] for r, p in [(0.1, 24.0), (0.25, 26.5), (0.5, 29.0), (1.0, 32.0)]]
    refined = [[(0.8 * r, p, py)] for [(r, p, py)] in plain]
    for i, name in enumerate(("a", "b")):
        json.dump({"betas": betas, "method": "sga", "iters": 40, "lr": 0.02, "images": [f"img{i}"],
                   "points": {"plain": plain, "refined": refined}}, open(tmp_path / f"{name}.json", "w"))
    refine_study.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                       "--anchors", str(tmp_path / "none.csv")])
    out = capsys.readouterr().out
    assert "Kodak, 2 images" in out and "BD-rate refined vs plain, PSNR-RGB: -20.00 %" in out
    json.dump({"betas": betas[:3], "method": "sga", "iters": 40, "lr": 0.02, "images": ["c"],
               "points": {"plain": plain[:3], "refined": refined[:3]}}, open(tmp_path / "c.json", "w"))
    with pytest.raises(SystemExit, match="differ"):
        refine_study.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "c.json")])


def test_context_study_codes_both_ways(tmp_path, capsys):
    """context_study: the same image at every beta with and without the
    checkerboard context, real streams of the shipped model, and a BD-rate."""
    import json
    import numpy as np
    from PIL import Image
    from refcodec.studies import context_study
    im = np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))[100:228, 200:392]
    (tmp_path / "k").mkdir()
    Image.fromarray(im).save(tmp_path / "k" / "a.png")
    context_study.main(["--kodak", str(tmp_path / "k"), "--betas", "0.1,0.4,0.7,1", "--json", str(tmp_path / "p.json")])
    out = capsys.readouterr().out
    assert "BD-rate context vs none, PSNR-RGB" in out
    pts = json.loads((tmp_path / "p.json").read_text())["points"]
    assert len(pts["none"]) == len(pts["context"]) == 4 and all(len(v) == 1 for v in pts["context"])
    assert pts["none"] != pts["context"]


def test_rdoq_study_compares_rate_weights(tmp_path, capsys):
    """rdoq_study: real streams at every beta for each rate weight, BD-rate
    against rounding to nearest (0, which is +0.00 % against itself)."""
    import numpy as np
    from PIL import Image
    from refcodec.studies import rdoq_study
    im = np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))[100:228, 200:392]
    (tmp_path / "k").mkdir()
    Image.fromarray(im).save(tmp_path / "k" / "a.png")
    rdoq_study.main(["--kodak", str(tmp_path / "k"), "--values", "auto,0.04,0.5", "--betas", "0.4,0.6,0.8,1"])
    lines = capsys.readouterr().out.splitlines()
    rows = {ln.split()[0]: ln.split() for ln in lines if ln[:1].isdigit() or ln.startswith("auto")}
    assert set(rows) == {"0.0", "auto", "0.04", "0.5"}
    assert rows["0.0"][1] == "+0.00"
    assert float(rows["0.5"][1]) != 0.0
    # knot lists, --pick and the per-beta table against the dense curve of rounding to nearest
    rdoq_study.main(["--kodak", str(tmp_path / "k"), "--pick", "1", "--values", "0.4:0.04/0.9:0.01,0.9:0.04",
                     "--betas", "0.4,0.6,0.8,1", "--per-beta"])
    out = capsys.readouterr().out
    table = out.split("rate at equal PSNR-RGB")[1].splitlines()[2:]
    per = {ln.split()[0]: [float(x) for x in ln.split()[1:]] for ln in table}
    assert set(per) == {"0.0", "0.4:0.04/0.9:0.01", "0.9:0.04"} and all(len(v) == 4 for v in per.values())
    assert per["0.0"] == [0.0] * 4                     # its betas lie on the dense curve
    # a single knot is a constant: 0.9:0.04 codes what 0.04 coded above
    bd = {ln.split()[0]: ln.split()[1] for ln in out.split("rate at equal")[0].splitlines() if ln[:1].isdigit()}
    assert bd["0.9:0.04"] == rows["0.04"][1] and bd["0.4:0.04/0.9:0.01"] != bd["0.9:0.04"]


def test_backend_identity_compares_and_resumes(tmp_path, capsys):
    """backend_identity: one stream per image and beta, decoded on each
    backend and compared by hash; a second run with the same --json decodes
    nothing again."""
    import json
    import numpy as np
    from PIL import Image
    from refcodec.studies import backend_identity
    im = np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))[:70, :90]
    (tmp_path / "k").mkdir()
    Image.fromarray(im).save(tmp_path / "k" / "a.png")
    argv = ["--kodak", str(tmp_path / "k"), "--betas", "0.2,0.8", "--backends", "numpy,cpu",
            "--json", str(tmp_path / "d.json")]
    assert backend_identity.main(argv) == 0
    assert "2 of 2 streams decode identically on numpy, cpu" in capsys.readouterr().out
    done = json.loads((tmp_path / "d.json").read_text())
    assert len(done) == 2 and all(set(v) == {"stream", "bytes", "numpy", "cpu"} for v in done.values())
    (tmp_path / "d.json").write_text(json.dumps({k: {**v, "cpu": {"sha256": "0" * 64, "seconds": 0}}
                                                 for k, v in done.items()}))
    assert backend_identity.main(argv) == 1                 # a recorded difference is reported, not re-decoded
    assert "DIFFER" in capsys.readouterr().out


def test_backend_identity_decodes_carried_streams(tmp_path, capsys, monkeypatch):
    """--streams: the streams encoded here are written to a folder; without
    the Kodak folder the run decodes that folder's streams alone, skips the
    backends recorded for the same bytes, and starts a stream over when its
    bytes differ from the record (the GPU check's way)."""
    import json
    import numpy as np
    from PIL import Image
    from refcodec import decoder
    from refcodec.studies import backend_identity
    im = np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))[:40, :50]
    (tmp_path / "k").mkdir()
    Image.fromarray(im).save(tmp_path / "k" / "a.png")
    S, J = tmp_path / "s", tmp_path / "d.json"
    argv = ["--kodak", str(tmp_path / "k"), "--betas", "0.2,0.8", "--backends", "numpy", "--json", str(J),
            "--streams", str(S)]
    assert backend_identity.main(argv) == 0
    assert sorted(p.name for p in S.iterdir()) == ["a_beta0.2.rcd", "a_beta0.8.rcd"]
    capsys.readouterr()
    calls = []
    real = decoder.decode
    monkeypatch.setattr(decoder, "decode", lambda data, backend, **kw: calls.append(backend) or real(data, backend, **kw))
    gone = ["--kodak", str(tmp_path / "nowhere"), "--backends", "numpy,cpu", "--json", str(J), "--streams", str(S)]
    assert backend_identity.main(gone) == 0
    assert calls == ["cpu", "cpu"]                          # numpy was recorded for these bytes
    assert "2 of 2 streams decode identically on numpy, cpu" in capsys.readouterr().out
    (S / "a_beta0.2.rcd").write_bytes((S / "a_beta0.8.rcd").read_bytes())
    calls.clear()
    assert backend_identity.main(gone) == 0
    assert calls == ["numpy", "cpu"]                        # other bytes under the name: decoded again
    done = json.loads(J.read_text())
    assert done["a beta 0.2"]["stream"] == done["a beta 0.8"]["stream"]
    with pytest.raises(SystemExit, match="no .rcd streams"):
        backend_identity.main(["--kodak", str(tmp_path / "nowhere"), "--streams", str(tmp_path / "empty")])


def test_component_study_simulates_a_chroma_offset(tmp_path, capsys):
    """component_study: channels split by the luma share of what they
    reconstruct; a negative chroma offset saves bits and costs chroma, so
    PSNR-YUV 6:1:1 and PSNR-Y move differently from 0; the encoder's own
    gain maps are back afterwards."""
    import numpy as np
    from PIL import Image
    from refcodec import encoder
    from refcodec.studies import component_study
    im = np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))[100:228, 200:392]
    (tmp_path / "k").mkdir()
    Image.fromarray(im).save(tmp_path / "k" / "kodim01.png")
    saved = encoder.gain_maps
    component_study.main(["--kodak", str(tmp_path / "k"), "--images", "1", "--betas", "0.3,0.5,0.7,0.9",
                          "--offsets", "-3", "--threshold", "0.9", "--probe", "96"])
    assert encoder.gain_maps is saved
    out = capsys.readouterr().out
    n = int(out.split(" chroma channels")[0].split()[-1])
    from refcodec.model import load
    assert 0 < n < load().arch["M"]          # a proper subset of the default model's latent channels
    line = [ln for ln in out.splitlines() if ln.startswith("chroma group offset -3")][0]
    assert "nan" not in line and "+0.00 %, PSNR-Y +0.00" not in line


def test_bdm_map_follows_the_bit_distribution():
    """qmap_study.bdm_map: gamma 1 keeps the picture's own distribution (Q 0
    everywhere); gamma > 1 gives finer Q to the blocks that spend the most
    bits, gamma < 1 the reverse; the maps code and decode."""
    import numpy as np
    from PIL import Image
    from refcodec import decoder, encoder
    from refcodec.model import Model
    from refcodec.studies.qmap_study import bdm_map
    rgb = np.ascontiguousarray(np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))[64:320, 128:512])
    an = encoder.Analysis(rgb, Model.default())
    assert not bdm_map(an, 30000, 1.0, 1).any()
    hi, lo = bdm_map(an, 30000, 1.5, 1), bdm_map(an, 30000, 0.67, 1)
    assert hi.shape == lo.shape == an.qmap_grid(1) and hi.any() and lo.any()
    q, rows = an.quantize(30000)
    bits = encoder._blocks(an.model.y_tables.symbol_bits(q, rows).reshape(an.hy, an.wy, -1).sum(axis=2)[None], 1)[0]
    busy = bits > np.median(bits)
    assert hi[busy].mean() > hi[~busy].mean() and lo[busy].mean() < lo[~busy].mean()
    data = an.stream(30000, None, hi, 1)
    assert np.array_equal(decoder.decode(data), decoder.decode(data, backend="numpy"))


def test_qmap_study_runs_in_parts_through_its_json(tmp_path, capsys, monkeypatch):
    """qmap_study --json: a study over two pictures run in two parts (--pick)
    and summed up by a run that codes nothing gives the same BD-rates as one
    run over both; a second run over a complete file codes nothing and
    prints the same line; a file of another model is refused by name."""
    import json
    from PIL import Image
    from refcodec.model import load
    from refcodec.studies import qmap_study
    im = np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))
    (tmp_path / "k").mkdir()
    Image.fromarray(im[64:192, 128:320]).save(tmp_path / "k" / "a.png")
    Image.fromarray(im[300:428, 40:232]).save(tmp_path / "k" / "b.png")
    v1 = "refcodec/models/refcodec-v1-w16.npz"
    common = ["--kodak", str(tmp_path / "k"), "--targets", "0.3,0.6,1.2", "--strategies", "flat,rdo", "--no-roi",
              "--model", v1]

    def summary(out):
        return [ln for ln in out.splitlines() if ln.startswith("rdo ")][0]
    whole = tmp_path / "whole.json"
    qmap_study.main(common + ["--json", str(whole)])
    line = summary(capsys.readouterr().out)
    data = json.loads(whole.read_text())
    assert data["key"]["model_id"] == load(v1).model_id.hex()
    assert {(r["picture"], r["strategy"]) for r in data["results"]} == {
        (f, s) for f in ("a.png", "b.png") for s in ("flat", "rdo")} and len(data["results"]) == 12

    def no_coding(*a, **k):
        raise AssertionError("a stored result was coded again")
    parts = tmp_path / "parts.json"
    qmap_study.main(common + ["--pick", "1", "--json", str(parts)])
    qmap_study.main(common + ["--pick", "2", "--json", str(parts)])
    capsys.readouterr()
    with monkeypatch.context() as mp:
        mp.setattr(qmap_study, "match", no_coding)
        qmap_study.main(common + ["--json", str(whole)])
        assert summary(capsys.readouterr().out) == line
        qmap_study.main(common + ["--json", str(parts)])
        both = summary(capsys.readouterr().out)
    assert both.split("; encode time")[0] == line.split("; encode time")[0]
    with pytest.raises(SystemExit):
        qmap_study.main(common[:-1] + ["refcodec/models/refcodec-v1-w8.npz", "--json", str(whole)])
    assert "results of another model" in capsys.readouterr().err


def test_oracle_headroom_and_rdo_variants():
    """qmap_study.oracle_headroom: non-negative, and finer blocks can only
    save more (a sum of minima is at most the minimum of sums);
    rdo@LO:HI:REFINE names an rdo map with its own candidates and passes."""
    import numpy as np
    from PIL import Image
    from refcodec import encoder
    from refcodec.model import Model
    from refcodec.studies import qmap_study
    rgb = np.ascontiguousarray(np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))[64:320, 128:512])
    an = encoder.Analysis(rgb, Model.default())
    h16, h32 = (qmap_study.oracle_headroom(an, rgb, 30000, block_log2=k) for k in (0, 1))
    assert h16 >= h32 >= 0 and h16 > 0
    assert qmap_study.oracle_headroom(an, rgb, 30000, candidates=(0,)) == 0
    assert qmap_study._rdo_variant("rdo@-2:2:1") == ("rdo", {"candidates": (-2, -1, 0, 1, 2), "refine": 1})
    assert qmap_study._rdo_variant("rdo") == ("rdo", {})
    assert qmap_study._valid_rdo_variant("rdo@-2:2:0/ms-ssim")
    assert not qmap_study._valid_rdo_variant("rdo@1:3:0") and not qmap_study._valid_rdo_variant("rdo@x")
    assert qmap_study._rdo_variant("rdo@-1:1:0:1.5") == ("rdo", {"candidates": (-1, 0, 1), "refine": 0, "budget": 0.015})
    assert not qmap_study._valid_rdo_variant("rdo@-1:1:0:0") and not qmap_study._valid_rdo_variant("rdo@-1:1:0:1:2")


def test_ceiling_study_measures_and_optimizes(tmp_path, capsys):
    """ceiling_study on a crop, with the tiny post-filter model's float
    weights: a finite ceiling and rate per picture and their mean; y
    optimized for the squared error alone reconstructs better than g_a's."""
    pytest.importorskip("torch")
    from PIL import Image
    from refcodec.studies import ceiling_study
    im = np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))[100:228, 200:392]
    (tmp_path / "k").mkdir()
    Image.fromarray(im).save(tmp_path / "k" / "kodim01.png")
    ceiling_study.main(["--kodak", str(tmp_path / "k"), "--float", "tests/data/tiny-pf-float.npz",
                        "--optimize", "40", "--pick", "1", "--beta", "0.8"])
    out = capsys.readouterr().out
    row = [ln for ln in out.splitlines() if ln.startswith("| kodim01.png |")]
    assert len(row) == 2 and "nan" not in out
    start, best = (float(c.split()[0]) for c in row[1].split("|")[2:4])
    assert best > start + 0.1
    assert "| mean | **" in out and float(row[0].split("|")[3]) > 0


def test_decoder_finetune_measures_the_codec_and_trains_only_the_decoder(tmp_path, capsys):
    """decoder_finetune on the tiny post-filter model: its Kodak figure before
    training is the integer codec's own PSNR at each beta (the float
    synthesis of the latents the encoder codes); training g_s and g_pf on a
    picture's latents raises its PSNR, and the weights it writes differ from
    the start in g_s and g_pf alone."""
    torch = pytest.importorskip("torch")
    from PIL import Image
    from refcodec.encoder import Analysis, beta_to_code
    from refcodec.export import export
    from refcodec.model import Model
    from refcodec.studies import decoder_finetune as D
    im = np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))[96:224, 160:352].copy()
    for d in ("k", "t"):
        (tmp_path / d).mkdir()
        Image.fromarray(im).save(tmp_path / d / "kodim01.png")
    start = "tests/data/tiny-pf-float.npz"
    w16 = str(tmp_path / "tiny-pf-w16.npz")
    export(start, w16, "tests/data", weight_bits=16, n_images=2)
    an = Analysis(im, Model(w16))
    codec = [psnr(im, an.reconstruct(beta_to_code(b))) for b in D.BETAS]
    out = tmp_path / "ft.npz"
    D.main(["--codec", w16, "--weights", start, "--kodak", str(tmp_path / "k"), "--train-images",
            str(tmp_path / "t"), "--crops", "6", "--crop", "64", "--patch", "64", "--margin", "1", "--iters", "60", "--batch", "4",
            "--lr", "1e-3", "--eval-every", "60", "--cache", str(tmp_path / "cache.pt"), "--save", str(out)])
    lines = capsys.readouterr().out.splitlines()
    before = [float(v.split(":")[1].split()[0]) for v in next(ln for ln in lines if ln.startswith("kodak iter 0:"))
              .split(": ", 1)[1].split(", ")]
    assert before == pytest.approx(codec, abs=0.02)
    gain = float(next(ln for ln in lines if ln.startswith("kodak iter 60:")).rsplit("mean ", 1)[1].split()[0])
    assert gain > 0.05
    a, b = np.load(start), np.load(out)
    changed = {k.split(".")[0] for k in a.files if k != "__meta__" and not np.array_equal(a[k], b[k])}
    assert changed == {"g_s", "g_pf"}


def test_compare_models_picks_pictures_and_reuses_the_old_points(tmp_path, capsys):
    """compare_models: a BD-rate line per picture and the verdict; --pick codes
    only the pictures named, --old-points takes the old model's points from an
    earlier --json (the same line comes out without coding them again)."""
    import json
    from PIL import Image
    from refcodec.studies import compare_models
    im = np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))
    (tmp_path / "k").mkdir()
    Image.fromarray(im[100:228, 200:392]).save(tmp_path / "k" / "a.png")
    Image.fromarray(im[300:428, 40:232]).save(tmp_path / "k" / "b.png")
    old, new = "refcodec/models/refcodec-v1-w16.npz", "refcodec/models/refcodec-v1-w8.npz"
    common = ["--old", old, "--kodak", str(tmp_path / "k"), "--jobs", "1"]
    compare_models.main([new, *common, "--json", str(tmp_path / "all.json")])
    lines = {ln.split(":")[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert set(lines) >= {"a.png", "b.png"}
    assert any(ln.startswith("the new model is better on ") and ln.endswith(" of 2 images") for ln in lines.values())
    compare_models.main([new, *common, "--pick", "2", "--old-points", str(tmp_path / "all.json"),
                         "--json", str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert "old model's points of 1 pictures from" in out and "need every picture" in out
    assert lines["b.png"] in out.splitlines() and "a.png" not in out
    first, second = (json.loads((tmp_path / f).read_text()) for f in ("all.json", "b.json"))
    assert second[old] == {"b.png": first[old]["b.png"]} and second[new]["b.png"] == first[new]["b.png"]
    with pytest.raises(SystemExit):
        compare_models.main([new, *common, "--pick", "3"])
