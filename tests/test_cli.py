"""The command line as a user meets it: every command line the README shows
runs and does what it says; every option's bad values give one line on
stderr and status 1 or 2, never a traceback; the conventions of cwebp,
avifenc and cjxl (- for stdin/stdout, status on stderr, -q/-v, --version,
--threads, a progress line); Pillow's save and errors; every shipped model
decodes without --model."""

import io
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import refcodec
from refcodec import cli, decoder
from refcodec.model import MODELS_DIR, load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
KODIM23 = os.path.join(ROOT, "tests", "data", "kodim23.png")


def crop(h=64, w=96, y=200, x=300):
    return np.asarray(Image.open(KODIM23).convert("RGB"))[y:y + h, x:x + w].copy()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    Image.fromarray(crop()).save(d / "in.png")
    mask = np.zeros((64, 96), np.uint8)
    mask[16:48, 32:64] = 255
    Image.fromarray(mask).save(d / "mask.png")
    kodak = d / "kodak"
    kodak.mkdir()
    for i, (y, x) in enumerate([(0, 0), (300, 500)]):
        Image.fromarray(crop(176, 192, y, x)).save(kodak / f"k{i}.png")
    assert cli.main(["encode", str(d / "in.png"), str(d / "ok.rcd"), "--beta", "0.3", "-q"]) == 0
    return d


