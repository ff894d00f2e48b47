"""refcodec eval: classical codecs reproduce ../shared/anchors; a Dask cluster gives the local result."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from refcodec.eval.run import code_jpeg, code_webp, measure, run

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
KODAK = os.path.join(SHARED, "data", "kodak")
PER_IMAGE = os.path.join(SHARED, "anchors", "kodak_rd_per_image.csv")


@pytest.mark.skipif(not os.path.exists(PER_IMAGE), reason="../shared/anchors is not beside the repository")
@pytest.mark.parametrize("codec,coder", [("jpeg", code_jpeg), ("webp", code_webp)])
def test_classical_curves_reproduce_the_anchors(codec, coder):
    rows = [r for r in csv.DictReader(open(PER_IMAGE)) if r["codec"] == codec and r["image"] in ("kodim01", "kodim07")]
    assert len(rows) == 16
    for r in rows:
        rgb = np.asarray(Image.open(os.path.join(KODAK, r["image"] + ".png")).convert("RGB"))
        nbytes, out = coder(rgb, int(r["setting"].split("=")[1]))
        m = measure(rgb, out, nbytes)
        assert abs(m["psnr_rgb"] - float(r["psnr_rgb"])) <= 0.05, (r["image"], r["setting"])
        assert abs(m["bpp"] - float(r["bpp"])) <= 0.01 * float(r["bpp"]), (r["image"], r["setting"])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    src = np.asarray(Image.open(os.path.join(os.path.dirname(__file__), "data", "kodim23.png")).convert("RGB"))
    Image.fromarray(src[:176, :192]).save(d / "a.png")
    Image.fromarray(src[200:376, 300:492]).save(d / "b.png")
    return str(d)


def test_local_run_writes_every_output(images, tmp_path):
    out = tmp_path / "out"
    result, bd = run(images, [0.5], ["jpeg", "webp"], "jpeg", 1, str(out), log=lambda s: None)
    for f in ("rd.json", "rd.csv", "bdrate.json", "table.md"):
        assert (out / f).exists()
    assert set(result["per_image"]["jpeg"]) == {"a", "b"} and len(result["mean"]["jpeg"]) == 8
    assert "webp" in bd and all(np.isfinite(v) for v in bd["webp"].values())


def test_cached_results_give_the_same_output_and_skip_the_work(images, tmp_path):
    cache = tmp_path / "cache"
    logs = []
    first, _ = run(images, [0.5], ["jpeg", "webp"], "jpeg", 1, str(tmp_path / "a"), log=logs.append, cache=str(cache))
    assert len(list(cache.iterdir())) == 4 and not any("from the cache" in m for m in logs)
    # a cache entry is used as is: alter one to prove the second run reads it instead of coding again
    entry = next(cache.glob("jpeg-a-*.json"))
    pts = json.loads(entry.read_text())
    pts[0]["psnr_y"] += 100.0
    entry.write_text(json.dumps(pts))
    logs.clear()
    second, _ = run(images, [0.5], ["jpeg", "webp"], "jpeg", 1, str(tmp_path / "b"), log=logs.append,
                    cache=str(cache))
    assert any("4 of 4" in m for m in logs)
    assert second["per_image"]["webp"] == first["per_image"]["webp"]
    assert second["per_image"]["jpeg"]["a"][0]["psnr_y"] == first["per_image"]["jpeg"]["a"][0]["psnr_y"] + 100.0


def test_the_cache_key_follows_the_model_and_the_encoder(images, monkeypatch):
    from refcodec import encoder
    from refcodec.eval.run import cache_path, codec_version
    from refcodec.model import MODELS_DIR
    f = os.path.join(images, sorted(os.listdir(images))[0])
    key = cache_path("c", f, "refcodec", [0.5], codec_version("refcodec"))
    other = os.path.join(MODELS_DIR, "refcodec-v1-w16.npz")
    assert cache_path("c", f, "refcodec", [0.5], codec_version("refcodec", other)) != key
    monkeypatch.setattr(encoder, "RDOQ_KNOTS", ((0.5, 0.02), (0.9, 0.01)))   # another default rounding
    assert cache_path("c", f, "refcodec", [0.5], codec_version("refcodec")) != key


def test_dask_cluster_gives_the_local_result(images, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    local, _ = run(images, [0.5], ["jpeg", "webp"], "jpeg", 1, str(tmp_path / "local"), log=lambda s: None)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        remote, _ = run(images, [0.5], ["jpeg", "webp"], "jpeg", 1, str(tmp_path / "dask"),
                        scheduler=c.scheduler_address, log=lambda s: None)
    a = json.loads((tmp_path / "local" / "rd.json").read_text())
    b = json.loads((tmp_path / "dask" / "rd.json").read_text())
    assert a == b and local["mean"] == remote["mean"]


def test_psnr_and_ssim_agree_with_scikit_image(rng):
    metrics = pytest.importorskip("skimage.metrics")
    from refcodec.eval.metrics import _ssim_cs, psnr
    a = rng.integers(0, 256, (200, 180, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b) == pytest.approx(metrics.peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)
    for c in range(3):
        ssim, _ = _ssim_cs(a[..., c].astype(float), b[..., c].astype(float))
        ref = metrics.structural_similarity(a[..., c], b[..., c], data_range=255, gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False)
        assert ssim == pytest.approx(ref, abs=1e-6)


@pytest.mark.skipif(not os.path.exists(PER_IMAGE), reason="../shared/anchors is not beside the repository")
def test_ms_ssim_reproduces_the_published_anchor_values():
    """MS-SSIM of JPEG-decoded Kodak images equals the anchors' values (checked
    there against pytorch_msssim to 2e-6)."""
    from refcodec.eval.metrics import ms_ssim
    rows = [r for r in csv.DictReader(open(PER_IMAGE)) if r["codec"] == "jpeg" and r["image"] == "kodim01"
            and r["setting"] in ("q=10", "q=50")]
    assert len(rows) == 2
    for r in rows:
        rgb = np.asarray(Image.open(os.path.join(KODAK, "kodim01.png")).convert("RGB"))
        _, out = code_jpeg(rgb, int(r["setting"].split("=")[1]))
        assert ms_ssim(rgb, out) == pytest.approx(float(r["msssim"]), abs=1e-5)


def test_a_model_other_than_the_default(images, tmp_path):
    """eval --model: refcodec's points come from that model (another id in
    the cache key, other points than the default's), and a file that is not
    a model is refused before any job starts."""
    from refcodec.eval.run import codec_version, image_job
    from refcodec.errors import RefcodecError
    from refcodec.model import MODELS_DIR, load
    v1 = os.path.join(MODELS_DIR, "refcodec-v1-w16.npz")
    assert codec_version("refcodec", v1).startswith("model " + load(v1).model_id.hex() + ", rdoq knots ")
    assert codec_version("refcodec", v1) != codec_version("refcodec")
    path = os.path.join(images, "a.png")
    _, _, other = image_job(path, "refcodec", [0.5], v1)
    _, _, default = image_job(path, "refcodec", [0.5])
    assert abs(other[0]["bpp"] - 0.5) <= 0.005 and abs(default[0]["bpp"] - 0.5) <= 0.005
    assert other[0]["psnr_rgb"] != default[0]["psnr_rgb"]
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    with pytest.raises(RefcodecError, match="bad.npz"):
        run(images, [0.5], ["refcodec"], None, 1, str(tmp_path / "out"), log=lambda s: None,
            model=str(tmp_path / "bad.npz"))
