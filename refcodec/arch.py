"""The refcodec network architecture, described once as data.

Both the numpy runtime (``refcodec.model``) and the PyTorch trainer
(``refcodec.train``) build their networks from :data:`ARCH`, so the two can
never disagree about layer order, shapes or padding.

Dataflow (mean-scale hyperprior, Minnen et al. 2018, with a gain unit)::

    x (RGB) -> YCbCr --g_a--> y --h_a--> z --Q--> z_hat
                                                   |
                                  h_s (integer) <--+
                                    |
                                 mu, s (sigma index, fixed point)
    q = round((y - mu) * gain(beta))          coded with N(0, sigma(s) * gain)
    y_hat = mu + q / gain(beta)
    y_hat --g_s (integer)--> YCbCr --integer colour transform--> RGB (8 bit)

With the checkerboard context tool (He et al. 2021), the latent positions
with (row + column) even -- the anchors -- are coded first with the
hyperprior's (mu, s); every other position then gets its (mu, s) refined from
the decoded anchors around it::

    c        = g_cm(y_hat * anchor_mask)                 5x5 convolution
    mu', s'  = (mu, s) + g_ep(concat(mu, s, c))          1x1 convolutions

With the post-filter tool (an architecture with ``PF`` channels), a small
residual network runs on g_s's output at the picture's own resolution, told
the rate by a fourth input plane r = mean_c(log2 gain) / 8 (the quality map's
Q / 32 added per block)::

    x' = x + g_pf(concat(x, r))                           3x3 convolutions, ReLU

``g_a`` and ``h_a`` are float and run only in the encoder.  ``h_s`` and
``g_s`` use only operations with an exact integer form: stride-1 zero-padded
convolution, depth-to-space (sub-pixel upsampling), ReLU and the simplified
inverse GDN ``x * (beta + gamma @ |x|)``.

A layer is a tuple whose first item names the operation:

=====================================  ==========================================
``("conv", cin, cout, k, stride)``     2-D convolution, zero padding ``k // 2``
``("gdn", ch)``                        GDN (encoder only, float)
``("igdn", ch)``                       simplified inverse GDN, ``x*(b + G|x|)``
``("d2s", r)``                         depth-to-space, PyTorch ``PixelShuffle``
                                       channel order
``("relu",)``                          ReLU
``("res", ch, mid, k)``                residual block ``x + conv(relu(conv(x)))``,
                                       ch -> mid -> ch channels, k x k, stride 1
                                       (encoder only, float)
=====================================  ==========================================
"""

import math

#: Version of the architecture description; part of every model file.
#: Version 2 adds the checkerboard context networks g_cm and g_ep; version 3
#: the encoder-only residual blocks of g_a (``RA``; a version-2 description is
#: a version-3 one with ``RA = 0``, and make_arch still writes 2 for it);
#: version 4 the post-filter g_pf (``PF``; make_arch writes 4 only for it).
ARCH_VERSION = 4