def run(argv, capsys):
    """cli.main in this process: (status, stdout, stderr)."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:           # argparse's usage errors and --version
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def sh(cmd, cwd, stdin=None):
    return subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, input=stdin, timeout=600)


# ------------------------------------------------------------------ the README's command lines

def readme_commands():
    """Every command line in the README's sh blocks that runs refcodec
    (the pip and pytest parts of the quick start left out)."""
    text = open(README, encoding="utf-8").read()
    cmds = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s{2,}#", line)[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("refcodec ") or "| refcodec " in part:
                    cmds.append(part)
    return cmds


def test_the_readme_shows_the_commands_it_should():
    cmds = readme_commands()
    first = {shlex.split(c)[1] for c in cmds if c.startswith("refcodec ")}
    assert {"encode", "decode", "roundtrip", "info", "inspect", "conform", "eval", "warmup", "--version"} <= first
    assert any("encode -" in c and "decode -" in c for c in cmds)      # a pipe through stdin and stdout
    assert sum(1 for _ in open(README, encoding="utf-8")) <= 250


@pytest.mark.parametrize("cmd", readme_commands())
def test_every_readme_command_line_runs(cmd, files, tmp_path):
    """Each command as printed (names swapped for small files here) runs in a
    fresh process and its output is checked, not only its status.  One test
    per command (so that pytest -n spreads them); a command that reads
    OUT.rcd finds a stream of the same picture there."""
    py = f"{shlex.quote(sys.executable)} -m refcodec "
    subs = [("../shared/data/kodak", str(files / "kodak")), ("tests/data/kodim23.png", str(files / "in.png")),
            ("IN.png", str(files / "in.png")), ("roi.png", str(files / "mask.png")),
            ("OUT.rcd", str(tmp_path / "out.rcd")), ("OUT2.rcd", str(tmp_path / "out2.rcd")),
            ("OUT.png", str(tmp_path / "out.png")), ("conform vectors", f"conform {ROOT}/vectors")]
    src = crop()
    for a, b in subs:
        cmd = cmd.replace(a, b)
    cmd = re.sub(r"(^|\| )refcodec ", lambda m: m.group(1) + py, cmd)
    words = shlex.split(cmd.split("|")[-1] if "| " not in cmd else cmd.split("|")[1])[3:]
    what = words[0]
    if what != "encode" and "| " not in cmd:       # an encode must write it itself, or fail below
        (tmp_path / "out.rcd").write_bytes((files / "ok.rcd").read_bytes())
    r = sh(cmd, tmp_path)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0 and "Traceback" not in err, (cmd, err)
    if "| " in cmd:                                    # the pipe: stdin -> stream -> stdout -> decode
        assert np.asarray(Image.open(tmp_path / "out.png")).shape == src.shape
    elif what == "encode":
        data = (tmp_path / "out.rcd").read_bytes()
        assert decoder.decode(data).shape == src.shape
        bpp = 8 * len(data) / src[..., 0].size
        if "--json" in words:
            assert json.loads(out)["bpp"] == pytest.approx(bpp)
        else:
            assert f"{bpp:.4f} bpp" in err and out == ""      # status on stderr
        if "--bpp" in words:
            target = float(words[words.index("--bpp") + 1])
            assert abs(bpp / target - 1) <= 0.01 or "warning" in err, (cmd, bpp)
    elif what == "decode":
        dec = np.asarray(Image.open(tmp_path / "out.png"))
        assert np.array_equal(dec, decoder.decode((tmp_path / "out.rcd").read_bytes()))
        if "--trace" in words:
            recs = json.loads((tmp_path / words[words.index("--trace") + 1]).read_text())["records"]
            assert recs[0]["name"] == "header" and recs[-1]["name"] == "rgb"
    elif what == "roundtrip":
        assert re.search(r"\d\.\d{4} bpp.*PSNR-RGB \d+\.\d\d dB, PSNR-Y \d+\.\d\d dB", out), out
    elif what == "info":
        assert "model_id" in out and f"{src.shape[1]} x {src.shape[0]}" in out
    elif what == "inspect":
        report = json.loads((tmp_path / "inspect-out" / "inspect.json").read_text())
        assert (tmp_path / "inspect-out" / "index.html").exists() and "quality" in report
        assert sum(p["bytes"] for p in report["budget"]) == (tmp_path / "out.rcd").stat().st_size
    elif what == "conform":
        assert re.search(r"\d+ passed, 0 failed", out), out
    elif what == "eval":
        table = (tmp_path / "eval-out" / "table.md").read_text()
        # (without ../shared the anchor falls back to the first codec run: refcodec is then the anchor)
        assert "- refcodec:" in table and "BD-rate against" in out and "| jpeg |" in table
    elif what == "warmup":
        assert "compiled" in err
    elif what == "--version":
        assert out.strip() == f"refcodec {refcodec.__version__}"
    else:
        raise AssertionError(f"the README shows a command this test does not check: {cmd}")


def test_readme_python_example_runs(files, tmp_path, monkeypatch):
    code = re.findall(r"```python\n(.*?)```", open(README, encoding="utf-8").read(), re.S)[0]
    monkeypatch.chdir(tmp_path)
    Image.fromarray(crop()).save("IN.png")
    (tmp_path / "OUT.rcd").write_bytes((files / "ok.rcd").read_bytes())
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["rgb2"].shape == crop().shape and ns["im"].size == (96, 64)
    assert Image.open("OUT2.rcd").format == "REFCODEC"


# ------------------------------------------------------------------ bad values: one line, status 1 or 2

BAD = [
    # (arguments with {in} {out} {d} placeholders, status, what the line must say)
    ("encode {in} {out} --substreams 66", 1, "num_y_substreams 66"),
    ("encode {in} {out} --substreams 0", 1, "num_y_substreams 0"),
    ("encode {in} {out} --substreams -2", 1, "num_y_substreams -2"),
    ("encode {in} {out} --substreams 1", 1, "odd"),
    ("encode {in} {out} --substreams x", 2, "integer"),
    ("encode {in} {out} --bpp 0.25 --tolerance -1", 1, "tolerance"),
    ("encode {in} {out} --bpp 0.25 --tolerance 1.5", 1, "tolerance"),
    ("encode {in} {out} --tolerance 0.05", 1, "--bpp"),
    ("encode {in} {out} --side below", 1, "--bpp"),
    ("encode {in} {out} --refine -5", 1, "refine"),
    ("encode {in} {out} --roi-q 6,-3", 1, "--qmap"),
    ("encode {in} {out} --qmap-block 1", 1, "--qmap"),
    ("encode {in} {out} --qmap activity --roi-q 6,-3", 1, "mask"),
    ("encode {in} {out} --qmap {d}/mask.png --roi-q 9,0", 1, "roi_q"),
    ("encode {in} {out} --qmap {d}/mask.png --roi-q abc", 1, "--roi-q"),
    ("encode {in} {out} --qmap rdo --qmap-block 7", 2, "invalid choice"),
    ("encode {in} {out} --qmap bogus", 1, "bogus"),
    ("encode {in} {out} --beta 2", 1, "beta"),
    ("encode {in} {out} --beta nan", 2, "finite"),
    ("encode {in} {out} --beta abc", 2, "number"),
    ("encode {in} {out} --beta 0.5 --bpp 0.3", 1, "either"),
    ("encode {in} {out} --bpp -1", 1, "positive"),
    ("encode {in} {out} --bpp 0", 1, "positive"),
    ("encode {in} {out} --bpp 500", 1, "outside the reachable range"),
    ("encode {in} {out} --rdoq -1", 1, "rdoq"),
    ("encode {in} {out} --rdoq 5", 1, "rdoq"),
    ("encode {in} {out} --side above", 2, "invalid choice"),
    ("encode {in} {out} --model {in}", 1, "not a refcodec model file"),
    ("encode {in} {out} --model {d}/none.npz", 1, "cannot read model file"),
    ("encode {in} {out} --threads 0", 1, "--threads"),
    ("encode {in} {out} --threads 100000", 1, "--threads"),
    ("encode {d}/missing.png {out}", 1, "no such file"),
    ("encode {d} {out}", 1, "directory"),
    ("encode {in} {d}/no/such/dir/o.rcd", 1, "cannot write"),
    ("encode {d}/big.png {out}", 1, "level"),
    ("encode {d}/corrupt.png {out}", 1, "cannot read image"),
    ("encode {in}", 2, "required"),
    ("decode {d}/corrupt.png {d}/o.png", 1, "magic"),
    ("decode {d}/ok.rcd {d}/o.png --backend bogus", 2, "invalid choice"),
    ("decode {d}/missing.rcd {d}/o.png", 1, "cannot read"),
    ("decode {d}/ok.rcd {d}/o.xyz", 1, "cannot write image"),
    ("decode {d}/cut.rcd {d}/o.png", 1, "SPEC"),
    ("decode {d}/ok.rcd {d}/o.png --trace {d}/no/such/t.json", 1, "cannot write"),
    ("roundtrip {in} --bpp -1", 1, "positive"),
    ("roundtrip {in} --substreams 66", 1, "num_y_substreams"),
    ("info {d}/cut.rcd", 1, "SPEC"),
    ("info {d}/missing.rcd", 1, "cannot read"),
    ("eval {d}/missing", 1, "no such directory"),
    ("eval {in}", 1, "is a file"),
    ("eval {d}/kodak --targets abc", 1, "--targets"),
    ("eval {d}/kodak --targets 0.5,-1", 1, "--targets"),
    ("eval {d}/kodak --codecs bogus", 1, "bogus"),
    ("eval {d}/kodak --jobs 0", 1, "--jobs"),
    ("eval {d}/corrupt --codecs jpeg,webp", 1, "cannot read image"),
    ("eval {d}/kodak --out {in}", 1, "--out"),
    ("eval {d}/kodak --anchor bogus --codecs jpeg,webp --out {d}/ev", 1, "--anchor"),
    ("eval {d}/kodak --codecs jpeg,webp --anchor avif --out {d}/ev", 1, "--anchor avif"),
    ("eval {d}/kodak --codecs refcodec,jpeg --targets 5 --out {d}/ev", 1, "no BD-rate"),
    ("conform {d}/none", 1, "no conformance vectors"),
    ("conform --subset nonexistent", 1, "nonexistent"),
    ("conform --vector nonexistent", 1, "nonexistent"),
    ("conform --backend bogus", 2, "invalid choice"),
    ("bogus", 2, "invalid choice"),
]


@pytest.fixture(scope="module")
def bad_files(files):
    d = files
    from .test_imageio import _png_header_only
    (d / "big.png").write_bytes(_png_header_only(20000, 20000))
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (d / "corrupt").mkdir(exist_ok=True)
    (d / "corrupt" / "a.png").write_bytes((d / "corrupt.png").read_bytes())
    data = (d / "ok.rcd").read_bytes()
    (d / "cut.rcd").write_bytes(data[:len(data) // 2])
    return d


@pytest.mark.parametrize("args,status,says", BAD, ids=[b[0].replace("{", "").replace("}", "") for b in BAD])
def test_bad_values_give_one_line(bad_files, tmp_path, capsys, args, status, says):
    d = bad_files
    argv = [a.format(**{"in": str(d / "in.png"), "out": str(tmp_path / "o.rcd"), "d": str(d)})
            for a in args.split()]
    rc, out, err = run(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == status, (rc, err)
    assert "Traceback" not in err and len(lines) == 1, err
    assert says in lines[0], lines[0]
    assert lines[0].startswith("refcodec")


def test_cuda_without_a_gpu_is_refused_up_front(files):
    """conform --backend cuda without a GPU (nor the simulator) says so and
    runs nothing, instead of counting the invalid streams as passed."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    probe = subprocess.run([sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"],
                           capture_output=True, text=True, env=env, timeout=300)
    if probe.stdout.strip() == "True":
        pytest.skip("a CUDA GPU is present")
    r = subprocess.run([sys.executable, "-m", "refcodec", "conform", "--backend", "cuda"], capture_output=True,
                       text=True, env=env, timeout=300, cwd=str(files))
    assert r.returncode == 1 and "passed" not in r.stdout and "cuda" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_every_option_has_help():
    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    missing = []
    for name, sp in subs.choices.items():
        for act in sp._actions:
            if not act.help or act.help == __import__("argparse").SUPPRESS:
                missing.append(f"{name} {'/'.join(act.option_strings) or act.dest}")
    assert not missing, missing
    qmap = next(a for a in subs.choices["encode"]._actions if "--qmap" in a.option_strings)
    assert "rdo" in qmap.help


