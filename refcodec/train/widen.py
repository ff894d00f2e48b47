"""Grow a trained model: ``python -m refcodec.train.widen IN.npz OUT.npz [--M 256] [--RA 1] [--postfilter-from PF.npz] [--PF 24] [--PFL 4]``.

``--postfilter-from`` adds (or replaces) the post-filter g_pf with the one of
another float file of the same model (clause 6.5.1; trained alone on the
frozen model by ``refcodec.studies.postfilter_probe --save``), or with the
dequantized one of a W16 model file (SPEC.md 8.5).

``--PF c --PFL l`` grows the post-filter to c channels and l layers
(:func:`grow_postfilter`): the new hidden channels' outgoing weights and the
new layers (identities: each follows a ReLU, so its input is ≥ 0) start so
that the filter computes exactly what it did; training then puts them to use
(``refcodec.studies.postfilter_probe --save ... --ch c --layers l``).

``--RA n`` adds n encoder-only residual blocks at each of 1/4, 1/8 and 1/16
of g_a (:func:`add_residual`): their second convolution starts at zero, so
the model computes exactly what it did.  ``--M`` widens the latent y:

The PSNR of a model at high rates is bounded by what g_s can reconstruct
from M latent channels at 1/16 of the resolution: 128 channels are 1/6 of
the pixel values, and on Kodak the reconstruction g_s(g_a(x)) of the
unquantized latents, or of latents optimized for the picture, stays below
33 dB on kodim01 however many bits are spent.  Training a wider model from
scratch costs days on CPUs; this tool grows the trained one instead.  It
writes float weights (the trainer's ``--init`` format) with M' > M latent
channels, the old channels keeping their weights and the new ones:

- g_a: new output filters drawn at GA_SPREAD of the old ones' spread: small
  latents, rounded to zero at low rates, not at high ones;
- g_s: the new input weights drawn at GS_SPREAD of the old spread (nearly
  silent, they still carry the distortion's gradient, straight through the
  rounding, to g_a's new filters);
- h_a, g_cm and g_ep's first layer: the new inputs weighted by zero;
- h_s and g_ep's last layer: the new means start at 0 (weights and bias),
  the new sigma indices at NEW_S_BIAS, an old channel's typical bias,
  weights zero;
- the gain vectors: each rate point's mean log2 gain for the new channels.

The old channels' latents and the entropy model of z are unchanged, so the
old part of the rate is unchanged too; the new part costs bits at high
rates (64 new channels on kodim01 and kodim13: +7 % at beta 0.75, +22 %
at beta 1, nothing at beta 0.25)
and adds a small perturbation until training puts it to use or prunes it.
"""

import argparse
import json

import numpy as np

from ..nn import load_float


#: Spread of the new channels' weights, relative to the old ones': g_a's new filters, g_s's new inputs.
GA_SPREAD = 0.15
GS_SPREAD = 0.3
#: The new channels' sigma index bias: an old channel's typical one.  (Two octaves lower, -16,
#: made the new latents cost nothing at first, and training kept them at zero: a nonzero value
#: was too dear under so small a sigma for the distortion's gradient to win.)
NEW_S_BIAS = 0.0


def widen(arrays, arch, M2, seed=0, ga_spread=GA_SPREAD, gs_spread=GS_SPREAD):
    """(arrays, arch) with M2 latent channels (see the module's docstring)."""
    M = arch["M"]
    if M2 <= M:
        raise ValueError(f"--M {M2}: the model has {M} latent channels already")
    rng = np.random.default_rng(seed)
    a = {k: v.copy() for k, v in arrays.items()}
    d = M2 - M

    def rows(w, new):            # append rows (output channels) to w
        return np.concatenate([w, new.astype(w.dtype)], axis=0)

    def cols(w, new, at):        # insert input channels into w at index at
        return np.concatenate([w[:, :at], new.astype(w.dtype), w[:, at:]], axis=1)

    def conv(net, which):        # parameter prefix of a network's first or last convolution
        i = [k for k, layer in enumerate(arch[net]) if layer[0] == "conv"][which]
        return f"{net}.{i}"

    ga, gs = conv("g_a", -1), conv("g_s", 0)
    w = a[ga + ".weight"]
    a[ga + ".weight"] = rows(w, rng.normal(0, ga_spread * w.std(), (d,) + w.shape[1:]))
    a[ga + ".bias"] = rows(a[ga + ".bias"], np.zeros(d))
    w = a[gs + ".weight"]
    a[gs + ".weight"] = cols(w, rng.normal(0, gs_spread * w.std(), (w.shape[0], d) + w.shape[2:]), M)

    def zero_inputs(prefix, at):
        w = a[prefix + ".weight"]
        a[prefix + ".weight"] = cols(w, np.zeros((w.shape[0], d) + w.shape[2:]), at)

    def mean_scale_out(prefix, s_bias):  # a last layer whose 2M outputs are M means then M sigma indices
        w, b = a[prefix + ".weight"], a[prefix + ".bias"]
        zw = np.zeros((d,) + w.shape[1:], w.dtype)
        a[prefix + ".weight"] = np.concatenate([w[:M], zw, w[M:], zw], axis=0)
        a[prefix + ".bias"] = np.concatenate([b[:M], np.zeros(d, b.dtype), b[M:], np.full(d, s_bias, b.dtype)])

    zero_inputs(conv("h_a", 0), M)
    mean_scale_out(conv("h_s", -1), NEW_S_BIAS)
    if "g_cm" in arch:
        zero_inputs(conv("g_cm", 0), M)
        ep = conv("g_ep", 0)                 # inputs: M means, M sigma indices, C context features
        zero_inputs(ep, 2 * M)               # the new sigma indices' inputs, then the new means'
        zero_inputs(ep, M)
        mean_scale_out(conv("g_ep", -1), 0.0)   # corrections: the new ones start at zero
    g = a["log2_gain"]
    a["log2_gain"] = np.concatenate([g, np.repeat(g.mean(axis=1, keepdims=True), d, axis=1)], axis=1)

    if any(layer[0] == "res" for layer in arch["g_a"]):
        raise ValueError("widen the latents before adding residual blocks to g_a")
    return a, _remake(arch, M=M2)


