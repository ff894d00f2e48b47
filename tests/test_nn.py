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
    m = HyperpriorTorch(A.make_arch(N=8, M=12, Z=6, NH=8, C=5, NE=7))
    with torch.no_grad():   # move GDN parameters away from their initial identity-like values
        for name, p in m.named_parameters():
            if "beta_p" in name or "gamma_p" in name:
                p.add_(0.05 * torch.rand_like(p))
    return m.eval()


def params_of(m):
    return {k: v.detach().numpy() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("net,cin,size", [("g_a", 3, (64, 48)), ("h_a", 12, (4, 3)),
                                          ("h_s", 6, (1, 1)), ("h_s", 6, (3, 5)), ("g_s", 12, (3, 2)),
                                          ("g_cm", 12, (1, 1)), ("g_cm", 12, (5, 4)), ("g_ep", 29, (3, 2))])
def test_numpy_float_matches_torch(model, net, cin, size):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (*size, cin)).astype(np.float32)
    with torch.no_grad():
        ref = getattr(model, net)(torch.from_numpy(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    out = nn.run_float(model.arch[net], params_of(model), net, x)
    assert out.shape == ref.shape
    assert np.max(np.abs(out - ref)) <= 1e-4 * max(1.0, np.max(np.abs(ref)))


def test_residual_analysis_matches_torch():
    """The encoder-only residual blocks of a v3 g_a (RA = 1: one at each of
    1/4, 1/8, 1/16), with their second convolutions moved off zero."""
    from refcodec.train.nets import HyperpriorTorch
    torch.manual_seed(3)
    m = HyperpriorTorch(A.make_arch(N=8, M=12, Z=6, NH=8, C=5, NE=7, RA=1)).eval()
    assert [layer[0] for layer in m.arch["g_a"]].count("res") == 3
    with torch.no_grad():
        for name, p in m.named_parameters():
            if ".conv2." in name:
                p.normal_(0, 0.2)
    x = np.random.default_rng(2).normal(0, 1, (80, 48, 3)).astype(np.float32)
    with torch.no_grad():
        ref = m.g_a(torch.from_numpy(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    out = nn.run_float(m.arch["g_a"], params_of(m), "g_a", x)
    assert out.shape == ref.shape == (5, 3, 12)
    assert np.max(np.abs(out - ref)) <= 1e-4 * max(1.0, np.max(np.abs(ref)))


def test_macs_per_pixel():
    """The shipped widths: ~15.7 kMAC/pixel in g_s, 0.76 in h_s, 1.6 + 1.2 in the context."""
    m = A.macs_per_pixel(A.make_arch(N=64, M=128, Z=64, NH=64, C=128, NE=320))
    # g_s: 3 x 3 convolutions at 1/16, 1/8, 1/4, 1/2 of the picture's side, IGDNs after the first three
    g_s = (128 * 256 * 9 / 256 + 64 * 256 * 9 / 64 + 64 * 256 * 9 / 16 + 64 * 12 * 9 / 4
           + 64 * 64 * (1 / 64 + 1 / 16 + 1 / 4))
    assert m["g_s"] == g_s == 15744
    assert m["h_s"] == 756 and m["g_cm"] == 1600 and m["g_ep"] == 1200
    assert m["g_a"] > 10000 and set(m) == {"g_a", "h_a", "h_s", "g_cm", "g_ep", "g_s"}
    # residual blocks cost the encoder alone
    m2 = A.macs_per_pixel(A.make_arch(N=64, M=128, Z=64, NH=64, C=128, NE=320, RA=1))
    assert m2["g_a"] > m["g_a"] and all(m2[n] == m[n] for n in A.DECODER_NETS if n in m)
    # the post-filter: 3x3 convolutions 4 -> PF -> PF -> 3 at the picture's resolution
    m3 = A.macs_per_pixel(A.with_postfilter(A.make_arch(N=64, M=128, Z=64, NH=64, C=128, NE=320), PF=16))
    assert m3["g_pf"] == 9 * (4 * 16 + 16 * 16 + 16 * 3) and all(m3[n] == m[n] for n in m)


def test_receptive_radius():
    # four 5 x 5 convolutions of stride 2: 2 + 4 + 8 + 16 samples
    assert A.receptive_radius(A.make_arch()["g_a"]) == 30
    # one residual block (two 3 x 3) at each of 1/4, 1/8, 1/16: 2 * (4 + 8 + 16) more
    assert A.receptive_radius(A.make_arch(RA=1)["g_a"]) == 86
    assert A.receptive_radius([("conv", 4, 4, 3, 1), ("d2s", 2), ("conv", 4, 4, 3, 1)]) == 1.5


def test_checkerboard_context_matches_torch(model):
    """The exporter's float pipeline (numpy) refines mu and s at the
    non-anchors as the trainer does, and keeps the hyperprior's at the anchors."""
    from PIL import Image
    from refcodec import export
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("g_ep.4"):
                p.add_(0.3 * torch.randn_like(p))        # a non-trivial correction
    params = params_of(model)
    rgb = np.asarray(Image.open("tests/data/kodim23.png").convert("RGB"))[:64, :128]
    t = export.float_forward(model.arch, params, rgb, 0.4)
    y = torch.from_numpy(t["y"]).permute(2, 0, 1)[None]
    mu = torch.from_numpy(t["mu"]).permute(2, 0, 1)[None]
    s = torch.from_numpy(t["s"]).permute(2, 0, 1)[None]
    g = torch.exp2(model.gain(torch.tensor([0.4])))[:, :, None, None]
    with torch.no_grad():
        mu_c, s_c = model.checkerboard(y, mu, s, g, torch.round)
    for ref, out in ((mu_c, t["mu_ctx"]), (s_c, t["s_ctx"])):
        ref = ref[0].permute(1, 2, 0).numpy()
        assert np.max(np.abs(out - ref)) <= 1e-4 * max(1.0, np.max(np.abs(ref)))
    a = export.anchor_mask(*t["y"].shape[:2])
    assert np.array_equal(t["mu_ctx"][a], t["mu"][a]) and not np.allclose(t["mu_ctx"][~a], t["mu"][~a])


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


def test_latent_refinement_lowers_the_training_loss():
    """refcodec.refine.refine (stochastic Gumbel annealing) with the shipped
    float weights on a Kodak crop: the trainer's forward is from_latents of
    g_a's latents, and refining them lowers the rate-distortion cost the
    trainer minimizes (measured without noise, with hard rounding)."""
    import os
    from PIL import Image
    from refcodec.refine import refine, torch_model
    from refcodec.model import DEFAULT_MODEL, float_weights_of
    net, _ = torch_model(float_weights_of(DEFAULT_MODEL))      # g_a, h_a from the W16 file
    torch.set_num_threads(1)
    crop = np.asarray(Image.open(os.path.join(os.path.dirname(__file__), "data", "kodim23.png")).convert("RGB"))
    x = torch.from_numpy(crop[:128, :128].astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    beta = torch.tensor([0.3])
    with torch.no_grad():
        y = net.g_a(net.to_ycbcr(x))
        assert all(torch.equal(a, b) for a, b in zip(net(x, beta, noise=False),
                                                      net.from_latents(y, net.h_a(y), beta, noise=False)))

    def loss(y, z):
        with torch.no_grad():
            x_hat, by, bz = net.from_latents(y, z, beta, noise=False)
            return float((by + bz).sum() / 128 ** 2 + net.lam(beta) * 255 ** 2 * ((x_hat - x) ** 2).mean())

    before = loss(y, net.h_a(y))
    torch.manual_seed(0)
    yr, zr = refine(net, torch, x, 0.3, iters=30, lr=0.02)
    t = lambda a: torch.from_numpy(a).float().permute(2, 0, 1)[None]  # noqa: E731
    assert yr.shape == (8, 8, net.arch["M"]) and zr.shape == (2, 2, net.arch["Z"])
    assert loss(t(yr), t(zr)) < 0.95 * before        # 0.052 -> 0.043 here


def test_bf16_training_layers_stay_close_and_evaluation_stays_float32(model):
    """The trainer's --bf16: inner layers of g_a and g_s in bfloat16 while
    training (close to float32), never in evaluation (identical)."""
    x = torch.rand(2, 3, 64, 64)
    beta = torch.tensor([0.2, 0.9])
    try:
        with torch.no_grad():
            ref = model(x, beta, noise=False)
            model.set_bf16(True)
            same = model(x, beta, noise=False)                  # eval mode: float32
            model.train()
            mixed = model.g_s(model.g_a(model.to_ycbcr(x)))
            model.eval()
            full = model.g_s(model.g_a(model.to_ycbcr(x)))
    finally:
        model.set_bf16(False)
        model.eval()
    for a, b in zip(ref, same):
        assert torch.equal(a, b)
    assert mixed.dtype == torch.float32
    assert not torch.equal(mixed, full)                        # bfloat16 did run
    torch.testing.assert_close(mixed, full, rtol=0, atol=0.05 * float(full.abs().max()))


def test_trainer_beta_draw_moves_the_chosen_fraction_above_the_floor():
    """--beta-floor LO --beta-floor-frac F: a fraction F of the crops draws
    beta from U[LO, 1]; the rest (and F = 0) from U[0, 1]."""
    from refcodec.train.__main__ import draw_beta
    torch.manual_seed(0)
    plain = draw_beta(200_000)
    torch.manual_seed(0)
    same = draw_beta(200_000, 0.3, 0.0)
    assert torch.equal(plain, same)
    torch.manual_seed(0)
    b = draw_beta(200_000, 0.3, 0.5)
    assert 0 <= float(b.min()) and float(b.max()) <= 1
    # below the floor only the uniform half lands: 0.5 * 0.3 of the crops
    assert abs(float((b < 0.3).float().mean()) - 0.15) < 0.005
    # above it, uniform: each 0.1-wide bin of [0.3, 1] holds the same share
    hi = b[b >= 0.3]
    counts = torch.histc(hi, bins=7, min=0.3, max=1.0) / hi.numel()
    assert float((counts - 1 / 7).abs().max()) < 0.01