# ------------------------------------------------------------------ conventions

def test_stdin_stdout_and_status_on_stderr(files, tmp_path):
    src = (files / "in.png").read_bytes()
    py = [sys.executable, "-m", "refcodec"]
    r = subprocess.run(py + ["encode", "-", "-", "--beta", "0.3"], input=src, capture_output=True, timeout=300)
    assert r.returncode == 0 and r.stdout == (files / "ok.rcd").read_bytes()        # the stream, nothing else
    assert b"bytes" in r.stderr
    r2 = subprocess.run(py + ["decode", "-", "-"], input=r.stdout, capture_output=True, timeout=300)
    assert r2.returncode == 0 and r2.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r2.stdout))), decoder.decode(r.stdout))
    r3 = subprocess.run(py + ["encode", "-", "-", "--beta", "0.3", "--json"], input=src, capture_output=True,
                        timeout=300)
    assert r3.stdout == r.stdout and json.loads(r3.stderr)["bytes"] == len(r.stdout)


def test_quiet_verbose_version_and_threads(files, tmp_path, capsys):
    import numba
    rc, out, err = run(["encode", str(files / "in.png"), str(tmp_path / "a.rcd"), "-q"], capsys)
    assert rc == 0 and out == "" and err == ""
    rc, out, err = run(["decode", str(tmp_path / "a.rcd"), str(tmp_path / "a.png"), "-v"], capsys)
    assert rc == 0 and "decoded in" in err and "96 x 64" in err
    rc, out, err = run(["--version"], capsys)
    assert rc == 0 and out.strip() == f"refcodec {refcodec.__version__}"
    before = numba.get_num_threads()
    try:
        rc, out, err = run(["encode", str(files / "in.png"), str(tmp_path / "b.rcd"), "--threads", "1"], capsys)
        assert rc == 0 and numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)
    assert (tmp_path / "b.rcd").read_bytes() == (tmp_path / "a.rcd").read_bytes()    # threads change no byte


