"""Post-training quantization of the decoder networks (h_s, g_s) to integers.

The integer convention of SPEC.md clause 7: every tensor between layers is
int16 with a fixed number of fractional bits ``p`` (its *precision*: value =
integer / 2^p); weights are int16 (W16) or int8 (W8) with a power-of-two
scale ``2^s_c`` per output channel; biases are int32 at accumulator scale
``2^(s_c + p_in)``; each output channel is requantized by an arithmetic
right shift ``r_c = s_c + p_in - p_out[c]`` with rounding half up.

Each channel's ``s_c`` is the largest that keeps (a) the weights inside their
integer range and (b) the accumulator provably inside int32 for every input
the layer can receive (clause 7.1):

    max_x |sum w_q x| + |b_q| + 2^(r - 1) <= 2^31 - 1

with x ranging over the integer interval [in_lo, in_hi] that the previous
layer's clamp guarantees.
"""

import math

import numpy as np

from .errors import ModelError

INT31 = 2 ** 31 - 1


def input_bound(wq, in_lo, in_hi):
    """max over x in [in_lo, in_hi]^n of |sum w x|, per output channel (exact ints).

    wq: (Cout, ...) integer array.
    """
    w = wq.astype(np.int64).reshape(wq.shape[0], -1)
    pos = np.where(w > 0, w, 0).sum(1)
    neg = np.where(w < 0, w, 0).sum(1)           # <= 0
    hi_acc = pos * in_hi + neg * in_lo           # largest possible sum
    lo_acc = pos * in_lo + neg * in_hi           # smallest possible sum
    return np.maximum(np.abs(hi_acc), np.abs(lo_acc))


def layer_bound(wq, bq, shift, in_lo, in_hi):
    """Per-channel worst-case |acc| + rounding offset (Python ints)."""
    ib = input_bound(wq, in_lo, in_hi)
    out = []
    for c in range(wq.shape[0]):
        r = int(shift[c])
        out.append(int(ib[c]) + abs(int(bq[c])) + ((1 << (r - 1)) if r > 0 else 0))
    return out


def quantize_conv(name, w, b, p_in, p_out, in_lo, in_hi, weight_bits=16):
    """Quantize one convolution.

    w: float (Cout, Cin, k, k) (PyTorch layout); b: float (Cout,);
    p_in: input precision; p_out: (Cout,) output precisions.
    Returns int weights (Cout, k, k, Cin), int32 bias, int32 shifts.
    """
    cout = w.shape[0]
    wl = np.ascontiguousarray(np.transpose(w, (0, 2, 3, 1))).astype(np.float64)
    b = np.zeros(cout) if b is None else b.astype(np.float64)
    qmax = (1 << (weight_bits - 1)) - 1
    wdtype = np.int16 if weight_bits > 8 else np.int8
    wq = np.zeros(wl.shape, wdtype)
    bq = np.zeros(cout, np.int32)
    shift = np.zeros(cout, np.int32)
    for c in range(cout):
        wc = wl[c]
        amax = float(np.abs(wc).max())
        s = 30 if amax == 0 else min(30, int(math.floor(math.log2(qmax / amax))))
        s_min = int(p_out[c]) - p_in            # r >= 0
        while True:
            if s < s_min:
                raise ModelError(f"layer {name}: output channel {c} cannot meet the no-overflow bound at "
                                 f"input precision {p_in} and output precision {p_out[c]}")
            r = s + p_in - int(p_out[c])
            if r > 31:
                s -= 1
                continue
            q = np.clip(np.round(wc * 2.0 ** s), -qmax - 1, qmax).astype(np.int64)
            bias = int(round(b[c] * 2.0 ** (s + p_in)))
            bound = int(input_bound(q[None], in_lo, in_hi)[0]) + abs(bias) + ((1 << (r - 1)) if r > 0 else 0)
            if bound <= INT31 and abs(bias) <= INT31:
                break
            s -= 1
        wq[c] = q.astype(wdtype)
        bq[c] = bias
        shift[c] = r
    return wq, bq, shift


def max_output_precision(w, p_in, weight_bits=16):
    """Per output channel, the largest output precision the weights allow
    (r = s + p_in - p_out >= 0 with s the largest weight scale that keeps the
    channel's weights inside their integer range)."""
    qmax = (1 << (weight_bits - 1)) - 1
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float64)
    s = np.where(amax > 0, np.floor(np.log2(qmax / np.maximum(amax, 1e-30))), 30)
    return (np.minimum(s, 30) + p_in).astype(np.int64)


def precision_for(amax, bits=16, headroom=1.0):
    """Largest p with amax * headroom * 2^p <= 2^(bits-1) - 1."""
    if amax <= 0:
        return 12
    return int(math.floor(math.log2(((1 << (bits - 1)) - 1) / (amax * headroom))))
