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