def test_progress_line_appears_for_long_work_only():
    import time
    s = io.StringIO()
    with cli.Progress("encoding x.png", enabled=True, after=0.05, stream=s, interval=0.02) as p:
        p.stage("bit-rate matching")
        time.sleep(0.3)
    text = s.getvalue()
    assert "refcodec: encoding x.png (bit-rate matching) ... 0 s" in text and text.endswith("\r\x1b[K")
    s = io.StringIO()
    with cli.Progress("quick", enabled=True, after=5, stream=s):
        pass
    assert s.getvalue() == ""
    s = io.StringIO()
    with cli.Progress("off", enabled=False, after=0, stream=s):
        time.sleep(0.05)
    assert s.getvalue() == ""


def test_roundtrip_takes_bpp_and_qmap(files, capsys):
    rc, out, err = run(["roundtrip", str(files / "in.png"), "--bpp", "0.5", "--qmap", "rdo"], capsys)
    assert rc == 0 and "(target 0.5)" in out and "PSNR-Y" in out
    bpp = float(re.search(r"(\d\.\d{4}) bpp", out).group(1))
    assert abs(bpp / 0.5 - 1) <= 0.01


def test_qmap_rdo_with_a_fixed_beta_and_with_bisection(files, capsys):
    rgb = crop()
    # rdo codes a map only where it pays, which depends on the model: on this crop with v8 at beta
    # 0.3 it does (v10, the default of session 25, does at 0.25, 0.35 and 0.5, not at 0.2, 0.3 or 0.4), so the
    # model is named: the test must not change with the default
    v8 = load(os.path.join(MODELS_DIR, "refcodec-v8-w16.npz"))
    data = refcodec.encode(rgb, beta=0.3, qmap="rdo", model=v8)
    assert decoder.picture(data).header.quality_map_enabled
    assert refcodec.encode(rgb, bpp=0.4, qmap="rdo", method="bisect")
    rc, _, err = run(["encode", str(files / "in.png"), str(files / "r.rcd"), "--beta", "0.5", "--qmap", "rdo"],
                     capsys)
    assert rc == 0, err


