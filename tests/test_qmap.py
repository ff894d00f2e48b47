"""Spatial quality map: predictor, dQ coding, every block size, bad maps, end to end."""

import os

import numpy as np
import pytest
from PIL import Image

from refcodec import decoder, encoder, qmap
from refcodec.errors import BitstreamError
from refcodec.model import Model

from .test_codec import tiny  # noqa: F401  (the tiny model fixture)


@pytest.fixture(scope="module")
def y_tables():
    return Model.default().y_tables


def maps(rng):
    yield "zeros", np.zeros((3, 5), np.int32)
    yield "extreme", np.array([[8, -8, 8], [-8, 8, -8]], np.int32)
    yield "alternating", np.where(np.indices((6, 7)).sum(0) % 2, 8, -8).astype(np.int32)
    yield "random", rng.integers(-8, 9, (9, 4)).astype(np.int32)
    yield "single", np.array([[-5]], np.int32)


def test_predictor_rule():
    Q = np.array([[1, 2, 3], [4, 5, 6]])
    assert qmap.predictor(Q, 0, 0) == 0
    assert qmap.predictor(Q, 0, 2) == 2          # left
    assert qmap.predictor(Q, 1, 0) == 1          # top
    assert qmap.predictor(Q, 1, 1) == (4 + 2) >> 1
    Q = np.array([[0, -3], [-4, 0]])
    assert qmap.predictor(Q, 1, 1) == (-4 + -3) >> 1 == -4     # floor, not truncation


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_dq_coding_roundtrip(rng, y_tables, backend):
    for name, Q in maps(rng):
        row = qmap.best_sigma_row(Q, y_tables)
        data = qmap.encode_qmap(Q, row, y_tables, backend=backend)
        out = qmap.decode_qmap(data, *Q.shape, row, y_tables, backend=backend)
        assert np.array_equal(out, Q), name


def test_decoded_values_out_of_range_are_rejected(y_tables):
    dq = np.array([5, 5], np.int32)          # Q = 5, then 10: outside [-8, 8]
    from kernels import rans
    data = rans.encode(dq, np.zeros(2, np.int32), np.array([0, 2]), *y_tables)[0]
    with pytest.raises(BitstreamError, match="outside"):
        qmap.decode_qmap(data, 1, 2, 0, y_tables)
    with pytest.raises(BitstreamError, match="qmap_sigma_row"):
        qmap.decode_qmap(data, 1, 2, 200, y_tables)


@pytest.mark.parametrize("bad", [np.zeros((2, 2)), np.full((2, 3), 9), np.full((2, 3), -9), np.full((2, 3), 0.5)])
def test_bad_maps_are_rejected(bad):
    with pytest.raises(qmap.QualityMapError):
        qmap.check_map(bad, 2, 3)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_every_block_size_end_to_end(tiny, rng, k):   # noqa: F811
    rgb = rng.integers(0, 256, (70, 150, 3)).astype(np.uint8)
    an = encoder.Analysis(rgb, tiny)
    hq, wq = an.qmap_grid(k)
    Q = rng.integers(-8, 9, (hq, wq)).astype(np.int32)
    data = an.stream(20000, None, Q, k)
    pic = decoder.picture(data)
    assert pic.header.quality_map_enabled and pic.header.qmap_block_log2 == k
    a = decoder.decode(data, backend="cpu", models=[tiny])
    b = decoder.decode(data, backend="numpy", models=[tiny])
    assert np.array_equal(a, b)


