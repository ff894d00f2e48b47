"""``refcodec inspect STREAM --out DIR [--original IN.png]``: what the decoder
does with a stream, for people learning the spec.

Decodes with the integer decoder (the very decoding of ``refcodec decode``:
the picture it shows is the decoded one, byte for byte) and writes
``DIR/index.html`` (one page, offline, its pictures beside it) and the same
numbers as ``DIR/inspect.json``:

1. the header: every syntax element with its value and SPEC.md clause, and
   the substream sizes (clause 5);
2. where the bits go: header, quality map, z and each y substream in bytes
   and shares; the bits of every 16 x 16 block (one latent position) as a
   heat map over the picture; the bits of every latent channel, sorted.  A
   symbol's bits are its exact information content under the table row
   that coded it -- the decoder's own tables, escapes included
   (kernels.rans.Tables.symbol_bits) -- so each substream's payload is its
   symbols' bits plus the coder's few bytes (its two final states);
3. what each stage produces: z_hat; mu and the table row from h_s (a few
   channels and the mean over channels); with the checkerboard context, the
   anchors and how far the context moved mu and the row elsewhere; the
   quality map; y_hat of the most energetic channels; the picture;
4. with ``--original``: PSNR-RGB, PSNR-Y, MS-SSIM, bpp, and the error of
   every 16 x 16 block on the same grid as the bits.

The pictures are drawn with Pillow and numpy (colour maps below); the
decoder itself imports neither this module nor Pillow.
"""

import html
import json
import os

import numpy as np

from kernels import rans

from . import decoder, qmap as qm
from .syntax import picture
from .syntax.picture_header import write_picture_header

#: Where each panel's process is specified (SPEC.md clause, its title).
CLAUSES = {
    "header": ("5.2", "picture_header()"), "sizes": ("5.3", "substream_sizes()"),
    "rans": ("6.1", "rANS entropy decoding"), "z": ("6.2", "Grids and z decoding"),
    "h_s": ("6.3", "Hyper-synthesis"), "y": ("6.4", "Gain, y decoding and dequantization"),
    "g_s": ("6.5", "Synthesis"), "colour": ("6.6", "Colour transform"), "qmap": ("6.7", "Quality map"),
}

#: Sequential colour map (viridis' key colours, interpolated) and a diverging one.
SEQUENTIAL = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64)
DIVERGING = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]],
                     np.float64)

#: Channels shown one by one (the most energetic ones).
SHOWN_CHANNELS = 4


def _colour(v, lut, lo, hi):
    """Values -> uint8 RGB through a colour map, lo ... hi linear."""
    t = np.clip((np.asarray(v, np.float64) - lo) / max(hi - lo, 1e-12), 0, 1) * (len(lut) - 1)
    i = np.minimum(np.floor(t).astype(int), len(lut) - 2)
    f = (t - i)[..., None]
    return np.round(lut[i] * (1 - f) + lut[i + 1] * f).astype(np.uint8)


def heat(v, signed=False):
    v = np.asarray(v, np.float64)
    if signed:
        m = float(np.abs(v).max()) or 1.0
        return _colour(v, DIVERGING, -m, m)
    return _colour(v, SEQUENTIAL, float(v.min()), float(v.max()) if v.max() > v.min() else float(v.min()) + 1)


def over_picture(grid_rgb, rgb, alpha=0.6):
    """A heat map of one colour per 16 x 16 block blended over the picture's luma."""
    h, w = rgb.shape[:2]
    up = np.repeat(np.repeat(grid_rgb, 16, axis=0), 16, axis=1)[:h, :w].astype(np.float64)
    luma = (rgb.astype(np.float64) @ [0.2126, 0.7152, 0.0722])[..., None]
    return np.round(alpha * up + (1 - alpha) * luma).astype(np.uint8)


