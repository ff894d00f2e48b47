"""refcodec inspect: the bit accounting, the numbers of every panel in
inspect.json, the picture identical to refcodec decode's, and the page in a
real browser (headless Chromium, skipped without it)."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import refcodec
from refcodec import cli, decoder
from refcodec.inspector import CLAUSES, analyse, inspect, spec_anchor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KODIM23 = os.path.join(ROOT, "tests", "data", "kodim23.png")


@pytest.fixture(scope="module")
def rgb():
    return np.asarray(Image.open(KODIM23).convert("RGB"))[180:277, 290:421].copy()      # 97 x 131


@pytest.fixture(scope="module", params=["context+qmap", "plain"])
def stream(request, rgb):
    if request.param == "plain":
        return refcodec.encode(rgb, beta=0.6, context=False, num_y_substreams=3)
    return refcodec.encode(rgb, beta=0.6, qmap="rdo", qmap_block_log2=1)


def test_the_bits_add_up_to_the_stream(stream):
    report, _ = analyse(stream)
    b = {p["part"]: p for p in report["budget"]}
    assert sum(p["bytes"] for p in report["budget"]) == len(stream)
    h = decoder.picture(stream)
    assert set(b) >= {"picture_header", "substream_sizes", "z_data"} | {f"y_data[{i}]" for i in
                                                                        range(h.header.num_y_substreams)}
    for name, p in b.items():
        if p["information_bits"] is None:
            continue
        # a substream is its symbols' information content plus the coder's final states (two 32-bit
        # words) and its finite precision (~0.2 %): a few bytes
        assert 0 < p["coder_overhead_bytes"] <= 8 + 0.004 * p["bytes"] + 2, (name, p)
    bits = report["bits"]
    pp = np.array(bits["per_position"])
    assert pp.shape == tuple(bits["grid"]) and abs(pp.sum() - bits["y"]) < 1e-3 * bits["y"] + 1
    assert abs(sum(bits["per_channel"]) - bits["y"]) < 1e-3 * bits["y"] + 1
    y_parts = sum(p["information_bits"] for n, p in b.items() if n.startswith("y_data"))
    assert abs(y_parts - bits["y"]) < 1e-3 * bits["y"] + 1
    assert sorted(bits["channels_by_bits"]) == list(range(len(bits["per_channel"])))
    pc = np.array(bits["per_channel"])[bits["channels_by_bits"]]
    assert np.all(np.diff(pc) <= 1e-9)
    if h.header.quality_map_enabled:
        assert b["q_data"]["information_bits"] == pytest.approx(bits["q"], abs=1e-3)


def test_every_panel_has_its_numbers_and_the_picture_is_decode_s(stream, rgb, tmp_path):
    report = inspect(stream, str(tmp_path), original=rgb)
    on_disk = json.loads((tmp_path / "inspect.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    h = decoder.picture(stream).header
    assert {"stream", "header", "budget", "bits", "stages", "quality"} <= set(on_disk)
    assert [r["element"] for r in on_disk["header"]][:8] == ["magic", "version", "model_id", "width_minus1",
                                                             "height_minus1", "beta_code", "tool_flags",
                                                             "num_y_substreams"]
    assert {"z_hat", "h_s", "y_hat"} <= set(on_disk["stages"])
    assert ("context" in on_disk["stages"]) == h.context_enabled
    assert ("quality_map" in on_disk["stages"]) == h.quality_map_enabled
    q = on_disk["quality"]
    assert q["psnr_rgb"] > 20 and q["bpp"] == pytest.approx(8 * len(stream) / (97 * 131))
    assert np.array(q["block_mse"]).shape == (7, 9)
    decoded = np.asarray(Image.open(tmp_path / "decoded.png"))
    assert np.array_equal(decoded, refcodec.decode(stream))
    page = (tmp_path / "index.html").read_text()
    shown = set(re.findall(r'<img src="([^"]+)"', page))
    written = {f for f in os.listdir(tmp_path) if f.endswith(".png")}
    assert shown == written and {"decoded.png", "bits_map.png", "error_map.png"} <= shown
    for c, _ in CLAUSES.values():
        anchor = spec_anchor(c)
        assert re.match(rf"{c.replace('.', '')}-[a-z]", anchor), anchor     # a heading of SPEC.md
    assert all(f"#{spec_anchor(c)}" in page for c in ("5.2", "6.2", "6.3", "6.4", "6.5"))


def test_the_command_line(stream, rgb, tmp_path, capsys):
    (tmp_path / "s.rcd").write_bytes(stream)
    Image.fromarray(rgb).save(tmp_path / "o.png")
    assert cli.main(["inspect", str(tmp_path / "s.rcd"), "--out", str(tmp_path / "p"), "--original",
                     str(tmp_path / "o.png")]) == 0
    assert "index.html" in capsys.readouterr().err and (tmp_path / "p" / "index.html").exists()
    Image.fromarray(rgb[:50]).save(tmp_path / "small.png")
    assert cli.main(["inspect", str(tmp_path / "s.rcd"), "--out", str(tmp_path / "q"), "--original",
                     str(tmp_path / "small.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--original is 131 x 50" in err[0]


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (Debian: apt install chromium)")
def test_the_page_in_a_real_browser(tmp_path, rgb):
    """Headless Chromium opens index.html offline, every image loads (the
    page counts them on load), and a screenshot is taken."""
    data = refcodec.encode(rgb, beta=0.6, qmap="rdo", qmap_block_log2=1)
    inspect(data, str(tmp_path / "page"), original=rgb)
    url = (tmp_path / "page" / "index.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    n = len(re.findall(r"<img ", dom))
    assert n >= 8 and f'data-images="{n}/{n}"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([chromium(), *flags, f"--screenshot={shot}", "--window-size=1100,1600", url],
                   capture_output=True, timeout=180)
    im = np.asarray(Image.open(shot).convert("RGB"))
    assert im.shape[:2] == (1600, 1100) and im.std() > 10          # a page was drawn, not a blank
