"""Float networks in plain numpy, built from the layer lists of refcodec.arch.

Used by the encoder (g_a, h_a: not normative) and as the float reference of
the decoder networks (g_s, h_s), which measures what quantization costs.
Layout: channels-last ``x[row, column, channel]``, one image at a time,
float32.  The numerics follow PyTorch's definitions of the same layers
(``refcodec.train.nets``); a test checks they agree within 1e-4.

Parameters are looked up by the names the trainer gives them
(``{net}.{index}.weight`` ...), so one float weight file feeds both.
"""

import json

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import arch as A


#: Largest im2col block (bytes) and GDN block (rows) the float layers build at
#: once: a 4K encode then peaks near 1.5 GB instead of 5 GB.
IM2COL_BYTES = 64 << 20
GDN_ROWS = 1 << 18


def load_float(path):
    """(arch, params, meta) of a float weight file (the trainer's export).

    A file whose meta has ``encoder_from`` (a shipped ``vK-float.npz``,
    written by ``refcodec.export --float``) holds no g_a and h_a: they are
    the float encoder weights of the model file it names, beside it, taken
    from there (:func:`refcodec.model.encoder_of`; exact float32 copies)."""
    data = np.load(path)
    meta = json.loads(bytes(data["__meta__"]).decode())
    params = {k: data[k] for k in data.files if k != "__meta__"}
    if "encoder_from" in meta:
        from .model import encoder_of
        params.update(encoder_of(meta["encoder_from"], path))
    arch = meta["arch"]
    for net in A.nets_of(arch):
        arch[net] = [tuple(layer) for layer in arch[net]]
    return arch, params, meta


def conv2d_float(x, w, b, stride=1):
    """x (H, W, Cin) float32; w (Cout, Cin, k, k) as PyTorch stores it; zero padding k//2.

    im2col + one matrix product per block of output rows (at most
    IM2COL_BYTES of columns at a time)."""
    cout, cin, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))
    win = sliding_window_view(xp, (k, k), axis=(0, 1))[::stride, ::stride]   # (Ho, Wo, Cin, k, k)
    ho, wo = win.shape[:2]
    wt = w.reshape(cout, cin * k * k).T.astype(np.float32)
    out = np.empty((ho, wo, cout), np.float32)
    rows = max(1, IM2COL_BYTES // max(1, wo * cin * k * k * 4))
    for r in range(0, ho, rows):
        blk = win[r:r + rows]
        o = blk.reshape(-1, cin * k * k) @ wt
        if b is not None:
            o += b.astype(np.float32)
        out[r:r + rows] = o.reshape(blk.shape[0], wo, cout)
    return out


def depth_to_space_float(x, r):
    h, w, crr = x.shape
    c = crr // (r * r)
    return x.reshape(h, w, c, r, r).transpose(0, 3, 1, 4, 2).reshape(h * r, w * r, c)


def gdn_params(params, name):
    beta = params[f"{name}.beta_p"].astype(np.float64) ** 2 + 1e-6
    gamma = params[f"{name}.gamma_p"].astype(np.float64) ** 2
    return beta.astype(np.float32), gamma.astype(np.float32)


def run_float(layers, params, prefix, x, start=0):
    """Apply the layer list ``layers`` (named ``prefix.{start + i}``) to x (H, W, C)."""
    x = x.astype(np.float32)
    for i, layer in enumerate(layers):
        op = layer[0]
        name = f"{prefix}.{start + i}"
        if op == "conv":
            x = conv2d_float(x, params[f"{name}.weight"], params[f"{name}.bias"], stride=layer[4])
        elif op in ("gdn", "igdn"):
            beta, gamma = gdn_params(params, name)
            flat = x.reshape(-1, x.shape[-1])           # 2-D GEMMs over blocks of GDN_ROWS pixels
            out = np.empty_like(flat)
            for r in range(0, flat.shape[0], GDN_ROWS):
                f = flat[r:r + GDN_ROWS]
                if op == "gdn":
                    out[r:r + GDN_ROWS] = f / np.sqrt((f * f) @ gamma.T + beta)
                else:
                    out[r:r + GDN_ROWS] = f * (np.abs(f) @ gamma.T + beta)
            x = out.reshape(x.shape)
        elif op == "d2s":
            x = depth_to_space_float(x, layer[1])
        elif op == "relu":
            x = np.maximum(x, 0)
        elif op == "res":
            t = np.maximum(conv2d_float(x, params[f"{name}.conv1.weight"], params[f"{name}.conv1.bias"]), 0)
            x = x + conv2d_float(t, params[f"{name}.conv2.weight"], params[f"{name}.conv2.bias"])
        else:
            raise ValueError(f"unknown layer op {op!r}")
    return x


def softplus(x):
    return np.logaddexp(0, x)


def factorized_logits_cdf(params, v, prefix="entropy_z"):
    """The learned CDF logits of the factorized prior at values v, per channel.

    v: (C, L) float64.  Mirrors ``FactorizedPrior.logits_cdf``.
    """
    x = v[:, None, :].astype(np.float64)
    i = 0
    while f"{prefix}.mats.{i}" in params:
        mat = params[f"{prefix}.mats.{i}"].astype(np.float64)
        x = np.matmul(softplus(mat), x) + params[f"{prefix}.biases.{i}"].astype(np.float64)
        if f"{prefix}.factors.{i}" in params:
            x = x + np.tanh(params[f"{prefix}.factors.{i}"].astype(np.float64)) * np.tanh(x)
        i += 1
    return x[:, 0, :]


def sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))
