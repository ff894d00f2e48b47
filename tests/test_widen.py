"""refcodec.train.widen: a model grown to more latent channels computes what
it computed before on the old channels (the new ones silent in g_s)."""

import numpy as np
import pytest

from refcodec import arch as A
from refcodec.train import widen as W

torch = pytest.importorskip("torch")


def tiny(M, seed=0):
    from refcodec.train.nets import HyperpriorTorch
    torch.manual_seed(seed)
    m = HyperpriorTorch(A.make_arch(N=8, M=M, Z=6, NH=8, C=5, NE=7))
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def widened(m, M2, monkeypatch, gs_spread=0.0):
    from refcodec.train.nets import HyperpriorTorch
    monkeypatch.setattr(W, "GS_SPREAD", gs_spread)
    arrays = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    a, arch2 = W.widen(arrays, m.arch, M2)
    w = HyperpriorTorch(arch2)
    w.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in a.items()})
    return w.eval()


def test_widened_model_keeps_the_old_channels(monkeypatch):
    M, M2 = 12, 17
    m = tiny(M)
    w = widened(m, M2, monkeypatch)
    x = torch.rand(1, 3, 64, 128)
    beta = torch.tensor([0.7])
    with torch.no_grad():
        y, y2 = m.g_a(m.to_ycbcr(x)), w.g_a(w.to_ycbcr(x))
        assert torch.equal(y2[:, :M], y)
        assert y2[:, M:].abs().max() > 0                      # the new latents exist
        z, z2 = m.h_a(y), w.h_a(y2)
        torch.testing.assert_close(z2, z, rtol=0, atol=1e-6)
        z_hat = torch.round(z)
        p, p2 = m.h_s(z_hat), w.h_s(z_hat)
        torch.testing.assert_close(p2[:, :M], p[:, :M], rtol=0, atol=1e-6)             # means
        torch.testing.assert_close(p2[:, M2:M2 + M], p[:, M:], rtol=0, atol=1e-6)       # sigma indices
        assert torch.all(p2[:, M:M2] == 0) and torch.all(p2[:, M2 + M:] == W.NEW_S_BIAS)
        # the context: old channels refined as before, new ones not at all
        mu, s = p.chunk(2, dim=1)
        mu2, s2 = p2.chunk(2, dim=1)
        g, g2 = torch.exp2(m.gain(beta))[:, :, None, None], torch.exp2(w.gain(beta))[:, :, None, None]
        # the old channels keep their log2 gain exactly (compared before exp2: torch's exp2 of a
        # 17-wide row can round a lane differently from a 12-wide one on AVX2 hosts, 1 ulp)
        assert torch.equal(w.gain(beta)[:, :M], m.gain(beta))
        from refcodec.train.nets import ste_round
        c_mu, c_s = m.checkerboard(y, mu, s, g, ste_round)
        c_mu2, c_s2 = w.checkerboard(y2, mu2, s2, g2, ste_round)
        torch.testing.assert_close(c_mu2[:, :M], c_mu, rtol=0, atol=1e-5)
        torch.testing.assert_close(c_s2[:, :M], c_s, rtol=0, atol=1e-5)
        torch.testing.assert_close(c_mu2[:, M:], mu2[:, M:], rtol=0, atol=0)
        # the reconstruction ignores the new channels (GS_SPREAD 0); their bits come on top
        x_hat, by, bz = m(x, beta, noise=False)
        x_hat2, by2, bz2 = w(x, beta, noise=False)
        torch.testing.assert_close(x_hat2, x_hat, rtol=0, atol=1e-5)
        torch.testing.assert_close(bz2, bz, rtol=0, atol=1e-4)
        assert float(by2) >= float(by) - 1e-3


def test_widen_refuses_to_narrow(monkeypatch):
    m = tiny(12)
    with pytest.raises(ValueError, match="latent channels"):
        widened(m, 12, monkeypatch)


def test_residual_blocks_leave_the_model_unchanged():
    """widen --RA: the residual blocks start as identities, every other layer
    of g_a keeps its weights under its new index, so the model computes
    exactly what it did."""
    from refcodec.train.nets import HyperpriorTorch
    m = tiny(12)
    arrays = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    a, arch2 = W.add_residual(arrays, m.arch, 2)
    assert [layer[0] for layer in arch2["g_a"]].count("res") == 6 and arch2["version"] == 3
    w = HyperpriorTorch(arch2)
    w.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in a.items()})
    w.eval()
    x, beta = torch.rand(1, 3, 64, 128), torch.tensor([0.6])
    with torch.no_grad():
        for r, r2 in zip(m(x, beta, noise=False), w(x, beta, noise=False)):
            assert torch.equal(r, r2)
        assert all(float(p.abs().max()) > 0 for k, p in w.named_parameters() if ".conv1." in k)
    with pytest.raises(ValueError, match="already"):
        W.add_residual(a, arch2, 1)
    with pytest.raises(ValueError, match="before adding residual"):
        W.widen(a, arch2, 16)


def test_widen_command_line(tmp_path):
    """--M and --RA together write a file the trainer and the encoder read."""
    import json
    from refcodec import nn
    src = tmp_path / "src.npz"
    m = tiny(12)
    arrays = {k: v.detach().numpy() for k, v in m.state_dict().items() if not k.startswith(("rgb_to", "ycbcr_to"))}
    np.savez(src, __meta__=np.frombuffer(json.dumps({"arch": m.arch, "step": 7}).encode(), np.uint8), **arrays)
    W.main([str(src), str(tmp_path / "dst.npz"), "--M", "16", "--RA", "1"])
    arch, params, meta = nn.load_float(str(tmp_path / "dst.npz"))
    assert arch["M"] == 16 and meta["step"] == 7 and meta["widened_from"] == 12
    y = nn.run_float(arch["g_a"], params, "g_a", np.zeros((32, 32, 3), np.float32))
    assert y.shape == (2, 2, 16)
    with pytest.raises(SystemExit):
        W.main([str(src), str(tmp_path / "x.npz")])


