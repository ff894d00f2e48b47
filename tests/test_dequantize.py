"""A W16 model file gives its float weights back (refcodec.export.dequantize,
SPEC.md clause 8.5): the trainer resumes from it and refinement reads it, so
a model ships without a float copy beside it."""

import os
import zipfile

import numpy as np
import pytest

from refcodec import decoder, encoder, model as model_mod
from refcodec.errors import ModelError
from refcodec.export import export, write_npz
from refcodec.model import Model, float_weights_of
from refcodec.nn import load_float

DATA = os.path.join(os.path.dirname(__file__), "data")
FLOAT = os.path.join(DATA, "tiny-pf-float.npz")      # the context tool and the post-filter: every layer type


@pytest.fixture(scope="module")
def w16(tmp_path_factory):
    d = tmp_path_factory.mktemp("deq")
    path = str(d / "refcodec-v9-w16.npz")
    export(FLOAT, path, DATA, weight_bits=16, n_images=2)
    return path


def test_w16_export_carries_the_density_of_z_for_the_trainer_alone(w16):
    names = zipfile.ZipFile(w16).namelist()
    train = sorted(n for n in names if n.startswith("train."))
    _, params, _ = load_float(FLOAT)
    assert train == sorted(f"train.{k}.npy" for k in params if k.startswith("entropy_z."))
    # a decoder skips them: the same pictures as from the file without them
    arrays = {n[:-4]: np.load(w16)[n[:-4]] for n in names if not n.startswith("train.")}
    bare = os.path.join(os.path.dirname(w16), "bare-w16.npz")
    with open(bare, "wb") as f:
        f.write(write_npz(arrays))
    rgb = np.random.default_rng(3).integers(0, 256, (40, 56, 3)).astype(np.uint8)
    a, b = Model(w16), Model(bare)
    out_a = decoder.decode(encoder.encode(rgb, beta=0.5, model=a), models=[a])
    out_b = decoder.decode(encoder.encode(rgb, beta=0.5, model=b), models=[b])
    assert np.array_equal(out_a, out_b)


def test_dequantized_weights_are_the_float_weights_within_a_step(w16):
    arch0, p0, _ = load_float(FLOAT)
    arch1, p1, meta = load_float(w16)
    assert set(p1) == set(p0) and arch1 == arch0
    assert meta["step"] == 6000 and meta["dequantized_from"]["file"] == "refcodec-v9-w16.npz"
    for k, v in p0.items():
        assert p1[k].dtype == np.float32 and p1[k].shape == v.shape, k
        if k.startswith(("g_a.", "h_a.", "entropy_z.")):
            assert np.array_equal(p1[k], v), k                  # carried as float32
        elif k == "log2_gain":
            assert np.abs(p1[k] - v).max() <= 2.0 ** -17 + 1e-7
        else:
            # within the integer step, which the no-overflow bound may coarsen to 12 bits of the
            # largest; for IGDN the squares were quantized
            a, b = (p1[k] ** 2, v ** 2) if k.endswith(("gamma_p", "beta_p")) else (p1[k], v)
            assert np.abs(a - b).max() <= 2.0 ** -11 * np.abs(b).max(), k


def test_exporting_the_dequantized_weights_gives_the_same_file(w16, tmp_path):
    again = str(tmp_path / "again-w16.npz")
    export(w16, again, DATA, weight_bits=16, n_images=2)
    assert open(again, "rb").read() == open(w16, "rb").read()
    # a W8 export from it: the W16 weights rounded again, at most one step from the float weights' export
    a, b = str(tmp_path / "a-w8.npz"), str(tmp_path / "b-w8.npz")
    export(FLOAT, a, DATA, weight_bits=8, n_images=2)
    export(w16, b, DATA, weight_bits=8, n_images=2)
    za, zb = np.load(a), np.load(b)
    assert sorted(za.files) == sorted(zb.files)
    for k in za.files:
        if za[k].dtype.kind == "i" and k.endswith((".w", ".gamma")):
            assert np.abs(za[k].astype(np.int64) - zb[k].astype(np.int64)).max() <= 1, k


def test_info_says_the_trainer_resumes_from_it(w16, capsys):
    from refcodec.cli import main
    assert main(["info", w16]) == 0
    out = capsys.readouterr().out
    assert "W16A16, training step 6000; the trainer resumes from it (SPEC.md 8.5)" in out


