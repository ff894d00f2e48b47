"""Model files that share their float encoder weights (SPEC.md clause 8.4,
``encoder_from``): a W8 export and the float weights beside the W16 export
name it instead of carrying g_a and h_a again."""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from refcodec import decoder, encoder, nn
from refcodec.errors import ModelError
from refcodec.export import export, export_float, write_npz
from refcodec.model import Model, load

DATA = os.path.join(os.path.dirname(__file__), "data")
FLOAT = os.path.join(DATA, "tiny-float.npz")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A W16 export, the W8 export naming it, and a W8 export carrying its own."""
    d = tmp_path_factory.mktemp("shared")
    w16, w8, w8_full = str(d / "m-w16.npz"), str(d / "m-w8.npz"), str(d / "full-w8.npz")
    export(FLOAT, w16, DATA, weight_bits=16, n_images=2)
    export(FLOAT, w8, DATA, weight_bits=8, n_images=2, encoder_from=w16)
    export(FLOAT, w8_full, DATA, weight_bits=8, n_images=2)
    return d, w16, w8, w8_full


def members(path):
    return zipfile.ZipFile(path).namelist()


def picture(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (40, 56, 3)).astype(np.uint8)


def test_w8_names_the_w16_and_gets_its_encoder_weights(pair):
    d, w16, w8, w8_full = pair
    assert not any(k.startswith("enc.") for k in members(w8))
    assert any(k.startswith("enc.") for k in members(w16))
    ref = Model(w8).header["encoder_from"]
    assert ref["file"] == "m-w16.npz" and len(ref["sha256"]) == 64
    theirs, ours = Model(w16).enc, Model(w8).enc
    assert theirs.keys() == ours.keys() and all(np.array_equal(theirs[k], ours[k]) for k in theirs)
    # the same decoder as a W8 export with its own encoder weights: the same
    # streams (but the model_id) and pictures
    a, b = load(w8), load(w8_full)
    rgb = picture()
    sa, sb = encoder.encode(rgb, 0.5, model=a), encoder.encode(rgb, 0.5, model=b)
    assert len(sa) == len(sb)
    assert np.array_equal(decoder.decode(sa, models=[a]), decoder.decode(sb, models=[b]))
    assert os.path.getsize(w8) < os.path.getsize(w8_full)


def test_a_stream_of_the_w8_decodes_without_the_w16(pair, tmp_path):
    d, w16, w8, _ = pair
    alone = str(tmp_path / "m-w8.npz")
    shutil.copy(w8, alone)
    stream = encoder.encode(picture(1), 0.4, model=load(w8))
    assert np.array_equal(decoder.decode(stream, models=[Model(alone)]), decoder.decode(stream, models=[load(w8)]))
    with pytest.raises(ModelError, match="m-w16.npz, which cannot be read"):
        Model(alone).enc


def test_another_file_under_the_name_is_refused(pair, tmp_path):
    d, w16, w8, w8_full = pair
    shutil.copy(w8, tmp_path / "m-w8.npz")
    shutil.copy(w8_full, tmp_path / "m-w16.npz")          # a model, but not the one named
    with pytest.raises(ModelError, match="another one"):
        Model(str(tmp_path / "m-w8.npz")).enc


@pytest.mark.parametrize("ref", [None, "m-w16.npz", {"file": "../m-w16.npz", "sha256": "0" * 64},
                                 {"file": "m-w16.npz", "sha256": "xyz"}, {"file": "m-w16.npz"}])
def test_malformed_references_are_refused(pair, tmp_path, ref):
    d, w16, w8, _ = pair
    arrays = dict(np.load(w8))
    header = json.loads(bytes(arrays["__header__"]).decode())
    header["encoder_from"] = ref
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    bad = tmp_path / "bad-w8.npz"
    bad.write_bytes(write_npz(arrays))
    m = Model(str(bad))                          # a decoder ignores the field
    with pytest.raises(ModelError, match="malformed encoder_from"):
        m.enc


def test_a_chain_of_references_is_refused(pair, tmp_path):
    d, w16, w8, _ = pair
    shutil.copy(w8, tmp_path / "m-w16.npz")           # refers on
    arrays = dict(np.load(w8))
    header = json.loads(bytes(arrays["__header__"]).decode())
    header["encoder_from"] = {"file": "m-w16.npz",
                              "sha256": __import__("hashlib").sha256(open(w8, "rb").read()).hexdigest()}
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    (tmp_path / "x-w8.npz").write_bytes(write_npz(arrays))
    with pytest.raises(ModelError, match="refers on"):
        Model(str(tmp_path / "x-w8.npz")).enc


def test_export_refuses_a_model_of_other_weights(pair, tmp_path):
    d, w16, _, _ = pair
    arrays = dict(np.load(FLOAT))
    arrays["g_a.0.weight"] = arrays["g_a.0.weight"] * np.float32(1.001)     # one encoder weight moved
    moved = str(tmp_path / "moved-float.npz")
    np.savez_compressed(moved, **arrays)
    with pytest.raises(SystemExit, match="not those of the float weights"):
        export(moved, str(d / "x-w8.npz"), DATA, weight_bits=8, n_images=2, encoder_from=w16)
    with pytest.raises(SystemExit, match="folder"):
        export_float(FLOAT, str(tmp_path / "x-float.npz"), w16)


def test_float_weights_without_the_encoder_load_whole(pair):
    d, w16, _, _ = pair
    lean = str(d / "m-float.npz")
    export_float(FLOAT, lean, w16)
    assert not any(k.startswith(("g_a.", "h_a.")) for k in members(lean))
    arch0, p0, meta0 = nn.load_float(FLOAT)
    arch1, p1, meta1 = nn.load_float(lean)
    assert arch0 == arch1 and meta1["encoder_from"]["file"] == "m-w16.npz"
    assert p0.keys() == p1.keys() and all(np.array_equal(p0[k], p1[k]) for k in p0)
    torch = pytest.importorskip("torch")
    from refcodec.train.nets import HyperpriorTorch, load_float
    net = HyperpriorTorch(arch1)
    load_float(net, lean)
    sd = net.state_dict()
    assert all(torch.equal(sd[k], torch.from_numpy(p0[k])) for k in p0 if k in sd)