def test_quality_changes_where_the_map_says(rng):
    """Higher Q on the left half: the left half is reconstructed better than without a map."""
    rgb = np.asarray(Image.open(os.path.join(os.path.dirname(__file__), "data", "kodim23.png")).convert("RGB"))
    rgb = np.ascontiguousarray(rgb[:128, :256])
    an = encoder.Analysis(rgb, Model.default())
    hq, wq = an.qmap_grid(0)
    Q = np.zeros((hq, wq), np.int32)
    Q[:, :wq // 2] = 6
    Q[:, wq // 2:] = -6
    flat = decoder.decode(an.stream(30000))
    mapped = decoder.decode(an.stream(30000, None, Q, 0))

    def err(x, sl):
        return np.mean((x[:, sl].astype(float) - rgb[:, sl]) ** 2)
    left, right = slice(0, 128), slice(128, 256)
    assert err(mapped, left) < err(flat, left) and err(mapped, right) > err(flat, right)


def test_activity_and_mask_strategies(rng):
    rgb = rng.integers(0, 256, (64, 96, 3)).astype(np.uint8)
    rgb[:, :48] = 128                                   # flat left half
    Q = qmap.activity_map(rgb, 4, 6)
    assert Q.shape == (4, 6) and Q.max() <= 0 and Q.min() >= -4
    assert Q[:, :3].max() == 0 and Q[:, 3:].min() < 0  # busy blocks get coarser
    mask = np.zeros((64, 96), np.uint8)
    mask[:16, :16] = 255
    M = qmap.mask_map(mask, 4, 6, 0, fg=6, bg=-3)
    assert M[0, 0] == 6 and (M.sum() - 6) == -3 * 23


@pytest.fixture(scope="module")
def crop_analysis():
    rgb = np.asarray(Image.open(os.path.join(os.path.dirname(__file__), "data", "kodim23.png")).convert("RGB"))
    rgb = np.ascontiguousarray(rgb[96:288, 160:480])
    return rgb, encoder.Analysis(rgb, Model.default())


def test_rdo_map_lowers_its_own_cost_and_fits_the_budget(crop_analysis):
    """rdo: each block's choice lowers D + lambda R against the flat map on the
    measured candidates; with an automatic block size the map costs at most
    RDO_MAP_BUDGET of the picture's bits (or the block is the coarsest)."""
    rgb, an = crop_analysis
    R0, D0, lam = encoder._rdo_measure(an, rgb, 30000, encoder.RDO_CANDIDATES)
    assert lam > 0 and R0.shape == D0.shape == (len(encoder.RDO_CANDIDATES), an.hy, an.wy)
    for k in (0, 1):
        Q, kk = encoder.rdo_map(an, rgb, k, 30000, refine=False)
        assert kk == k and Q.shape == an.qmap_grid(k) and set(np.unique(Q)) <= set(encoder.RDO_CANDIDATES)
        # each refining pass moves a block by at most one step
        Q1, _ = encoder.rdo_map(an, rgb, k, 30000, refine=1)
        Qr, _ = encoder.rdo_map(an, rgb, k, 30000, refine=2)
        assert Q1.shape == Qr.shape == Q.shape and np.abs(Q1.astype(int) - Q).max() <= 1
        assert np.abs(Qr.astype(int) - Q).max() <= 2
        R, D = encoder._blocks(R0, k), encoder._blocks(D0, k)
        idx = np.searchsorted(encoder.RDO_CANDIDATES, Q)[None]
        J_map = (np.take_along_axis(D, idx, 0) + lam * np.take_along_axis(R, idx, 0)).sum()
        i0 = encoder.RDO_CANDIDATES.index(0)
        assert J_map < (D[i0] + lam * R[i0]).sum()
    Q, k = encoder.rdo_map(an, rgb, None, 30000)
    data = an.stream(30000, None, Q, k)
    from refcodec.syntax import picture
    pic = picture(data)
    assert pic.header.qmap_block_log2 == k
    assert k == 4 or pic.sizes.q_size <= encoder.RDO_MAP_BUDGET * len(data) * 1.5   # the budget is set on estimated bits
    assert np.array_equal(decoder.decode(data), decoder.decode(data, backend="numpy"))


def test_rdo_block_size_is_chosen_by_cost(crop_analysis):
    """block_log2=None: the size whose map (refine passes aside) has the least
    D + lambda (R + map bits) among the sizes within the budget."""
    rgb, an = crop_analysis
    R0, D0, lam = encoder._rdo_measure(an, rgb, 30000, encoder.RDO_CANDIDATES)
    C = np.array(encoder.RDO_CANDIDATES)
    fixed = 8 * (len(an.z_stream()) + 64)
    costs = {}
    for k in range(encoder.QMAP_BLOCK_LOG2_MAX + 1):
        Q, _ = encoder.rdo_map(an, rgb, k, 30000, refine=0, allow_flat=False)
        idx = np.searchsorted(C, Q)[None]
        y = np.take_along_axis(encoder._blocks(R0, k), idx, 0).sum()
        map_bits = qmap.map_syntax(Q, an.model.y_tables).bits
        if map_bits <= encoder.RDO_MAP_BUDGET * (y + map_bits + fixed):
            costs[k] = np.take_along_axis(encoder._blocks(D0, k), idx, 0).sum() + lam * (y + map_bits)
    assert len(costs) >= 2
    _, k = encoder.rdo_map(an, rgb, None, 30000, refine=0, allow_flat=False)
    assert k == min(costs, key=costs.get)


def test_rdo_without_a_map_when_the_map_does_not_pay(crop_analysis, monkeypatch):
    """A map whose own bits outweigh what it saves gives way to no map (Q
    None: the stream has none); allow_flat=False keeps it."""
    rgb, an = crop_analysis
    Q, k = encoder.rdo_map(an, rgb, 0, 30000)
    assert Q is not None                                    # on this picture the map pays
    info = {}
    monkeypatch.setattr(qmap, "map_syntax", lambda Q, t, coding="auto": qmap.MapSyntax(0, False, (0, 0, 0), 1e9))
    Q, k = encoder.rdo_map(an, rgb, 0, 30000, info=info)
    assert Q is None and info["map_bits"] == 0 and info["y_bits"] == info["y_bits_flat"]
    assert encoder.rdo_map(an, rgb, 0, 30000, allow_flat=False)[0] is not None
    monkeypatch.undo()
    data = encoder.encode(rgb, 0.45, qmap=np.zeros(an.qmap_grid(0), np.int32))
    assert decoder.picture(data).sizes.q_size > 0


def test_rdo_measuring_fewer_candidates_interpolates_the_others(crop_analysis):
    """measured=(-4, -2, 0, 2, 4): those rows are the measured ones, each odd
    candidate's R is the mean of its neighbours' and its D their geometric
    mean; lambda comes from the measured neighbours of 0."""
    rgb, an = crop_analysis
    C = tuple(range(-4, 5))
    R, D, lam = encoder._rdo_measure(an, rgb, 30000, C)
    Rf, Df, lamf = encoder._rdo_measure(an, rgb, 30000, C, measured=(-4, -2, 0, 2, 4))
    for v in (-4, -2, 0, 2, 4):
        i = C.index(v)
        assert np.array_equal(Rf[i], R[i]) and np.array_equal(Df[i], D[i])
    i = C.index(1)
    assert np.allclose(Rf[i], (R[i - 1] + R[i + 1]) / 2)
    pos = (D[i - 1] > 0) & (D[i + 1] > 0)
    assert pos.any() and np.allclose(Df[i][pos], np.sqrt(D[i - 1] * D[i + 1])[pos])
    i0 = C.index(0)
    assert lamf == pytest.approx(-(D[i0 + 2].sum() - D[i0 - 2].sum()) / (R[i0 + 2].sum() - R[i0 - 2].sum()))
    with pytest.raises(ValueError, match="measured"):
        encoder._rdo_measure(an, rgb, 30000, C, measured=(-2, 0, 4))


# ---------------------------------------------------------------- the second edition's codings (clause 6.7)

def test_step_of_a_map():
    assert qmap.step_log2_of(np.array([[0, 4], [-8, 8]])) == 2
    assert qmap.step_log2_of(np.array([[0, 2], [-6, 8]])) == 1
    assert qmap.step_log2_of(np.array([[0, 2], [-5, 8]])) == 0
    assert qmap.step_log2_of(np.zeros((2, 2), np.int32)) == 2


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("coding", qmap.MAP_CODINGS)
def test_every_coding_roundtrips(rng, y_tables, backend, coding):
    even = 2 * rng.integers(-4, 5, (7, 9)).astype(np.int32)
    for name, Q in [*maps(rng), ("even", even), ("fours", 4 * (even // 4))]:
        syn = qmap.map_syntax(Q, y_tables, coding)
        s, ctx, rows, bits = syn[:4]
        assert (s, ctx) == (0, False) if coding == "first" else s == qmap.step_log2_of(Q)
        assert ctx == (coding == "context") or coding == "auto"
        assert (syn.direct is not None) == (coding == "direct") or coding == "auto"
        data = qmap.encode_map(Q, syn, y_tables, backend=backend)
        if syn.direct is None:
            assert data == qmap.encode_qmap(Q, rows, y_tables, s, backend=backend)
        assert np.array_equal(qmap.decode_qmap(data, *Q.shape, rows, y_tables, s, backend=backend,
                                               direct=syn.direct), Q), name
        # the bits map_syntax counts are the substream's (plus the header bits a coding adds: 16 with
        # contexts, V_min, A and the A frequencies for the direct coding less the row it has not), to
        # within the coder's two 32-bit states
        extra = 16 * ctx if syn.direct is None else 8 * (1 + len(syn.direct[1]))
        assert abs(8 * len(data) - (bits - extra) - 64) < 40, (name, 8 * len(data), bits)


def test_auto_coding_is_the_cheapest(rng, y_tables):
    Q = np.zeros((12, 16), np.int32)
    Q[3:6, 4:9], Q[8:11, 2:5], Q[1:3, 10:15] = 4, -2, 6
    got = qmap.map_syntax(Q, y_tables, "auto")
    every = [qmap.map_syntax(Q, y_tables, c) for c in ("first", "step", "context", "direct")]
    assert got.bits == min(c.bits for c in every)
    assert got.bits < every[0].bits               # cheaper than the first edition's coding


def test_second_edition_streams_end_to_end(tiny, rng):  # noqa: F811
    """An even map through the encoder: the header says step 2^1 (and
    contexts when they pay), and the decoder applies the map as coded."""
    rgb = rng.integers(0, 256, (96, 128, 3)).astype(np.uint8)
    an = encoder.Analysis(rgb, tiny)
    Q = np.zeros(an.qmap_grid(0), np.int32)
    Q[1:4, 2:6] = 6
    Q[4:, :3] = -4
    data = an.stream(32768, 1, Q, 0)
    h = decoder.picture(data).header
    assert h.qmap_step_log2 == 1
    an.qmap_coding = "first"
    first = an.stream(32768, 1, Q, 0)
    assert decoder.picture(first).header.qmap_step_log2 == 0 and len(first) > len(data)
    assert np.array_equal(decoder.decode(data, models=[tiny]), decoder.decode(first, models=[tiny]))


def test_context_rows_out_of_the_table_are_rejected(y_tables):
    data = qmap.encode_qmap(np.zeros((2, 2), np.int32), [0, 1, 2], y_tables)
    with pytest.raises(BitstreamError, match="qmap_sigma_row2"):
        qmap.decode_qmap(data, 2, 2, [0, 1, 200], y_tables)
    dq = np.array([[3, 0]], np.int32)             # V = 3 at step 2^2: Q = 12
    data = qmap.encode_qmap(dq, 0, y_tables)
    with pytest.raises(BitstreamError, match="12"):
        qmap.decode_qmap(data, 1, 2, 0, y_tables, step_log2=2)


def test_ssim_weights():
    """1 on a flat picture, lower where the picture is busy, per channel."""
    flat = np.full((40, 120, 3), 120, np.uint8)
    assert np.allclose(encoder.ssim_weights(flat), 1.0)
    rng = np.random.default_rng(1)
    busy = flat.copy()
    busy[:, 60:, 0] = rng.integers(0, 256, (40, 60))         # red noise on the right
    w = encoder.ssim_weights(busy)
    assert w.shape == busy.shape and w.min() > 0
    assert w[20, 110, 0] < 0.1 and w[20, 5, 0] > 0.99         # the noise lowers the red weight there
    assert w[20, 110, 1] == pytest.approx(1.0)               # the flat green channel keeps its weight


def test_rdo_tuned_for_ms_ssim_spends_less_on_texture():
    """A picture smooth on the left and textured on the right: with the
    ms-ssim tune the textured blocks get lower Q, relative to the smooth
    ones, than with the psnr tune (SSIM forgives errors in texture)."""
    rng = np.random.default_rng(2)
    h, w = 64, 128
    ramp = np.linspace(40, 200, w)[None, :, None] * np.ones((h, 1, 3))
    tex = ramp + np.where(np.arange(w)[None, :, None] >= w // 2, rng.normal(0, 40, (h, w, 3)), 0)
    rgb = np.clip(tex, 0, 255).astype(np.uint8)
    m = Model.default()
    assert set(encoder.RDO_SETTINGS) == set(encoder.TUNES)
    gap = {}
    for tune in encoder.TUNES:
        Q, _ = encoder.rdo_map(encoder.Analysis(rgb, m, tune=tune), rgb, 0, 30000)
        gap[tune] = Q[:, :4].mean() - Q[:, 4:].mean()           # smooth minus textured
    assert gap["ms-ssim"] > gap["psnr"]


# ---------------------------------------------------------------- the third edition's direct coding (clause 6.7)

def test_direct_table_follows_the_rule():
    """cdf[a] = F_a * 65535 // F, the escape's frequency 1; strictly rising
    for every frequency >= 1, even one 1 among sixteen 255s."""
    from kernels import rans
    for v_min, freqs in [(-1, (3, 255, 7)), (-8, (1,) + (255,) * 16), (0, (1,)), (-8, (255,) * 17),
                         (-8, tuple(range(1, 18)))]:
        cdf, n, off = qmap.direct_tables(v_min, freqs)
        F = np.concatenate([[0], np.cumsum(freqs)])
        assert list(cdf[0, :len(freqs) + 1]) == [f * 65535 // F[-1] for f in F]
        assert cdf[0, len(freqs) + 1] == 65536 and n[0] == len(freqs) + 1 and off[0] == v_min
        rans.check_tables(cdf, n, off)
    for bad in [(), (0, 5), (256,), (1,) * 18]:
        with pytest.raises(ValueError):
            qmap.direct_tables(0, bad)


def direct_maps(rng):
    yield "three", rng.integers(-1, 2, (13, 17)).astype(np.int32), 0
    yield "skewed", rng.choice([-1, 0, 0, 0, 0, 0, 1], (9, 31)).astype(np.int32), 0
    yield "full", rng.integers(-8, 9, (7, 5)).astype(np.int32), 0
    yield "single", np.array([[-8]], np.int32), 0
    yield "extreme", np.array([[8, -8], [-8, 8]], np.int32), 3
    yield "step2", 4 * rng.integers(-2, 3, (6, 11)).astype(np.int32), 2


def test_direct_coding_is_identical_on_every_backend(rng, backend):
    """The same q_data and the same map from numpy, numba CPU and CUDA (the
    simulator in CI), from a single block to every value of [-8, 8]."""
    for name, Q, _ in direct_maps(rng):
        s = qmap.step_log2_of(Q)
        table = qmap.direct_freqs(Q, s)
        data = qmap.encode_direct(Q, *table, step_log2=s, backend=backend)
        assert data == qmap.encode_direct(Q, *table, step_log2=s, backend="numpy"), name
        out = qmap.decode_qmap(data, *Q.shape, 0, None, s, backend=backend, direct=table)
        assert np.array_equal(out, Q), name


def test_direct_freqs_and_bits(rng):
    """The encoder's table spans V_min ... V_max, the commonest value 255,
    an absent one 1; the bits it counts are the substream's, header aside."""
    Q = np.array([[-2, 1, 1], [1, 1, -2]], np.int32)
    v_min, freqs = qmap.direct_freqs(Q)
    assert v_min == -2 and freqs == (128, 1, 1, 255)
    for name, Q, _ in direct_maps(rng):
        s = qmap.step_log2_of(Q)
        bits, table = qmap.direct_bits(Q, s)
        data = qmap.encode_direct(Q, *table, step_log2=s)
        assert abs(8 * len(data) - (bits - 8 * (2 + len(table[1]))) - 64) < 40, name


def test_direct_coding_beats_differences_on_rdo_like_maps(rng, y_tables):
    """A map of -1, 0, 1 with little spatial order (as the rdo strategy
    makes them) costs about log2(3) bits a block directly, against ~2 as
    differences; auto takes it."""
    Q = rng.integers(-1, 2, (32, 48)).astype(np.int32)
    direct = qmap.map_syntax(Q, y_tables, "direct")
    assert direct.bits < 1.65 * Q.size
    assert direct.bits < 0.85 * min(qmap.map_syntax(Q, y_tables, c).bits for c in ("step", "context"))
    assert qmap.map_syntax(Q, y_tables, "auto") == direct
    # a clustered map stays with the differences
    Q = np.zeros((12, 16), np.int32)
    Q[3:6, 4:9], Q[8:11, 2:5] = 4, -2
    assert qmap.map_syntax(Q, y_tables, "auto").direct is None


def test_direct_values_outside_the_table_are_rejected(rng):
    """An escaped value (outside V_min ... V_min + A - 1) makes the stream
    non-conforming, on every backend; so does a corrupt substream."""
    from kernels import rans
    V = np.array([0, 1, 2, 0, 1, 0], np.int32)            # 2 lies outside the table's -1 ... 1: an escape
    table = (-1, (10, 20, 10))
    data = rans.encode(V, np.zeros(6, np.int32), np.array([0, 6]), qmap.direct_tables(*table))[0]
    for backend in ("numpy", "cpu"):
        with pytest.raises(BitstreamError, match=r"V = 2 at block \(0, 2\)"):
            qmap.decode_qmap(data, 2, 3, 0, None, backend=backend, direct=table)
        with pytest.raises(BitstreamError):
            qmap.decode_qmap(data[:-2], 2, 3, 0, None, backend=backend, direct=table)
    with pytest.raises(ValueError, match="outside"):
        qmap.encode_direct(np.array([[3]]), -1, (1, 1, 1))


def test_direct_coding_end_to_end(tiny, rng):  # noqa: F811
    """Through the encoder and the decoder: the header says qmap_direct with
    its table, the map is the one coded, and the picture is the one the
    difference coding of the same map gives (the coding changes no sample)."""
    from refcodec.syntax.picture_header import write_picture_header
    rgb = rng.integers(0, 256, (192, 256, 3)).astype(np.uint8)
    an = encoder.Analysis(rgb, tiny)
    Q = rng.integers(-1, 2, an.qmap_grid(0)).astype(np.int32)
    data = an.stream(32768, 1, Q, 0)
    h = decoder.picture(data).header
    assert h.qmap_direct and not h.qmap_context and h.qmap_mode == 0x80
    assert h.qmap_v_min == -1 and len(h.qmap_freqs) == 3
    assert data.startswith(write_picture_header(h))
    an.qmap_coding = "step"
    rows = an.stream(32768, 1, Q, 0)
    assert not decoder.picture(rows).header.qmap_direct and len(rows) > len(data)
    tr = {}
    decoder.decode_latents(decoder.picture(data), tiny, "cpu", trace=tr)
    assert np.array_equal(tr["Q"], Q)
    assert np.array_equal(decoder.decode(data, models=[tiny]), decoder.decode(rows, models=[tiny]))
