"""PyTorch networks built from :data:`refcodec.arch.ARCH` (training only).

Nothing at decode time imports this module: PyTorch is the optional
``train`` extra.  The layer names produced here (``g_s.0.weight`` ...) are the
names the model file uses.
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import arch as A


class GDN(nn.Module):
    """Generalized divisive normalization (Balle et al.), float, encoder only.

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)
    """

    def __init__(self, ch):
        super().__init__()
        self.beta_p = nn.Parameter(torch.ones(ch))
        self.gamma_p = nn.Parameter(math.sqrt(0.1) * torch.eye(ch))

    def forward(self, x):
        beta = self.beta_p ** 2 + 1e-6
        gamma = self.gamma_p ** 2
        norm = F.conv2d(x * x, gamma[:, :, None, None], beta)
        return x * torch.rsqrt(norm)


class IGDN(nn.Module):
    """Simplified inverse GDN (Johnston et al. 2019): y_i = x_i (beta_i + sum_j gamma_ij |x_j|).

    beta > 0 and gamma >= 0, so the factor is positive; its integer form is a
    1x1 integer convolution on |x| followed by an elementwise multiply.
    """

    def __init__(self, ch):
        super().__init__()
        self.beta_p = nn.Parameter(torch.ones(ch))
        self.gamma_p = nn.Parameter(math.sqrt(0.1) * torch.eye(ch))

    def params(self):
        return self.beta_p ** 2 + 1e-6, self.gamma_p ** 2

    def forward(self, x):
        beta, gamma = self.params()
        return x * F.conv2d(x.abs(), gamma[:, :, None, None], beta)


class ResBlock(nn.Module):
    """x + conv2(relu(conv1(x))), stride 1, zero padding (encoder only).

    ``conv2`` starts at zero, so a block added to a trained g_a leaves its
    function unchanged until training puts the block to use."""

    def __init__(self, ch, mid, k):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, mid, k, padding=k // 2)
        self.conv2 = nn.Conv2d(mid, ch, k, padding=k // 2)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class Sequential(nn.Sequential):
    """``nn.Sequential`` whose layers ``lo`` to ``hi - 1`` may run in bfloat16
    while training (``bf16 = (lo, hi)``; the trainer's ``--bf16``): the
    layers around them, evaluation and export stay float32."""

    bf16 = None

    def forward(self, x):
        if self.bf16 is None or not self.training:
            return super().forward(x)
        lo, hi = self.bf16
        for m in self[:lo]:
            x = m(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            for m in self[lo:hi]:
                x = m(x)
        x = x.float()
        for m in self[hi:]:
            x = m(x)
        return x


def build(layers):
    mods = []
    for layer in layers:
        op = layer[0]
        if op == "conv":
            _, cin, cout, k, stride = layer
            mods.append(nn.Conv2d(cin, cout, k, stride, padding=k // 2))
        elif op == "gdn":
            mods.append(GDN(layer[1]))
        elif op == "igdn":
            mods.append(IGDN(layer[1]))
        elif op == "d2s":
            mods.append(nn.PixelShuffle(layer[1]))
        elif op == "relu":
            mods.append(nn.ReLU())
        elif op == "res":
            mods.append(ResBlock(*layer[1:]))
        else:
            raise ValueError(f"unknown layer op {op!r}")
    return Sequential(*mods)


class FactorizedPrior(nn.Module):
    """Per-channel learned density for z (Balle et al. 2018, 'entropy bottleneck').

    c(x) = sigmoid(f(x)) is a monotone CDF built from small per-channel
    matrices; the likelihood of an integer is c(x + 1/2) - c(x - 1/2).
    """

    def __init__(self, channels, filters=(3, 3, 3), init_scale=10.0):
        super().__init__()
        dims = (1,) + tuple(filters) + (1,)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.mats = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.mats.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, x):
        # x: (C, 1, L) -> (C, 1, L)
        for i, mat in enumerate(self.mats):
            x = torch.matmul(F.softplus(mat), x) + self.biases[i]
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z):
        # z: (B, C, H, W)
        c = z.shape[1]
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return lik.reshape(c, z.shape[0], *z.shape[2:]).permute(1, 0, 2, 3)


def ste_round(x):
    return x + (torch.round(x) - x).detach()


def rdoq_round(r, sigma, c):
    """The encoder's rate-aware rounding (``encoder.Analysis._round``) as a
    straight-through estimator. Forward: floor(r) or floor(r) + 1, whichever
    costs less in (r - q)^2 + c * bits(q), bits under the discretized Gaussian
    of ``sigma`` (the encoder reads them from the integer tables of the
    quantized sigma). Backward: the identity. ``c``: the rate weight,
    broadcast against r (0 rounds to nearest)."""
    with torch.no_grad():
        q0 = torch.floor(r)
        bits0 = -torch.log2(gaussian_likelihood(q0, sigma).clamp_min(1e-9))
        bits1 = -torch.log2(gaussian_likelihood(q0 + 1, sigma).clamp_min(1e-9))
        q = torch.where((q0 + 1 - r) ** 2 + c * bits1 < (r - q0) ** 2 + c * bits0, q0 + 1, q0)
    return r + (q - r).detach()


def gaussian_likelihood(v, sigma):
    """P(V in [v - 1/2, v + 1/2]) for V ~ N(0, sigma^2), computed on the lower tail."""
    v = v.abs()
    upper = 0.5 * torch.erfc((v - 0.5) / (sigma * math.sqrt(2)))
    lower = 0.5 * torch.erfc((v + 0.5) / (sigma * math.sqrt(2)))
    return upper - lower


class HyperpriorTorch(nn.Module):
    """Mean-scale hyperprior with a gain unit, for training."""

    def __init__(self, arch):
        super().__init__()
        self.arch = arch
        self.g_a = build(arch["g_a"])
        self.h_a = build(arch["h_a"])
        self.h_s = build(arch["h_s"])
        self.g_s = build(arch["g_s"])
        if A.has_context(arch):
            self.g_cm = build(arch["g_cm"])
            self.g_ep = build(arch["g_ep"])
        if A.has_postfilter(arch):
            self.g_pf = build(arch["g_pf"])
            last = [m for m in self.g_pf if isinstance(m, nn.Conv2d)][-1]
            nn.init.zeros_(last.weight)          # a new post-filter starts as the identity
            nn.init.zeros_(last.bias)
        self.entropy_z = FactorizedPrior(arch["Z"])
        K, M = arch["K"], arch["M"]
        lam = torch.tensor(arch["lambdas"])
        # log2 gain per rate point and channel; higher lambda -> finer quantization.
        init = 0.5 * torch.log2(lam / lam[K // 2])
        self.log2_gain = nn.Parameter(init[:, None].repeat(1, M).clone())
        self.register_buffer("rgb_to_ycbcr", torch.tensor(A.RGB_TO_YCBCR))
        self.register_buffer("ycbcr_to_rgb", torch.tensor(A.YCBCR_TO_RGB))

    def set_bf16(self, on=True):
        """Run the wide inner layers of g_a and g_s in bfloat16 while training
        (2-2.5x faster on CPUs with AVX512-BF16): all of g_a but its last
        convolution, all of g_s but its first and last; the latents y, the
        hyper networks, the context networks, the rates and the output stay
        float32."""
        def convs(net):
            return [i for i, m in enumerate(net) if isinstance(m, nn.Conv2d)]
        self.g_a.bf16 = (0, convs(self.g_a)[-1]) if on else None
        self.g_s.bf16 = (convs(self.g_s)[0] + 1, convs(self.g_s)[-1]) if on else None

    def to_ycbcr(self, x):
        y = torch.einsum("ij,bjhw->bihw", self.rgb_to_ycbcr, x)
        return y - torch.tensor([0.5, 0.0, 0.0], device=x.device)[None, :, None, None]

    def to_rgb(self, y):
        y = y + torch.tensor([0.5, 0.0, 0.0], device=y.device)[None, :, None, None]
        return torch.einsum("ij,bjhw->bihw", self.ycbcr_to_rgb, y)

    def gain(self, beta):
        """log2 gain (B, M) for rate parameters beta in [0, 1] (B,)."""
        K = self.arch["K"]
        t = beta.clamp(0, 1) * (K - 1)
        k = torch.clamp(t.floor().long(), max=K - 2)
        f = (t - k.float())[:, None]
        return (1 - f) * self.log2_gain[k] + f * self.log2_gain[k + 1]

    def lam(self, beta):
        lo, hi = self.arch["lambdas"][0], self.arch["lambdas"][-1]
        return lo * (hi / lo) ** beta

    def forward(self, x, beta, noise=True, rates_only=False, rdoq=None):
        """x: RGB in [0, 1], (B, 3, H, W); beta: (B,).  Returns x_hat, bits_y, bits_z
        (``rates_only``: bits_y, bits_z of :meth:`rates`; ``rdoq``: see
        :meth:`from_latents`)."""
        if rates_only:
            return self.rates(x, beta, noise)
        y = self.g_a(self.to_ycbcr(x))
        return self.from_latents(y, self.h_a(y), beta, noise, rdoq=rdoq)

    def checkerboard(self, y, mu, s, g, rounding):
        """(mu, s) at every position: the hyperprior's at the anchors
        ((row + column) even), refined from the decoded anchors elsewhere."""
        h, w = y.shape[2:]
        a = ((torch.arange(h, device=y.device)[:, None] + torch.arange(w, device=y.device)[None, :]) % 2 == 0)
        a = a.to(y.dtype)[None, None]
        y_hat_a = (mu + rounding((y - mu) * g) / g) * a
        d = self.g_ep(torch.cat([mu, s, self.g_cm(y_hat_a)], dim=1))
        dmu, ds = d.chunk(2, dim=1)
        return mu + dmu * (1 - a), s + ds * (1 - a)

    def rates(self, x, beta, noise=True):
        """(bits_y, bits_z) per picture, without the synthesis: what training
        the entropy networks alone (g_cm, g_ep) needs -- under straight-through
        rounding the reconstruction does not depend on them."""
        with torch.no_grad():
            y = self.g_a(self.to_ycbcr(x))
            z = self.h_a(y)
        return self.from_latents(y, z, beta, noise, synthesis=False)[1:]

    def from_latents(self, y, z, beta, noise=True, rounding=None, context=True, synthesis=True, rdoq=None):
        """The rest of :meth:`forward` from the latents y and z (also what an
        encoder that optimizes the latents differentiates).  ``rounding``, a
        function, replaces both the noise of the rates and the straight-through
        rounding of the reconstruction (the soft rounding of refcodec.refine).
        ``rdoq`` (B,), the encoder's rate weights: the reconstruction (and the
        context's anchors) see y rounded as the encoder rounds it
        (:func:`rdoq_round`), straight-through; without noise the rates are
        those of these values too."""
        a = self.arch
        if rdoq is not None and rounding is None:
            c = rdoq[:, None, None, None]

            def sigma_of(s):
                s_eff = torch.clamp(s + a["sigma_per_octave"] * lg, 0, a["sigma_levels"] - 1)
                return a["sigma_min"] * torch.exp2(s_eff / a["sigma_per_octave"])

            def round_y(r, s):
                return rdoq_round(r, sigma_of(s), c)
        else:
            def round_y(r, s):
                return (rounding or ste_round)(r)
        if rounding is None:
            z_hat = ste_round(z)
            z_lik_in = z + torch.empty_like(z).uniform_(-0.5, 0.5) if noise else torch.round(z)
        else:
            z_hat = z_lik_in = rounding(z)
        bits_z = -torch.log2(self.entropy_z.likelihood(z_lik_in).clamp_min(1e-9))
        params = self.h_s(z_hat)
        mu, s = params.chunk(2, dim=1)
        lg = self.gain(beta)[:, :, None, None]
        if A.has_context(a) and context:
            s_anchor = s
            mu, s = self.checkerboard(y, mu, s, torch.exp2(lg), lambda r: round_y(r, s_anchor))
        s_eff = torch.clamp(s + a["sigma_per_octave"] * lg, 0, a["sigma_levels"] - 1)
        sigma = a["sigma_min"] * torch.exp2(s_eff / a["sigma_per_octave"])
        g = torch.exp2(lg)
        r = (y - mu) * g
        if rounding is None:
            r_hat = round_y(r, s)
            r_lik_in = r + torch.empty_like(r).uniform_(-0.5, 0.5) if noise else r_hat.detach()
        else:
            r_lik_in = r_hat = rounding(r)
        bits_y = -torch.log2(gaussian_likelihood(r_lik_in, sigma).clamp_min(1e-9))
        y_hat = mu + r_hat / g
        x_hat = self.to_rgb(self.synthesis(y_hat, lg)) if synthesis else None
        return x_hat, bits_y.sum(dim=(1, 2, 3)), bits_z.sum(dim=(1, 2, 3))

    def synthesis(self, y_hat, lg):
        """g_s, then the post-filter where the architecture has one (clause
        6.5.1): x + g_pf(concat(x, r)), r = mean_c(log2 gain) / 8 as a plane;
        YCbCr out.  ``lg``: the log2 gains (B, M, 1, 1)."""
        return self.synthesis_post(self.g_s(y_hat), lg)

    def synthesis_post(self, x, lg):
        """The post-filter alone on g_s's output x (the identity without one)."""
        if not A.has_postfilter(self.arch):
            return x
        r = (lg.mean(dim=1, keepdim=True) / A.PF_RATE_DIV).expand(-1, 1, *x.shape[2:])
        return x + self.g_pf(torch.cat([x, r], dim=1))


def load_float(model, path):
    """Load exported float weights (.npz with __meta__) into a HyperpriorTorch;
    returns the file's meta.  Networks the file predates (the context
    networks g_cm, g_ep) keep their initialization.  The file is read by
    :func:`refcodec.nn.load_float` (a shipped file's g_a and h_a come from
    the model file it names)."""
    from ..nn import load_float as read_float
    _, params, meta = read_float(path)
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in params.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if not m.startswith(("rgb_to", "ycbcr_to"))]
    new = tuple(f"{n}." for n in A.nets_of(model.arch) if not any(k.startswith(f"{n}.") for k in sd))
    missing = [m for m in missing if not m.startswith(new)] if new else missing
    if missing or unexpected:
        raise SystemExit(f"{path}: missing {missing}, unexpected {unexpected}")
    return meta