def make_arch(N=96, M=128, Z=64, NH=96, K=5, C=128, NE=320, RA=0, PF=0, PFL=3):
    """Return the architecture description for channel widths N, M, Z, NH.

    N  -- feature channels of g_a / g_s
    M  -- channels of the latent y
    Z  -- channels of the hyper-latent z
    NH -- feature channels of h_s
    K  -- number of trained rate points (gain vectors) spanned by beta
    C  -- channels of the checkerboard context g_cm (0: no context networks)
    NE -- feature channels of the entropy-parameter network g_ep
    RA -- residual blocks of g_a at each of 1/4, 1/8 and 1/16 of the
          resolution (a stronger analysis; encoder only, so free for the decoder)
    """
    g_a = [
        ("conv", 3, N, 5, 2), ("gdn", N),
        ("conv", N, N, 5, 2), ("gdn", N),
        *[("res", N, N // 2, 3)] * RA,
        ("conv", N, N, 5, 2), ("gdn", N),
        *[("res", N, N // 2, 3)] * RA,
        ("conv", N, M, 5, 2),
        *[("res", M, M // 2, 3)] * RA,
    ]
    h_a = [
        ("conv", M, NH, 3, 1), ("relu",),
        ("conv", NH, NH, 5, 2), ("relu",),
        ("conv", NH, Z, 5, 2),
    ]
    # h_s outputs 2M channels: M means (mu) then M sigma indices (s).
    h_s = [
        ("conv", Z, 4 * NH, 3, 1), ("d2s", 2), ("relu",),
        ("conv", NH, 4 * NH, 3, 1), ("d2s", 2), ("relu",),
        ("conv", NH, 2 * M, 3, 1),
    ]
    g_s = [
        ("conv", M, 4 * N, 3, 1), ("d2s", 2), ("igdn", N),
        ("conv", N, 4 * N, 3, 1), ("d2s", 2), ("igdn", N),
        ("conv", N, 4 * N, 3, 1), ("d2s", 2), ("igdn", N),
        ("conv", N, 4 * 3, 3, 1), ("d2s", 2),
    ]
    # g_ep outputs 2M channels: corrections of mu then of s at the non-anchors.
    g_cm = [("conv", M, C, 5, 1)]
    g_ep = [
        ("conv", 2 * M + C, NE, 1, 1), ("relu",),
        ("conv", NE, NE, 1, 1), ("relu",),
        ("conv", NE, 2 * M, 1, 1),
    ]
    g_pf = []
    for i in range(PFL):
        g_pf.append(("conv", 4 if i == 0 else PF, 3 if i == PFL - 1 else PF, 3, 1))
        if i < PFL - 1:
            g_pf.append(("relu",))
    out = {
        "version": 4 if PF else 3 if RA else 2,
        "N": N, "M": M, "Z": Z, "NH": NH, "K": K,
        "g_a": g_a, "h_a": h_a, "h_s": h_s, "g_s": g_s,
        # Entropy model of y: a discretized Gaussian whose sigma is read
        # from a log-uniform table, sigma_k = SIGMA_MIN * 2**(k / SIGMA_PER_OCTAVE).
        "sigma_min": SIGMA_MIN,
        "sigma_per_octave": SIGMA_PER_OCTAVE,
        "sigma_levels": SIGMA_LEVELS,
        # Rate points: lambda_k log-spaced between LAMBDA_MIN and LAMBDA_MAX.
        "lambdas": [LAMBDA_MIN * (LAMBDA_MAX / LAMBDA_MIN) ** (k / (K - 1)) for k in range(K)],
    }
    if C:
        out.update(C=C, NE=NE, g_cm=g_cm, g_ep=g_ep)
    if PF:
        out.update(PF=PF, g_pf=g_pf)
    return out


def with_postfilter(arch, PF=16, PFL=3):
    """``arch`` with a post-filter of PF channels and PFL layers added
    (version 4); every other network unchanged."""
    pf = make_arch(M=arch["M"], PF=PF, PFL=PFL)
    return {**arch, "version": 4, "PF": PF, "g_pf": pf["g_pf"]}


#: The networks of an architecture, in dataflow order (g_cm and g_ep only
#: where the architecture has the context tool, g_pf only with the post-filter).
NETS = ("g_a", "h_a", "h_s", "g_cm", "g_ep", "g_s", "g_pf")


def nets_of(arch):
    return [n for n in NETS if n in arch]


def has_context(arch):
    return "g_cm" in arch


def has_postfilter(arch):
    return "g_pf" in arch


#: The post-filter's rate plane: r = mean_c(log2 gain) / PF_RATE_DIV.
PF_RATE_DIV = 8


#: Smallest tabulated sigma of the y entropy model.
SIGMA_MIN = 0.11
#: Sigma table resolution: 8 levels per octave, so a quality-map step of
#: 2^(1/4) is exactly 2 table levels.
SIGMA_PER_OCTAVE = 8
#: Number of sigma levels; the largest is 0.11 * 2**(79/8) ~ 103.
SIGMA_LEVELS = 80
#: Distortion weights (MSE on RGB in [0, 255] scaled as in CompressAI, i.e.
#: loss = R + lambda * 255**2 * MSE(x in [0, 1])) at beta = 0 and beta = 1.
LAMBDA_MIN = 0.00002
LAMBDA_MAX = 0.13

#: BT.709 RGB -> YCbCr (full range, float).  Rows Y, Cb, Cr.
KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB
RGB_TO_YCBCR = [
    [KR, KG, KB],
    [-KR / (2 * (1 - KB)), -KG / (2 * (1 - KB)), 0.5],
    [0.5, -KG / (2 * (1 - KR)), -KB / (2 * (1 - KR))],
]
YCBCR_TO_RGB = [
    [1.0, 0.0, 2 * (1 - KR)],
    [1.0, -2 * KB * (1 - KB) / KG, -2 * KR * (1 - KR) / KG],
    [1.0, 2 * (1 - KB), 0.0],
]

#: Default architecture of the shipped model.
ARCH = make_arch()


def sigma_of_index(s):
    """Float sigma for a (possibly fractional) sigma index s."""
    return SIGMA_MIN * 2.0 ** (s / SIGMA_PER_OCTAVE)


def index_of_sigma(sigma):
    """Inverse of :func:`sigma_of_index`."""
    return SIGMA_PER_OCTAVE * math.log2(sigma / SIGMA_MIN)


def layer_macs(layers, h, w):
    """Multiply-accumulates per output of ``layers`` applied at input size h x w.

    Returns (total MACs, output height, output width).
    """
    total = 0
    for layer in layers:
        op = layer[0]
        if op == "conv":
            _, cin, cout, k, stride = layer
            h, w = -(-h // stride), -(-w // stride)
            total += cin * cout * k * k * h * w
        elif op == "d2s":
            h, w = h * layer[1], w * layer[1]
        elif op in ("gdn", "igdn"):
            total += layer[1] * layer[1] * h * w
        elif op == "res":
            _, ch, mid, k = layer
            total += 2 * ch * mid * k * k * h * w
    return total, h, w


#: Where each network runs, as the side of its input grid relative to the
#: picture's (h_s reads z at 1/64, the others y or its features at 1/16).
NET_INPUT_SCALE = {"g_a": 1, "h_a": 16, "h_s": 64, "g_cm": 16, "g_ep": 16, "g_s": 16, "g_pf": 1}


def macs_per_pixel(arch):
    """{network: multiply-accumulates per picture pixel} of every network of
    ``arch`` (GDN and IGDN counted as their 1 x 1 matrix products), on a
    1024 x 1024 picture, a multiple of every grid, so no edge rounds."""
    side = 1024
    out = {}
    for net in nets_of(arch):
        n = side // NET_INPUT_SCALE[net]
        out[net] = layer_macs(arch[net], n, n)[0] / side ** 2
    return out


#: The networks the decoder runs (the integer decoder's MAC budget).
DECODER_NETS = ("h_s", "g_cm", "g_ep", "g_s", "g_pf")


def receptive_radius(layers):
    """How far (in input samples, each way) an output of ``layers`` sees."""
    radius, step = 0, 1
    for layer in layers:
        if layer[0] == "conv":
            radius += (layer[3] // 2) * step
            step *= layer[4]
        elif layer[0] == "res":
            radius += 2 * (layer[3] // 2) * step
        elif layer[0] == "d2s":
            step /= layer[1]
    return radius
