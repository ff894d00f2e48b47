"""The decoder trace (SPEC.md clause 10.1): per clause, the SHA-256, shape
and type of every intermediate of a decode, so that an implementer whose
picture differs finds the first clause where the decoders part.

    refcodec decode IN.rcd OUT.png --trace TRACE.json
    refcodec conform vectors --trace             # each vector's expected.json carries its trace

Records, in decoding order: the parsed header and substream sizes (a
canonical text, 5.2/5.3); z_hat (6.2); mu and s from h_s (6.3); the
quality map Q (6.7, when enabled); the table rows and q of phase 0 (6.4;
the only phase without the context); mu and s refined by the context, then
the rows and q of phase 1 (6.4, with it); y_hat (6.4); the output of every op of g_s (6.5, clause 7's layers);
the RGB output (6.6).  An array is hashed as its values in the stated type,
little-endian, in raster order (row, column, channel; a phase's values in
their coding order).
"""

import hashlib
import json

import numpy as np

from . import decoder
from .syntax import picture

FORMAT = "refcodec-trace"
VERSION = 1


def header_text(pic):
    """The canonical text of the parsed header and sizes (hashed as UTF-8)."""
    h, z = pic.header, pic.sizes
    fields = [("version", h.version), ("model_id", h.model_id.hex()), ("width", h.width), ("height", h.height),
              ("beta_code", h.beta_code), ("tool_flags", h.tool_flags), ("num_y_substreams", h.num_y_substreams),
              ("qmap_block_log2", h.qmap_block_log2), ("qmap_sigma_row", h.qmap_sigma_row),
              ("q_size", z.q_size if h.quality_map_enabled else 0), ("z_size", z.z_size),
              ("y_size", ",".join(str(v) for v in z.y_size))]
    if h.qmap_step_log2 or h.qmap_context:         # the map codings of the second edition (clause 6.7)
        fields += [("qmap_step_log2", h.qmap_step_log2), ("qmap_context", int(h.qmap_context)),
                   ("qmap_sigma_rows", ",".join(str(r) for r in h.qmap_ctx_rows))]
    if h.qmap_direct:                               # the direct coding of the third edition (clause 6.7)
        fields += [("qmap_direct", 1), ("qmap_v_min", h.qmap_v_min),
                   ("qmap_freqs", ",".join(str(f) for f in h.qmap_freqs))]
    return ";".join(f"{k}={v}" for k, v in fields)


def record(clause, name, a, dtype):
    a = np.ascontiguousarray(np.asarray(a).astype(np.dtype(dtype).newbyteorder("<"), copy=False))
    return {"clause": clause, "name": name, "dtype": dtype, "shape": list(a.shape),
            "sha256": hashlib.sha256(a.tobytes()).hexdigest()}


def trace(data, models=None, backend="cpu", out=None):
    """(records, rgb): the trace of decoding ``data`` and the decoded picture.
    ``out``: a list the records are appended to as they are reached, so that
    a decode that fails half-way leaves the records up to the failure."""
    from . import model as model_mod
    pic = picture(data)
    h = pic.header
    recs = [] if out is None else out
    text = header_text(pic)
    recs.append({"clause": "5.2", "name": "header", "dtype": "text", "shape": [len(text)],
                 "sha256": hashlib.sha256(text.encode()).hexdigest()})
    model = model_mod.shipped(h.model_id) if models is None else decoder.find_model(h.model_id, models)
    tr = {}
    try:
        y_hat, _, _, _, rate = decoder.decode_latents(pic, model, backend, trace=tr)
    finally:
        for clause, key, dtype in LATENT_RECORDS:
            if tr.get(key) is not None:
                recs.append(record(clause, key, tr[key], dtype))
    recs.append(record("6.4", "y_hat", y_hat, "int16"))
    x = y_hat
    for i, op in enumerate(model.g_s.ops):
        x = model.g_s.run_op(op, x, backend)
        recs.append(record("6.5", f"g_s.{i}.{op[0]}", x, "int16"))
    if rate is not None:
        recs.append(record("6.5.1", "rate_plane", rate, "int16"))
        x = decoder.postfilter(model, x, rate, backend)
        recs.append(record("6.5.1", "post_filter", x, "int16"))
    rgb = decoder.colour_transform(x, model.prec["p_x"], h.monochrome)[:h.height, :h.width]
    recs.append(record("6.6", "rgb", rgb, "uint8"))
    return recs, rgb


#: The intermediates of clauses 6.2-6.4 in decoding order (decoder.decode_latents' trace keys).
LATENT_RECORDS = (("6.2", "z_hat", "int32"), ("6.3", "mu_hs", "int16"), ("6.3", "s_hs", "int16"),
                  ("6.7", "Q", "int32"), ("6.4", "rows_phase0", "int32"), ("6.4", "q_phase0", "int32"),
                  ("6.4", "mu_context", "int16"), ("6.4", "s_context", "int16"), ("6.4", "rows_phase1", "int32"),
                  ("6.4", "q_phase1", "int32"))


def first_departure(got, expected):
    """The first record of ``expected`` that ``got`` does not reproduce, or None."""
    for i, e in enumerate(expected):
        g = got[i] if i < len(got) else None
        if g is None or (g["name"], g["sha256"], g["shape"]) != (e["name"], e["sha256"], e["shape"]):
            return e
    return None


def write(path, recs):
    with open(path, "w") as f:
        json.dump({"format": FORMAT, "version": VERSION, "records": recs}, f, indent=1)
        f.write("\n")