def test_api_rdoq_and_validation():
    from refcodec import encoder
    rgb = crop()
    assert refcodec.encode(rgb, beta=0.6, rdoq=0) == encoder.encode(rgb, beta=0.6, rdoq=0)
    assert refcodec.encode(rgb, beta=0.6, rdoq=0) != refcodec.encode(rgb, beta=0.6)
    for bad in ({"side": "above"}, {"roi_q": (1,)}, {"roi_q": (1, 20)}, {"num_y_substreams": 66},
                {"refine": -1}, {"tolerance": 0}, {"method": "newton"}):
        with pytest.raises(refcodec.RefcodecError):
            refcodec.encode(rgb, bpp=0.3, **bad)


# ------------------------------------------------------------------ models, Pillow

def test_every_shipped_model_decodes_without_naming_it(files, tmp_path, capsys):
    rgb = crop()
    shipped = sorted(f for f in os.listdir(MODELS_DIR) if f.startswith("refcodec-") and f.endswith(".npz"))
    assert {f"refcodec-v{k}-w{b}.npz" for k in (1, 2, 3, 4) for b in (16, 8)} <= set(shipped)
    for name in shipped:
        m = load(os.path.join(MODELS_DIR, name))
        data = refcodec.encode(rgb, beta=0.4, model=m)
        ref = decoder.decode(data, models=[m])
        assert np.array_equal(refcodec.decode(data), ref), name
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), ref), name
        (tmp_path / "s.rcd").write_bytes(data)
        rc, _, err = run(["decode", str(tmp_path / "s.rcd"), str(tmp_path / "s.png")], capsys)
        assert rc == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "s.png")), ref), err


