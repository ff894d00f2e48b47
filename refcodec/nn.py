"""Float networks in plain numpy, built from the layer lists of refcodec.arch.

Used by the encoder (g_a, h_a: not normative) and as the float reference of
the decoder networks (g_s, h_s), which measures what quantization costs.
Layout: channels-last ``x[row, column, channel]``, one image at a time,
float32.  The numerics follow PyTorch's definitions of the same layers
(``refcodec.train.nets``); a test checks they agree within 1e-4.

Parameters are looked up by the names the trainer gives them
(``{net}.{index}.weight`` ...), so one float weight file feeds both.
"""

import hashlib
import json
import os

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import arch as A
from .errors import ModelError


#: Largest im2col block (bytes) and GDN block (rows) the float layers build at
#: once: a 4K encode then peaks near 1.5 GB instead of 5 GB.
IM2COL_BYTES = 64 << 20
GDN_ROWS = 1 << 18
#: A model file's members for the trainer alone (SPEC.md clause 8.5), which decoders skip.
TRAIN_PREFIX = "train."


def load_float(path):
    """(arch, params, meta) of a float weight file (the trainer's export).

    A file whose meta has ``encoder_from`` (a shipped ``vK-float.npz``,
    written by ``refcodec.export --float``) holds no g_a and h_a: they are
    the float encoder weights of the model file it names, beside it, taken
    from there (:func:`refcodec.model.encoder_of`; exact float32 copies).
    A W16 model file gives its weights back dequantized
    (:func:`dequantize`)."""
    data = np.load(path)
    if "__header__" in data.files:
        from .model import load
        arch, params, meta = dequantize(load(path))
        for net in A.nets_of(arch):
            arch[net] = [tuple(layer) for layer in arch[net]]
        return arch, params, meta
    meta = json.loads(bytes(data["__meta__"]).decode())
    params = {k: data[k] for k in data.files if k != "__meta__"}
    if "encoder_from" in meta:
        from .model import encoder_of
        params.update(encoder_of(meta["encoder_from"], path))
    arch = meta["arch"]
    for net in A.nets_of(arch):
        arch[net] = [tuple(layer) for layer in arch[net]]
    return arch, params, meta


def read_arch(path):
    """The architecture (JSON, as stored) of float weights (``__meta__``) or
    of a model file (``__header__``), without reading the weights: what
    builds the network that :func:`load_float`'s weights go into."""
    with np.load(path) as data:
        key = "__meta__" if "__meta__" in data.files else "__header__"
        return json.loads(bytes(data[key]).decode())["arch"]


def dequantize(model):
    """(arch, params, meta): the float weights of a W16 model file, the
    inverse of :func:`refcodec.export.integerize` -- what the trainer
    resumes from and what refinement and the float studies read when no
    ``vK-float.npz`` ships.  float32 out; the int16 weights and int32
    biases are exact in float64 before that.

    Each conv weight is ``w_q * 2^-s_c`` with ``s_c = r_c - p_in + p_out[c]``
    (and the per-input-channel scaling of g_ep's first layer undone), each
    bias ``b_q * 2^-(s_c + p_in)``; IGDN's gamma and beta likewise (their
    square roots are the trainer's parameters; an entry that rounded to 0
    gets a quarter of its step, which rounds to 0 again, so that its
    gradient is not 0); the gains ``gain_log2_fp / 2^16``.  g_a and h_a are
    the file's float32 encoder weights, the density of z its ``train.*``
    members.  Exporting the result again gives the same integer weights
    (biases within their float32 rounding).  W8 files are refused: their
    weights lost too much to train on."""
    path = model.path
    if model.weight_bits != 16:
        raise ModelError(f"{path}: a W{model.weight_bits} model file; float weights come back only from a W16 "
                         "export (the W16 file beside it)")
    npz = model._npz
    train = {k[len(TRAIN_PREFIX):]: np.asarray(npz[k], np.float32) for k in npz.files
             if k.startswith(TRAIN_PREFIX)}
    if not train:
        raise ModelError(f"{path}: holds no train.* members (the density of z), so its float weights cannot be "
                         "recovered; it was exported before they were written: use the vK-float.npz file that "
                         "ships with it")
    params = {k: np.asarray(v, np.float32) for k, v in model.enc.items()}
    params.update(train)
    for net, ops in model.header["nets"].items():
        for op in ops:
            i = op.get("index")
            if op["op"] == "conv":
                wq, bq, r = (np.asarray(npz[f"{net}.{i}.{k}"]) for k in ("w", "b", "shift"))
                p_out = np.asarray(op["p_out"], np.int64)
                if isinstance(op["p_in"], list):
                    p_list = np.asarray(op["p_in"], np.int64)
                    P, undo = int(p_list.max()), 2.0 ** (p_list.max() - p_list)
                else:
                    P, undo = int(op["p_in"]), np.ones(wq.shape[3])
                s = r.astype(np.int64) - P + p_out
                w = wq.astype(np.float64) * 2.0 ** -s[:, None, None, None] / undo[None, None, None, :]
                params[f"{net}.{i}.weight"] = np.ascontiguousarray(np.transpose(w, (0, 3, 1, 2))).astype(np.float32)
                params[f"{net}.{i}.bias"] = (bq.astype(np.float64) * 2.0 ** -(s + P)).astype(np.float32)
            elif op["op"] == "igdn":
                gq, bq, r_n = (np.asarray(npz[f"{net}.{i}.{k}"]) for k in ("gamma", "beta", "r_n"))
                s = r_n.astype(np.int64) - int(op["p_in"]) + int(op["p_n"])
                step = 2.0 ** -s[:, None]
                gamma = np.where(gq[:, 0, 0, :] > 0, gq[:, 0, 0, :] * step, step / 4)
                beta = bq.astype(np.float64) * 2.0 ** -(s + int(op["p_in"])) - 1e-6
                beta = np.maximum(beta, 2.0 ** -(s + int(op["p_in"])) / 4)
                params[f"{net}.{i}.gamma_p"] = np.sqrt(gamma).astype(np.float32)
                params[f"{net}.{i}.beta_p"] = np.sqrt(beta).astype(np.float32)
    params["log2_gain"] = (model.gain_log2_fp.astype(np.float64) / 65536).astype(np.float32)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    arch = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.arch.items()}
    meta = {"arch": json.loads(json.dumps(arch)), "step": model.header.get("train_step"),
            "dequantized_from": {"file": os.path.basename(path), "sha256": digest}}
    return meta["arch"], params, meta


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