def test_only_a_w16_file_with_the_trainer_members_gives_float_weights(w16, tmp_path):
    w8 = str(tmp_path / "refcodec-v9-w8.npz")
    export(FLOAT, w8, DATA, weight_bits=8, n_images=2)
    with pytest.raises(ModelError, match="W8 model file; float weights come back only from a W16"):
        load_float(w8)
    old = str(tmp_path / "refcodec-v9-w16.npz")             # as exported before clause 8.5
    z = np.load(w16)
    with open(old, "wb") as f:
        f.write(write_npz({k: z[k] for k in z.files if not k.startswith("train.")}))
    with pytest.raises(ModelError, match="holds no train.* members"):
        load_float(old)
    # float_weights_of: the float copy where one ships, else the W16 file that gives them back
    assert float_weights_of(old) == str(tmp_path / "v9-float.npz")        # neither: refine refuses it by name
    assert float_weights_of(w16) == w16 and float_weights_of(w16.replace("-w16", "-w8")) == w16
    copy = os.path.join(os.path.dirname(w16), "v9-float.npz")
    with open(copy, "wb") as f:
        f.write(open(FLOAT, "rb").read())
    try:
        assert float_weights_of(w16) == copy
    finally:
        os.remove(copy)


def test_refinement_reads_a_w16_file(w16):
    pytest.importorskip("torch")
    from refcodec.refine import refine_latents
    m = model_mod.load(w16)
    rgb = np.random.default_rng(5).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    y, z = refine_latents(rgb, m, 0.5, iters=2)          # the float weights found beside it: the file itself
    assert y.shape[2] == m.arch["M"] and np.isfinite(y).all()


def test_the_trainer_starts_from_a_w16_file(w16, tmp_path):
    """--init refcodec-vK-w16.npz: the run takes the file's architecture and
    its dequantized weights, every parameter of the network."""
    torch = pytest.importorskip("torch")
    from refcodec.train import __main__ as T
    from refcodec.train.nets import HyperpriorTorch, load_float as load_into
    args = T.argparse.Namespace(arch=None, run=str(tmp_path / "run"), init=w16)
    arch = T.arch_of_run(args)
    assert arch["M"] == 16 and arch["PF"] == 4
    net = HyperpriorTorch(arch)
    meta = load_into(net, w16)
    assert meta["step"] == 6000
    _, params, _ = load_float(w16)
    sd = net.state_dict()
    for k, v in params.items():
        assert torch.equal(sd[k], torch.from_numpy(v)), k


def test_the_trainers_measure_reads_a_w16_file(w16):
    """curve_of (--bd-ref, refcodec.train.measure) builds the network from the
    W16 file's header and measures its dequantized weights: the float
    weights' curve within their quantization."""
    pytest.importorskip("torch")
    from refcodec.nn import read_arch
    from refcodec.train import __main__ as T
    assert read_arch(w16) == read_arch(FLOAT)
    from PIL import Image
    img = np.asarray(Image.open(os.path.join(DATA, "kodim23.png")).convert("RGB"))[:64, :128]
    a = T.curve_of(FLOAT, [img], [0.3, 0.8], False)
    b = T.curve_of(w16, [img], [0.3, 0.8], False)
    for (beta, bpp_a, psnr_a, _), (_, bpp_b, psnr_b, _) in zip(a, b):
        assert abs(bpp_b / bpp_a - 1) < 0.01 and abs(psnr_b - psnr_a) < 0.05, (beta, a, b)


def test_widen_takes_the_post_filter_of_a_w16_file(w16, tmp_path):
    """refcodec.train.widen --postfilter-from reads a W16 model file (its
    header's arch, its dequantized g_pf), not only the trainer's float files."""
    import json
    from refcodec.train import widen as W
    out = tmp_path / "out.npz"
    W.main([FLOAT, str(out), "--postfilter-from", w16])
    data = np.load(out)
    arch = json.loads(bytes(data["__meta__"]).decode())["arch"]
    arch_w16, p_w16, _ = load_float(w16)
    assert arch["PF"] == arch_w16["PF"] and arch["g_pf"] == [list(layer) for layer in arch_w16["g_pf"]]
    _, p_float, _ = load_float(FLOAT)
    g_pf = sorted(k for k in p_w16 if k.startswith("g_pf."))
    assert g_pf
    for k in data.files:
        if k == "__meta__":
            continue
        want = p_w16[k] if k.startswith("g_pf.") else p_float[k]
        assert np.array_equal(data[k], want), k
    assert any(not np.array_equal(p_w16[k], p_float[k]) for k in g_pf)   # the W16 file's, not the float's
