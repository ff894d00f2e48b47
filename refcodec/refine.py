"""Encoder-side latent refinement (an optional encoder tool; needs PyTorch, the ``train`` extra).

The analysis transforms g_a and h_a give latents in one pass; the latents
that minimize the rate-distortion cost of *this* picture are usually
elsewhere (the amortization gap; refcodec.studies.refine_study measures it).
:func:`refine_latents` starts from g_a's latents and descends the
rate-distortion cost at the lambda of the target beta through stochastic
Gumbel annealing (soft rounding hardening to the decoder's rounding; the
trainer's noise proxy is the other ``method``), on the float model the
integer one was exported from.  The result feeds the usual encoder back end
(``encoder.Analysis(latents=...)``): the stream syntax and the decoder do
not change, only which latents the encoder codes.  It costs about one
training step of the whole picture per iteration.
"""

import os

import numpy as np

from .errors import RefcodecError

#: Defaults of :func:`refine` (the command line and the API take N explicitly).
ITERS = 40
LR = 0.02

_NETS = {}


def shipped_float_weights(model=None):
    """The float weights a shipped model (default: the default model) was
    exported from (``model.float_weights_of``: refcodec-v8-w16.npz comes from
    v8-float.npz; a model shipped without a float copy, as the default
    refcodec-v12-w16.npz, gives them back from its W16 file, SPEC.md 8.5);
    :func:`refine_latents` refuses them for any other model."""
    from .model import DEFAULT_MODEL, float_weights_of
    model_path = model.path if model is not None else DEFAULT_MODEL
    path = float_weights_of(model_path)
    if path is None or not os.path.exists(path):
        raise RefcodecError(f"latent refinement: no float weights ship with {os.path.basename(model_path)}; "
                            "pass the float weights it was exported from")
    return path


def torch_model(float_weights):
    """(net, torch): the trainer's network with the float weights, frozen."""
    try:
        import torch
    except ImportError:
        raise RefcodecError("latent refinement needs PyTorch (the train extra): pip install -e '.[train]' "
                            "in a checkout, or pip install torch==2.13.0") from None
    key = os.path.abspath(float_weights)
    if key not in _NETS:
        from .nn import load_float
        from .train.nets import HyperpriorTorch
        from .train.nets import load_float as load_into
        arch, _, _ = load_float(float_weights)
        net = HyperpriorTorch(arch)
        load_into(net, float_weights)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        _NETS[key] = net
    return _NETS[key], torch


def sga_round(torch, v, tau, generator=None):
    """Stochastic Gumbel annealing (Yang et al. 2020): v moves to floor(v) or
    floor(v) + 1 with a Gumbel-softmax weight that favours the nearer one and
    hardens as the temperature tau falls to 0.  The Gumbel noise comes from
    ``generator`` (refine seeds its own: the same picture gives the same
    stream on every run)."""
    f = torch.floor(v)
    d = (v - f).clamp(1e-6, 1 - 1e-6)
    logits = torch.stack([-torch.atanh(d), -torch.atanh(1 - d)], dim=-1) / tau
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp(1e-20, 1 - 1e-7)
    w = torch.softmax(logits - torch.log(-torch.log(u)), dim=-1)
    return f + w[..., 1]


def refine(net, torch, x, beta, iters=ITERS, lr=LR, method="sga"):
    """Latents (y, z) of x (1 x 3 x H x W float in [0, 1], H and W multiples
    of 64) minimizing the rate-distortion cost at beta, by Adam from g_a's
    latents.  ``method="sga"``: rates and reconstruction through stochastic
    Gumbel annealing, temperature 0.5 falling to 0.05 (what the decoder
    will see: rounded latents); ``"noise"``: the trainer's proxy (uniform
    noise for the rates, straight-through rounding for the reconstruction),
    learning rate decayed to 0 on a cosine.  Returns them as H x W x C
    float64 arrays."""
    with torch.no_grad():
        y0 = net.g_a(net.to_ycbcr(x))
        z0 = net.h_a(y0)
    y = y0.clone().requires_grad_(True)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([y, z], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, iters)) if method == "noise" else None
    b = torch.tensor([float(beta)])
    lam = float(net.lam(b))
    npx = x.shape[2] * x.shape[3]
    gen = torch.Generator().manual_seed(0)
    for it in range(iters):
        if method == "sga":
            tau = 0.5 * (0.1 ** (it / max(1, iters - 1)))
            x_hat, bits_y, bits_z = net.from_latents(y, z, b, rounding=lambda v: sga_round(torch, v, tau, gen))
        else:
            x_hat, bits_y, bits_z = net.from_latents(y, z, b)
        loss = (bits_y + bits_z).sum() / npx + lam * 255 ** 2 * ((x_hat - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    hwc = lambda t: t.detach()[0].permute(1, 2, 0).double().numpy()  # noqa: E731
    return hwc(y), hwc(z)


def refine_latents(rgb, model, beta, iters=ITERS, lr=LR, method="sga", float_weights=None):
    """Refined (y, z) of a uint8 RGB picture for ``model`` at rate beta, on the
    encoder's padded grid (for ``encoder.Analysis(rgb, model, latents=...)``)."""
    from .decoder import pad_to_grid
    net, torch = torch_model(float_weights or shipped_float_weights(model))
    _check_same_encoder(net, model)
    x = torch.from_numpy(pad_to_grid(rgb).astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    return refine(net, torch, x, beta, iters, lr, method)


def _check_same_encoder(net, model):
    """Refuse float weights that are not the ones the model was exported from:
    every float encoder weight of the model must be theirs."""
    sd = net.state_dict()
    same = bool(model.enc) and all(
        name in sd and tuple(sd[name].shape) == tuple(np.shape(value))
        and np.allclose(sd[name].numpy(), value, rtol=0, atol=1e-6) for name, value in model.enc.items())
    if not same:
        raise RefcodecError("latent refinement: the float weights are not those this model was exported from "
                            "(its encoder weights differ); pass the matching float weights file")
