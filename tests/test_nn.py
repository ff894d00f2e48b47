"""The numpy float networks and the PyTorch trainer, both built from
refcodec.arch, give the same outputs (within 1e-4)."""

import numpy as np
import pytest

from refcodec import arch as A
from refcodec import nn

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model():
    from refcodec.train.nets import HyperpriorTorch
    torch.manual_seed(0)
    m = HyperpriorTorch(A.make_arch(N=8, M=12, Z=6, NH=8))
    with torch.no_grad():   # move GDN parameters away from their initial identity-like values
        for name, p in m.named_parameters():
            if "beta_p" in name or "gamma_p" in name:
                p.add_(0.05 * torch.rand_like(p))
    return m.eval()


def params_of(m):
    return {k: v.detach().numpy() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("net,cin,size", [("g_a", 3, (64, 48)), ("h_a", 12, (4, 3)),
                                          ("h_s", 6, (1, 1)), ("h_s", 6, (3, 5)), ("g_s", 12, (3, 2))])
def test_numpy_float_matches_torch(model, net, cin, size):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (*size, cin)).astype(np.float32)
    with torch.no_grad():
        ref = getattr(model, net)(torch.from_numpy(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    out = nn.run_float(model.arch[net], params_of(model), net, x)
    assert out.shape == ref.shape
    assert np.max(np.abs(out - ref)) <= 1e-4 * max(1.0, np.max(np.abs(ref)))


def test_factorized_cdf_matches_torch(model):
    v = np.linspace(-20, 20, 41)[None].repeat(model.arch["Z"], 0)
    with torch.no_grad():
        ref = model.entropy_z.logits_cdf(torch.from_numpy(v).float()[:, None, :])[:, 0, :].numpy()
    out = nn.factorized_logits_cdf(params_of(model), v)
    assert np.allclose(out, ref, atol=1e-4)


def test_blocked_float_layers_match_the_whole_computation(monkeypatch):
    """conv2d_float and GDN by blocks of rows (bounded memory) give the
    one-block result up to float rounding, for odd sizes and both strides."""
    from refcodec import nn
    rng = np.random.default_rng(5)
    x = rng.normal(size=(37, 29, 6)).astype(np.float32)
    w = rng.normal(size=(5, 6, 5, 5)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    params = {"t.0.beta_p": rng.random(6) + 0.5, "t.0.gamma_p": rng.random((6, 6)) * 0.1}
    for stride in (1, 2):
        whole = nn.conv2d_float(x, w, b, stride)
        monkeypatch.setattr(nn, "IM2COL_BYTES", 3 * 29 * 150 * 4)     # 3 output rows or fewer per block
        blocked = nn.conv2d_float(x, w, b, stride)
        monkeypatch.undo()
        assert blocked.shape == whole.shape and np.allclose(blocked, whole, rtol=1e-5, atol=1e-4)
    for op in ("gdn", "igdn"):
        whole = nn.run_float([(op, 6)], params, "t", x)
        monkeypatch.setattr(nn, "GDN_ROWS", 7)
        blocked = nn.run_float([(op, 6)], params, "t", x)
        monkeypatch.undo()
        assert np.allclose(blocked, whole, rtol=1e-5, atol=1e-6)