def test_pillow_saves_and_raises_oserror(tmp_path):
    rgb = crop()
    Image.fromarray(rgb).save(tmp_path / "a.rcd", beta=0.3)
    assert (tmp_path / "a.rcd").read_bytes() == refcodec.encode(rgb, beta=0.3)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "REFCODEC", bpp=0.5)
    assert abs(8 * len(buf.getvalue()) / rgb[..., 0].size / 0.5 - 1) <= 0.01
    Image.fromarray(rgb[..., 1]).save(tmp_path / "g.rcd")                # mode L: monochrome
    with Image.open(tmp_path / "g.rcd") as im:
        assert im.mode == "L" and im.size == (96, 64)
    with pytest.raises(OSError, match="beta"):
        Image.fromarray(rgb).save(tmp_path / "b.rcd", beta=3)
    with pytest.raises(ValueError, match="unknown save option"):
        Image.fromarray(rgb).save(tmp_path / "b.rcd", quality=90)
    data = (tmp_path / "a.rcd").read_bytes()
    with pytest.raises(OSError) as e:
        Image.open(io.BytesIO(data[:len(data) - 6])).load()
    assert isinstance(e.value.__cause__, refcodec.RefcodecError)


def test_conform_outside_the_repository_finds_the_vectors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(["conform", "--subset", "monochrome"], capsys)
    assert rc == 0 and re.search(r"[1-9]\d* passed, 0 failed", out), (out, err)


def test_conform_one_vector_by_its_id(capsys):
    for vid in ["size_1x1", "invalid/" + json.load(open(os.path.join(ROOT, "vectors", "manifest.json")))["invalid"][0]["file"]]:
        rc, out, err = run(["conform", "--vector", vid, "--backend", "numpy"], capsys)
        assert rc == 0 and "1 passed, 0 failed" in out and vid in out, (out, err)


def test_eval_on_small_pictures_says_na(files, tmp_path, capsys):
    d = tmp_path / "small"
    d.mkdir()
    for i in range(2):
        Image.fromarray(crop(64, 80, 100 * i, 200)).save(d / f"s{i}.jpg", quality=95)   # .jpg inputs count
    rc, out, err = run(["eval", str(d), "--codecs", "jpeg,webp", "--anchor", "jpeg", "--out", str(tmp_path / "o"),
                        "--jobs", "1"], capsys)
    assert rc == 0, err
    table = (tmp_path / "o" / "table.md").read_text()
    assert "| webp |" in table and "n/a" in table and "nan" not in table
    assert "161 pixels" in out and "n/a" in out


def test_each_shipped_model_names_its_float_weights(tmp_path):
    """refcodec-vK-wB.npz comes from vK-float.npz (what refinement and the
    benchmark load); a model without shipped float weights is refused by
    name, before PyTorch is needed."""
    from refcodec.model import DEFAULT_MODEL, float_weights_of
    from refcodec.refine import shipped_float_weights
    # the default ships without a float copy: its W16 file gives them back (SPEC.md 8.5)
    assert float_weights_of(DEFAULT_MODEL) == os.path.join(MODELS_DIR, "refcodec-v12-w16.npz") == DEFAULT_MODEL
    assert not os.path.exists(os.path.join(MODELS_DIR, "v12-float.npz"))
    for k in ("v1", "v2", "v3", "v4", "v7", "v8"):
        for b in ("16", "8"):
            f = float_weights_of(os.path.join(MODELS_DIR, f"refcodec-{k}-w{b}.npz"))
            assert f == os.path.join(MODELS_DIR, f"{k}-float.npz") and os.path.exists(f)
    assert float_weights_of("elsewhere/tiny-w16.npz") is None
    assert shipped_float_weights() == float_weights_of(DEFAULT_MODEL)
    other = tmp_path / "refcodec-v99-w16.npz"           # a W16 file without the trainer's members
    other.write_bytes(open(os.path.join(MODELS_DIR, "refcodec-v8-w16.npz"), "rb").read())
    with pytest.raises(refcodec.RefcodecError, match="no float weights ship with refcodec-v99-w16.npz"):
        shipped_float_weights(load(str(other)))