def test_postfilter_from_another_file(tmp_path):
    """--postfilter-from adds the g_pf of another file of the same model: the
    other networks keep their weights, g_pf and its widths come along, and
    the trainer's network computes g_s's output plus the filter's."""
    import json
    from refcodec.train.nets import HyperpriorTorch

    def save(m, path):
        arrays = {k: v.detach().numpy() for k, v in m.state_dict().items()
                  if not k.startswith(("rgb_to", "ycbcr_to"))}
        np.savez(path, __meta__=np.frombuffer(json.dumps({"arch": m.arch, "step": 3}).encode(), np.uint8), **arrays)

    base = tiny(12)
    torch.manual_seed(1)
    pf = HyperpriorTorch(A.with_postfilter(base.arch, PF=4))
    with torch.no_grad():
        for name, p in pf.named_parameters():
            if name.startswith("g_pf."):
                p.normal_(0, 0.1)
    save(base, tmp_path / "base.npz")
    save(pf, tmp_path / "pf.npz")
    W.main([str(tmp_path / "base.npz"), str(tmp_path / "out.npz"), "--postfilter-from", str(tmp_path / "pf.npz")])
    data = np.load(tmp_path / "out.npz")
    arch = json.loads(bytes(data["__meta__"]).decode())["arch"]
    assert arch["PF"] == 4 and A.has_postfilter(arch) and arch["M"] == 12
    for k, v in base.state_dict().items():
        if k in data.files:
            assert np.array_equal(data[k], v.numpy()), k
    for k, v in pf.state_dict().items():
        if k.startswith("g_pf."):
            assert np.array_equal(data[k], v.numpy()), k
    with pytest.raises(SystemExit):                     # a file without a post-filter
        W.main([str(tmp_path / "base.npz"), str(tmp_path / "x.npz"), "--postfilter-from", str(tmp_path / "base.npz")])
    # the trainer's synthesis: x + g_pf(concat(x, r)) with r the mean log2 gain / 8
    m = HyperpriorTorch({**arch, **{n: [tuple(layer) for layer in arch[n]] for n in A.nets_of(arch)}})
    m.load_state_dict({k: torch.from_numpy(data[k]) for k in data.files if k != "__meta__"}, strict=False)
    y_hat = torch.randn(1, 12, 3, 4)
    lg = torch.full((1, 12, 1, 1), 0.8)
    x = m.g_s(y_hat)
    r = torch.full((1, 1, *x.shape[2:]), 0.1)
    got, want = m.synthesis(y_hat, lg), x + m.g_pf(torch.cat([x, r], 1))
    assert torch.isfinite(want).all() and torch.allclose(got, want, atol=1e-6), (got - want).abs().max()


def test_grown_postfilter_computes_what_it_did(tmp_path):
    """--PF / --PFL: a post-filter grown wider and deeper gives the same
    output as before (new channels silent, new layers identities after a
    ReLU), its new weights are there to train, and every other network keeps
    its weights; it refuses to shrink or to grow a filter that is not there."""
    import json
    from refcodec.train.nets import HyperpriorTorch
    torch.manual_seed(2)
    m = HyperpriorTorch(A.with_postfilter(tiny(12).arch, PF=4)).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("g_pf."):
                p.normal_(0, 0.3)
    arrays = {k: v.detach().numpy() for k, v in m.state_dict().items() if not k.startswith(("rgb_to", "ycbcr_to"))}
    a, arch2 = W.grow_postfilter(arrays, m.arch, 7, 5)
    convs = [layer for layer in arch2["g_pf"] if layer[0] == "conv"]
    assert arch2["PF"] == 7 and len(convs) == 5 and convs[0][1:3] == (4, 7) and convs[-1][1:3] == (7, 3)
    g = HyperpriorTorch(arch2).eval()
    g.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in a.items()}, strict=False)
    x, lg = torch.randn(2, 3, 19, 23), torch.randn(2, 12, 1, 1)
    with torch.no_grad():
        before, after = m.synthesis_post(x, lg), g.synthesis_post(x, lg)
        assert (before - x).abs().max() > 0.01                 # the filter does something
        torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    assert np.abs(a["g_pf.0.weight"][4:]).max() > 0           # new hidden channels have inputs
    assert not a["g_pf.2.weight"][:4, 4:].any()               # ... and silent outputs
    for k, v in arrays.items():
        if not k.startswith("g_pf."):
            assert a[k] is v
    with pytest.raises(ValueError, match="already"):
        W.grow_postfilter(arrays, m.arch, 3, 3)
    with pytest.raises(ValueError, match="no post-filter"):
        W.grow_postfilter(arrays, tiny(12).arch, 8, 3)
    # the command line writes a file the probe and the trainer read
    src = tmp_path / "pf.npz"
    np.savez(src, __meta__=np.frombuffer(json.dumps({"arch": m.arch, "step": 5}).encode(), np.uint8), **arrays)
    W.main([str(src), str(tmp_path / "grown.npz"), "--PF", "6", "--PFL", "4"])
    data = np.load(tmp_path / "grown.npz")
    arch3 = json.loads(bytes(data["__meta__"]).decode())["arch"]
    assert arch3["PF"] == 6 and sum(layer[0] == "conv" for layer in arch3["g_pf"]) == 4
    assert data["g_pf.6.weight"].shape == (3, 6, 3, 3)
    with pytest.raises(SystemExit):
        W.main([str(src), str(tmp_path / "x.npz"), "--PF", "2"])