def enlarge(img, target=256):
    """Nearest-neighbour enlargement of a small grid picture to about ``target`` pixels wide."""
    k = max(1, target // max(img.shape[1], 1))
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def mosaic(tiles, gap=2):
    h, w = tiles[0].shape[:2]
    out = np.full((h, len(tiles) * (w + gap) - gap, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        out[:, i * (w + gap):i * (w + gap) + w] = t
    return out


def substream_of_positions(hy, wy, S, context):
    """The y substream (clause 6.4) that codes each latent position, (hy, wy)."""
    r = np.arange(hy)
    if not context:
        band = np.searchsorted([(i * hy) // S for i in range(1, S)], r, side="right")
        return np.repeat(band[:, None], wy, axis=1)
    half = S // 2
    band = np.searchsorted([(i * hy) // half for i in range(1, half)], r, side="right")
    phase = (~decoder.anchor_mask(hy, wy)).astype(int)
    return phase * half + band[:, None]


def analyse(data, models=None, backend="cpu", original=None):
    """(report, pictures): the numbers of every panel and the arrays to draw."""
    from . import model as model_mod
    pic = picture(data)
    h = pic.header
    model = model_mod.shipped(h.model_id) if models is None else decoder.find_model(h.model_id, models)
    a = model.arch
    p = model.prec
    M, Z = a["M"], a["Z"]
    (hp, wp), (hy, wy), (hz, wz) = decoder.grid_sizes(h.width, h.height)
    tr = {}
    y_hat, _, _, _, rate = decoder.decode_latents(pic, model, backend, trace=tr)
    rgb = decoder.synthesize(model, y_hat, h.height, h.width, backend, monochrome=h.monochrome, rate=rate)

    # ---- bits (exact information content under the decoder's tables)
    y_bits = model.y_tables.symbol_bits(tr["q"].reshape(-1), tr["rows"]).reshape(hy, wy, M)
    z_bits = model.z_tables.symbol_bits(tr["z_hat"].reshape(-1), decoder.z_rows(hz, wz, Z))
    q_bits = 0.0
    if h.quality_map_enabled:
        if h.qmap_direct:
            q_bits = qm.direct_bits(tr["Q"], h.qmap_step_log2, h.qmap_direct_table)[0] - 8 * (2 + len(h.qmap_freqs))
        else:
            dq = qm.differences(tr["Q"], h.qmap_step_log2).reshape(tr["Q"].shape)
            rows = np.asarray(h.qmap_ctx_rows, np.int32)[rans.grid_contexts(dq)]
            q_bits = float(model.y_tables.symbol_bits(dq.reshape(-1), rows).sum())
    S = h.num_y_substreams
    sub = substream_of_positions(hy, wy, S, h.context_enabled)
    per_pos = y_bits.sum(axis=2)
    y_sub_bits = [float(per_pos[sub == i].sum()) for i in range(S)]
    head = len(write_picture_header(h))
    sizes = 4 * (1 + S + (1 if h.quality_map_enabled else 0))
    parts = [("picture_header", head, None), ("substream_sizes", sizes, None)]
    if h.quality_map_enabled:
        parts.append(("q_data", pic.sizes.q_size, q_bits))
    parts.append(("z_data", pic.sizes.z_size, float(z_bits.sum())))
    parts += [(f"y_data[{i}]", pic.sizes.y_size[i], y_sub_bits[i]) for i in range(S)]
    total = len(data)
    budget = [{"part": n, "bytes": int(b), "share": b / total,
               "information_bits": None if bits is None else round(bits, 3),
               "coder_overhead_bytes": None if bits is None else round(b - bits / 8, 3)} for n, b, bits in parts]
    per_channel = y_bits.sum(axis=(0, 1))
    order = np.argsort(-per_channel, kind="stable")

    # ---- stages
    mu_hs = tr["mu_hs"].astype(np.float64) / (1 << p["p_mu"])
    shift, _ = decoder.gain_maps(model, h.beta_code, None if tr["Q"] is None else
                                 qm.expand(tr["Q"], h.qmap_block_log2, hy, wy))
    rows_hs = decoder.y_rows(tr["s_hs"], shift, p["p_s"], a["sigma_levels"]).reshape(hy, wy, M)
    rows = tr["rows"].reshape(hy, wy, M)
    yh = tr["y_hat"].astype(np.float64) / (1 << p["p_y"])
    energy = (yh ** 2).sum(axis=(0, 1))
    top = [int(c) for c in np.argsort(-energy, kind="stable")[:SHOWN_CHANNELS]]
    zf = tr["z_hat"].astype(np.float64)
    stages = {
        "z_hat": {"shape": [hz, wz, Z], "mean_abs": float(np.abs(zf).mean()), "max_abs": float(np.abs(zf).max()),
                  "nonzero_share": float((zf != 0).mean())},
        "h_s": {"mu_mean": float(mu_hs.mean()), "mu_mean_abs": float(np.abs(mu_hs).mean()),
                "row_mean": float(rows_hs.mean()), "row_min": int(rows_hs.min()), "row_max": int(rows_hs.max())},
        "y_hat": {"channels_shown": top, "energy": [float(energy[c]) for c in top],
                  "mean_abs": float(np.abs(yh).mean())},
    }
    pics = {"decoded": rgb,
            "bits_map": over_picture(heat(per_pos), rgb),
            "z_hat": mosaic([enlarge(heat(zf[..., c], signed=True), 96) for c in
                             np.argsort(-np.abs(zf).sum(axis=(0, 1)), kind="stable")[:SHOWN_CHANNELS]]),
            "mu_hs": mosaic([enlarge(heat(mu_hs[..., c], signed=True), 128) for c in top]
                            + [enlarge(heat(mu_hs.mean(axis=2), signed=True), 128)]),
            "rows_hs": mosaic([enlarge(heat(rows_hs[..., c]), 128) for c in top]
                              + [enlarge(heat(rows_hs.mean(axis=2)), 128)]),
            "y_hat": mosaic([enlarge(heat(yh[..., c], signed=True), 128) for c in top])}
    if h.context_enabled:
        anchors = decoder.anchor_mask(hy, wy)
        mu = tr["mu"].astype(np.float64) / (1 << p["p_mu"])
        dmu = np.abs(mu - mu_hs).mean(axis=2)
        drow = (rows - rows_hs).mean(axis=2)
        stages["context"] = {"anchors": int(anchors.sum()), "others": int((~anchors).sum()),
                             "mean_abs_dmu_others": float(dmu[~anchors].mean()) if (~anchors).any() else 0.0,
                             "mean_drow_others": float(drow[~anchors].mean()) if (~anchors).any() else 0.0,
                             "anchor_bits_share": float(per_pos[anchors].sum() / max(per_pos.sum(), 1e-9))}
        pics["context"] = mosaic([enlarge(heat(anchors.astype(float)), 192),
                                  enlarge(heat(np.where(anchors, 0, dmu)), 192),
                                  enlarge(heat(np.where(anchors, 0, drow), signed=True), 192)])
    if h.quality_map_enabled:
        stages["quality_map"] = {"block_log2": h.qmap_block_log2, "grid": list(tr["Q"].shape),
                                 "Q": tr["Q"].tolist(), "mean": float(tr["Q"].mean())}
        Ql = qm.expand(tr["Q"], h.qmap_block_log2, hy, wy)
        pics["qmap"] = over_picture(_colour(Ql, DIVERGING, qm.Q_MIN, qm.Q_MAX), rgb)

    report = {
        "stream": {"bytes": total, "bpp": 8 * total / (h.width * h.height), "width": h.width, "height": h.height,
                   "model": os.path.basename(model.path), "model_id": h.model_id.hex()},
        "header": header_elements(pic),
        "budget": budget,
        "bits": {"y": float(y_bits.sum()), "z": float(z_bits.sum()), "q": q_bits,
                 "per_position": np.round(per_pos, 3).tolist(),
                 "per_channel": np.round(per_channel, 3).tolist(),
                 "channels_by_bits": [int(c) for c in order],
                 "grid": [hy, wy]},
        "stages": stages,
    }
    if original is not None:
        report["quality"], err = quality(original, rgb, total)
        pics["error_map"] = over_picture(heat(err), rgb)
    return report, pics


def quality(ref, out, nbytes):
    """Metrics of the decoded picture and the MSE of every 16 x 16 block."""
    from .eval.metrics import ms_ssim, psnr, psnr_ycbcr
    from .errors import ImageError
    if ref.shape != out.shape:
        raise ImageError(f"--original is {ref.shape[1]} x {ref.shape[0]}, the stream {out.shape[1]} x "
                         f"{out.shape[0]}")
    h, w = ref.shape[:2]
    d = (ref.astype(np.float64) - out) ** 2
    hb, wb = -(-h // 16), -(-w // 16)
    pad = np.zeros((hb * 16, wb * 16), np.float64)
    cnt = np.zeros_like(pad)
    pad[:h, :w] = d.mean(axis=2)
    cnt[:h, :w] = 1
    mse = pad.reshape(hb, 16, wb, 16).sum(axis=(1, 3)) / cnt.reshape(hb, 16, wb, 16).sum(axis=(1, 3))
    ms = ms_ssim(ref, out)
    q = {"psnr_rgb": psnr(ref, out), "psnr_y": psnr_ycbcr(ref, out)[0],
         "ms_ssim": None if not np.isfinite(ms) else float(ms), "bpp": 8 * nbytes / (h * w),
         "block_mse": np.round(mse, 3).tolist()}
    return q, mse


def header_elements(pic):
    h, z = pic.header, pic.sizes
    flags = []
    for bit, name in ((1, "quality_map_enabled"), (2, "context_enabled"), (4, "monochrome")):
        if h.tool_flags & bit:
            flags.append(name)
    rows = [("magic", "0x52434443 (RCDC)", "5.2"), ("version", h.version, "5.2"),
            ("model_id", h.model_id.hex(), "5.2"), ("width_minus1", h.width - 1, "5.2"),
            ("height_minus1", h.height - 1, "5.2"), ("beta_code", f"{h.beta_code} (beta {h.beta:.4f})", "5.2"),
            ("tool_flags", f"{h.tool_flags:#04x} ({', '.join(flags) or 'none'})", "5.2"),
            ("num_y_substreams", h.num_y_substreams, "5.2")]
    if h.quality_map_enabled:
        rows += [("qmap_mode", f"{h.qmap_mode:#04x} (block 2^{h.qmap_block_log2}, step 2^{h.qmap_step_log2}, "
                               + ("direct)" if h.qmap_direct else
                                  f"contexts {'on' if h.qmap_context else 'off'})"), "5.2")]
        if h.qmap_direct:
            rows += [("qmap_v_min_plus8", h.qmap_v_min + 8, "5.2"), ("qmap_num_values", len(h.qmap_freqs), "5.2"),
                     ("qmap_freq", ", ".join(str(f) for f in h.qmap_freqs), "5.2")]
        else:
            rows += [("qmap_sigma_row" + ("s" if h.qmap_context else ""),
                      ", ".join(str(r) for r in h.qmap_ctx_rows) if h.qmap_context else h.qmap_sigma_row, "5.2")]
        rows += [("q_size", z.q_size, "5.3")]
    rows += [("z_size", z.z_size, "5.3")] + [(f"y_size[{i}]", s, "5.3") for i, s in enumerate(z.y_size)]
    return [{"element": n, "value": v if isinstance(v, (int, str)) else str(v), "clause": c} for n, v, c in rows]


# ------------------------------------------------------------------ the page

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "SPEC.md")


def spec_anchor(clause, spec=SPEC):
    """The GitHub-style anchor of a SPEC.md heading "### 6.2 Grids and z decoding"."""
    import re
    try:
        with open(spec, encoding="utf-8") as f:
            for line in f:
                m = re.match(r"#+\s+(\S+)\s+(.*)", line.strip())
                if m and m.group(1) == clause:
                    text = f"{m.group(1)} {m.group(2)}".lower()
                    return re.sub(r"[^a-z0-9 _-]", "", text).replace(" ", "-")
    except OSError:
        pass
    return clause.replace(".", "")


def _spec_href(out_dir, clause):
    return html.escape(os.path.relpath(SPEC, os.path.abspath(out_dir))) + "#" + spec_anchor(clause)


def _svg_bars(values, width=720, height=160):
    v = np.asarray(values, np.float64)
    m = float(v.max()) or 1.0
    bw = width / max(len(v), 1)
    bars = "".join(f'<rect x="{i * bw:.2f}" y="{height - height * x / m:.2f}" width="{max(bw - 0.5, 0.5):.2f}" '
                   f'height="{height * x / m:.2f}" fill="#3b528b"/>' for i, x in enumerate(v))
    return f'<svg width="{width}" height="{height}" role="img" aria-label="bits per channel">{bars}</svg>'


def write(report, pics, out_dir):
    """index.html, inspect.json and the pictures into out_dir."""
    from PIL import Image
    os.makedirs(out_dir, exist_ok=True)
    for name, img in pics.items():
        Image.fromarray(img).save(os.path.join(out_dir, f"{name}.png"), compress_level=1)
    with open(os.path.join(out_dir, "inspect.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "index.html"), "w", encoding="utf-8") as f:
        f.write(page(report, pics, out_dir))


def page(report, pics, out_dir):
    e = html.escape
    st = report["stream"]

    def clause(key):
        c, title = CLAUSES[key]
        return f'<a class="clause" href="{_spec_href(out_dir, c)}">SPEC.md {c} {e(title)}</a>'

    def img(name, alt):
        return f'<img src="{name}.png" alt="{e(alt)}">' if name in pics else ""

    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>refcodec inspect: {st['width']} x {st['height']}, {st['bytes']} bytes</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
           "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%;"
           "image-rendering:pixelated;border:1px solid #ddd}.clause{font-size:.85em;color:#555}"
           "section{margin-bottom:2em}</style></head><body>",
           f"<h1>refcodec inspect</h1><p>{st['width']} x {st['height']}, {st['bytes']} bytes, "
           f"{st['bpp']:.4f} bpp; model {e(st['model'])} (model_id {st['model_id']}). Decoded by the integer "
           "decoder; every number below is also in <a href='inspect.json'>inspect.json</a>.</p>"]
    if "quality" in report:
        q = report["quality"]
        ms = "n/a" if q["ms_ssim"] is None else f"{q['ms_ssim']:.4f}"
        out.append(f"<p><b>Against the original:</b> PSNR-RGB {q['psnr_rgb']:.2f} dB, PSNR-Y {q['psnr_y']:.2f} dB, "
                   f"MS-SSIM {ms}, {q['bpp']:.4f} bpp.</p>")
    out.append(f"<section><h2>1. The header</h2>{clause('header')} · {clause('sizes')}<table>"
               "<tr><th>syntax element</th><th>value</th><th>clause</th></tr>")
    for r in report["header"]:
        out.append(f"<tr><td>{e(r['element'])}</td><td>{e(str(r['value']))}</td><td>{r['clause']}</td></tr>")
    out.append("</table></section>")
    out.append(f"<section><h2>2. Where the bits go</h2>{clause('rans')}<table><tr><th>part</th><th>bytes</th>"
               "<th>share</th><th>information content (bits)</th><th>coder overhead (bytes)</th></tr>")
    for b in report["budget"]:
        ib = "" if b["information_bits"] is None else f"{b['information_bits']:.1f}"
        ov = "" if b["coder_overhead_bytes"] is None else f"{b['coder_overhead_bytes']:.1f}"
        out.append(f"<tr><td>{e(b['part'])}</td><td>{b['bytes']}</td><td>{100 * b['share']:.1f} %</td>"
                   f"<td>{ib}</td><td>{ov}</td></tr>")
    bits = report["bits"]
    top = bits["channels_by_bits"][:8]
    out.append("</table><p>Each symbol's bits are its information content under the table row that coded it "
               "(the decoder's tables, escapes included); a substream's payload is that plus the coder's final "
               "states.</p>")
    pp = np.asarray(bits["per_position"])
    out.append(f"<h3>Bits per 16 x 16 block (one latent position)</h3>{clause('y')}<p>y: {bits['y']:.0f} bits "
               f"over a {bits['grid'][0]} x {bits['grid'][1]} grid, {pp.min():.1f} (dark) to {pp.max():.1f} "
               "(bright) bits per block.</p>"
               f"{img('bits_map', 'bits per block over the picture')}")
    out.append(f"<h3>Bits per latent channel, sorted</h3><p>The channels that carry the rate: "
               f"{', '.join(str(c) for c in top)} ...</p>"
               f"{_svg_bars(sorted(bits['per_channel'], reverse=True))}")
    out.append("</section><section><h2>3. What each stage produces</h2>")
    s = report["stages"]
    out.append(f"<h3>z_hat</h3>{clause('z')}<p>{s['z_hat']['shape'][0]} x {s['z_hat']['shape'][1]} x "
               f"{s['z_hat']['shape'][2]}; mean |z_hat| {s['z_hat']['mean_abs']:.3f}, nonzero "
               f"{100 * s['z_hat']['nonzero_share']:.1f} %. The four busiest channels (blue &lt; 0 &lt; red):</p>"
               f"{img('z_hat', 'z_hat channels')}")
    ch = ", ".join(str(c) for c in s["y_hat"]["channels_shown"])
    out.append(f"<h3>mu and the table row from h_s</h3>{clause('h_s')}<p>mu of channels {ch}, then the mean over "
               f"channels (blue &lt; 0 &lt; red):</p>{img('mu_hs', 'mu from h_s')}<p>The table row (the scale, "
               f"clause 6.4) of the same channels, then the mean; rows {s['h_s']['row_min']} ... "
               f"{s['h_s']['row_max']}, mean {s['h_s']['row_mean']:.2f}:</p>{img('rows_hs', 'table rows')}")
    if "context" in s:
        c = s["context"]
        out.append(f"<h3>The checkerboard context</h3>{clause('y')}<p>Anchors (bright) are coded first from the "
                   f"hyperprior alone; g_cm and g_ep then move mu and the row of the other positions: mean |dmu| "
                   f"{c['mean_abs_dmu_others']:.3f}, mean row change {c['mean_drow_others']:+.2f}. The anchors "
                   f"carry {100 * c['anchor_bits_share']:.1f} % of y's bits. Left to right: anchors, |dmu|, "
                   f"row change:</p>{img('context', 'checkerboard context')}")
    if "quality_map" in s:
        out.append(f"<h3>The quality map</h3>{clause('qmap')}<p>Q per block of 2^{s['quality_map']['block_log2']} "
                   f"latent positions, mean {s['quality_map']['mean']:+.2f} (blue: coarser, red: finer):</p>"
                   f"{img('qmap', 'quality map')}")
    out.append(f"<h3>y_hat</h3>{clause('y')}<p>The dequantized latent of the most energetic channels ({ch}):</p>"
               f"{img('y_hat', 'y_hat channels')}")
    out.append(f"<h3>The picture</h3>{clause('g_s')} · {clause('colour')}{img('decoded', 'decoded picture')}")
    if "error_map" in pics:
        mse = np.asarray(report["quality"]["block_mse"])
        out.append("<h3>Error per 16 x 16 block</h3><p>Mean squared error of each block against the original, "
                   f"on the grid of the bits map: {mse.min():.1f} (dark) to {mse.max():.1f} (bright).</p>"
                   f"{img('error_map', 'error per block')}")
    out.append("</section><script>window.addEventListener('load',function(){var i=[].slice.call(document.images);"
               "var ok=i.filter(function(x){return x.complete&&x.naturalWidth>0}).length;"
               "document.body.setAttribute('data-images',ok+'/'+i.length)})</script></body></html>")
    return "\n".join(out)


def inspect(data, out_dir, original=None, models=None, backend="cpu"):
    """Analyse a stream and write the page; returns the report."""
    report, pics = analyse(data, models=models, backend=backend, original=original)
    write(report, pics, out_dir)
    return report