def test_info_on_model_files(tmp_path, capsys):
    """refcodec info MODEL.npz: the model's id, widths and MACs per pixel of
    each network (integer models and the trainer's float weights alike);
    anything else named .npz: one line, status 1."""
    from refcodec import arch as A
    rc, out, err = run(["info", os.path.join(MODELS_DIR, "refcodec-v8-w16.npz")], capsys)
    assert rc == 0 and "W16A16" in out and "M=256" in out and "post-filter PF=16" in out
    macs = A.macs_per_pixel(load().arch)
    total = sum(macs[n] for n in A.DECODER_NETS if n in macs)
    assert f"total {total:.0f}" in out and "g_s 16896" in out and "g_pf 3312" in out and total <= 30000
    rc, out, err = run(["info", os.path.join(MODELS_DIR, "refcodec-v8-w8.npz")], capsys)
    assert rc == 0 and "W8A16" in out and "encoder weights from refcodec-v8-w16.npz" in out
    rc, out, err = run(["info", os.path.join(MODELS_DIR, "v8-float.npz")], capsys)
    assert rc == 0 and "float weights" in out and "g_a and h_a from refcodec-v8-w16.npz" in out
    for k in ("v10", "v12"):
        rc, out, err = run(["info", os.path.join(MODELS_DIR, f"refcodec-{k}-w8.npz")], capsys)
        assert rc == 0 and "W8A16" in out and f"encoder weights from refcodec-{k}-w16.npz" in out
    rc, out, err = run(["info", os.path.join(MODELS_DIR, "refcodec-v1-w8.npz")], capsys)
    assert rc == 0 and "W8A16" in out and "M=128" in out and "g_s 15744" in out
    rc, out, err = run(["info", os.path.join(ROOT, "tests", "data", "tiny-ctx-float.npz")], capsys)
    assert rc == 0 and "float weights" in out and "M=16" in out
    png = tmp_path / "picture.npz"
    png.write_bytes(open(KODIM23, "rb").read())
    for bad, says in ((str(png), "not an .npz archive"), (str(tmp_path / "none.npz"), "no such model file")):
        rc, out, err = run(["info", bad], capsys)
        assert rc == 1 and says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_tune_ms_ssim_shapes_the_rdo_map(files, capsys):
    """--tune ms-ssim: implies --qmap rdo, refuses a map that would ignore it,
    and gives another map than the psnr tune; bad values are refused.  (A
    picture large enough for the MS-SSIM map to pay for its bits: on the
    64 x 96 crop the best map is flat and none is coded.)"""
    rgb = crop(128, 192, 150, 250)
    Image.fromarray(rgb).save(files / "tune.png")
    a = refcodec.encode(rgb, beta=0.5, qmap="rdo", tune="ms-ssim")
    assert decoder.picture(a).header.quality_map_enabled and a != refcodec.encode(rgb, beta=0.5, qmap="rdo")
    with pytest.raises(refcodec.RefcodecError, match="tune"):
        refcodec.encode(rgb, beta=0.5, qmap="rdo", tune="ssim")
    rc, _, err = run(["encode", str(files / "tune.png"), str(files / "t.rcd"), "--beta", "0.5", "--tune", "ms-ssim"],
                     capsys)
    assert rc == 0, err
    assert (files / "t.rcd").read_bytes() == a
    rc, _, err = run(["encode", str(files / "in.png"), str(files / "t.rcd"), "--beta", "0.5", "--tune", "ms-ssim",
                      "--qmap", "activity"], capsys)
    assert rc != 0 and "--tune ms-ssim" in err