def _remake(arch, **change):
    """make_arch() of ``arch``'s widths with ``change`` applied; the entropy
    model's constants are kept from ``arch``."""
    from .. import arch as A
    kw = dict(N=arch["N"], M=arch["M"], Z=arch["Z"], NH=arch["NH"], K=arch["K"], C=arch.get("C", 0),
              NE=arch.get("NE", 320), RA=sum(1 for layer in arch["g_a"] if layer[0] == "res") // 3)
    kw.update(change)
    arch2 = A.make_arch(**kw)
    for k in ("sigma_min", "sigma_per_octave", "sigma_levels", "lambdas"):
        arch2[k] = arch[k]
    return arch2


def add_residual(arrays, arch, RA, seed=0):
    """(arrays, arch) with RA residual blocks at each scale of g_a (none before).

    The blocks' first convolution is drawn as PyTorch draws it, their second
    is zero: g_a computes what it did until training puts them to use.  The
    other layers of g_a keep their weights under their new indices."""
    if any(layer[0] == "res" for layer in arch["g_a"]):
        raise ValueError("g_a has residual blocks already")
    arch2 = _remake(arch, RA=RA)
    rng = np.random.default_rng(seed)
    a = {k: v for k, v in arrays.items() if not k.startswith("g_a.")}
    old = [i for i, layer in enumerate(arch["g_a"])]
    new = [i for i, layer in enumerate(arch2["g_a"]) if layer[0] != "res"]
    assert len(old) == len(new)
    for i, j in zip(old, new):
        for k, v in arrays.items():
            if k.startswith(f"g_a.{i}."):
                a[f"g_a.{j}." + k[len(f"g_a.{i}."):]] = v
    for j, layer in enumerate(arch2["g_a"]):
        if layer[0] == "res":
            _, ch, mid, k = layer
            bound = 1 / np.sqrt(ch * k * k)          # PyTorch's default (kaiming_uniform, a = sqrt 5)
            a[f"g_a.{j}.conv1.weight"] = rng.uniform(-bound, bound, (mid, ch, k, k)).astype(np.float32)
            a[f"g_a.{j}.conv1.bias"] = rng.uniform(-bound, bound, mid).astype(np.float32)
            a[f"g_a.{j}.conv2.weight"] = np.zeros((ch, mid, k, k), np.float32)
            a[f"g_a.{j}.conv2.bias"] = np.zeros(ch, np.float32)
    return a, arch2


#: Spread of a grown post-filter's new input weights, relative to the old ones'.
PF_SPREAD = 0.3


def grow_postfilter(arrays, arch, PF2=None, PFL2=None, seed=0, spread=PF_SPREAD):
    """(arrays, arch) with the post-filter g_pf grown to PF2 channels and PFL2
    layers (neither fewer than it has; None keeps the number).

    Each old convolution keeps its weights in its first rows and columns.  A
    new hidden channel gets incoming weights drawn at ``spread`` of the old
    ones' spread and a zero bias, and zero weights into the next layer.  New
    layers go before the last convolution: PF2 -> PF2 identities (centre tap
    1, bias 0) followed by a ReLU; their input is a ReLU's output, so they
    pass it unchanged.  The grown filter computes what the old one did."""
    from .. import arch as A
    if "g_pf" not in arch:
        raise ValueError("the model has no post-filter g_pf to grow")
    convs = [i for i, layer in enumerate(arch["g_pf"]) if layer[0] == "conv"]
    PF, PFL = arch["PF"], len(convs)
    PF2, PFL2 = PF2 or PF, PFL2 or PFL
    if PF2 < PF or PFL2 < PFL:
        raise ValueError(f"--PF {PF2} --PFL {PFL2}: the post-filter has {PF} channels and {PFL} layers already")
    arch2 = {**arch, **{k: v for k, v in A.with_postfilter(arch, PF=PF2, PFL=PFL2).items()
                        if k in ("version", "PF", "g_pf")}}
    convs2 = [i for i, layer in enumerate(arch2["g_pf"]) if layer[0] == "conv"]
    rng = np.random.default_rng(seed)
    a = {k: v for k, v in arrays.items() if not k.startswith("g_pf.")}
    # old layer j -> new layer j (j < PFL - 1); the old last layer -> the new last
    where = {convs[j]: convs2[j] for j in range(PFL - 1)}
    where[convs[-1]] = convs2[-1]
    for i, i2 in where.items():
        w, b = arrays[f"g_pf.{i}.weight"], arrays[f"g_pf.{i}.bias"]
        cout = 3 if i == convs[-1] else PF2
        cin = 4 if i == convs[0] else PF2
        w2 = np.zeros((cout, cin) + w.shape[2:], w.dtype)
        w2[:w.shape[0], :w.shape[1]] = w
        if cout > w.shape[0]:                      # new hidden channels: drawn inputs, silent outputs
            w2[w.shape[0]:] = rng.normal(0, spread * w.std(), w2[w.shape[0]:].shape)
        b2 = np.zeros(cout, b.dtype)
        b2[:b.shape[0]] = b
        a[f"g_pf.{i2}.weight"], a[f"g_pf.{i2}.bias"] = w2, b2
    k = arch2["g_pf"][convs2[0]][3]
    for i2 in convs2[PFL - 1:-1]:                  # the new layers: identities
        w2 = np.zeros((PF2, PF2, k, k), np.float32)
        w2[np.arange(PF2), np.arange(PF2), k // 2, k // 2] = 1
        a[f"g_pf.{i2}.weight"], a[f"g_pf.{i2}.bias"] = w2, np.zeros(PF2, np.float32)
    return a, arch2


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.train.widen", description=__doc__.split("\n")[0])
    p.add_argument("src", help="float weights (.npz, as the trainer exports them)")
    p.add_argument("dst")
    p.add_argument("--M", type=int, default=None, help="the new number of latent channels")
    p.add_argument("--RA", type=int, default=0,
                   help="add this many residual blocks at each scale of g_a (encoder only; identity at first)")
    p.add_argument("--ga-spread", type=float, default=GA_SPREAD,
                   help="spread of g_a's new filters relative to the old ones' (default %(default)s)")
    p.add_argument("--gs-spread", type=float, default=GS_SPREAD,
                   help="spread of g_s's new input weights relative to the old ones' (default %(default)s)")
    p.add_argument("--PF", type=int, default=None,
                   help="grow the post-filter g_pf to this many channels (it computes what it did)")
    p.add_argument("--PFL", type=int, default=None,
                   help="grow the post-filter g_pf to this many layers (identities inserted before its last)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--postfilter-from", default=None, metavar="FLOAT.npz",
                   help="take the post-filter g_pf (SPEC.md clause 6.5.1) and its widths from these float "
                        "weights (e.g. a filter trained alone by refcodec.studies.postfilter_probe --save) "
                        "or from a W16 model file (its weights dequantized, SPEC.md 8.5)")
    args = p.parse_args(argv)
    _, arrays, meta = load_float(args.src)       # a shipped file's g_a, h_a from its model file
    meta.pop("encoder_from", None)
    if args.M is None and not args.RA and not args.postfilter_from and args.PF is None and args.PFL is None:
        p.error("nothing to do: give --M, --RA, --postfilter-from, --PF, --PFL")
    a, arch = arrays, meta["arch"]
    if args.M is not None:
        a, arch = widen(a, arch, args.M, args.seed, args.ga_spread, args.gs_spread)
    if args.RA:
        a, arch = add_residual(a, arch, args.RA, args.seed)
    if args.postfilter_from:
        pf_arch, pf, _ = load_float(args.postfilter_from)    # float weights or a W16 model file
        if "g_pf" not in pf_arch:
            p.error(f"{args.postfilter_from} has no post-filter g_pf")
        a = {**{k: v for k, v in a.items() if not k.startswith("g_pf.")},
             **{k: v for k, v in pf.items() if k.startswith("g_pf.")}}
        arch = {**arch, "version": 4, "PF": pf_arch["PF"], "g_pf": pf_arch["g_pf"]}
    if args.PF is not None or args.PFL is not None:
        try:
            a, arch = grow_postfilter(a, arch, args.PF, args.PFL, args.seed)
        except ValueError as e:
            p.error(f"{args.src}: {e}")
    meta = dict(meta, arch=arch, widened_from=meta["arch"]["M"], kodak_score=float("inf"))
    np.savez_compressed(args.dst, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **a)
    print(f"{args.src} (M={meta['widened_from']}) -> {args.dst} (M={arch['M']}, RA={args.RA}"
          f"{', PF=%d' % arch['PF'] if 'PF' in arch else ''}), step {meta.get('step', 0)}")


if __name__ == "__main__":
    main()
