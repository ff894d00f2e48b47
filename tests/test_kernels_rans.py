"""rANS coder: identical bytes and values on every backend, escapes, substreams,
efficiency against the information content, and corrupt input."""

import numpy as np
import pytest

from kernels import rans
from refcodec import arch as A
from refcodec.errors import EntropyDecodingError, ModelError, RefcodecError
from refcodec.tables import cdf_from_freq, gaussian_tables, quantize_pmf

SIGMAS = [A.sigma_of_index(k) for k in range(A.SIGMA_LEVELS)]
GAUSS = gaussian_tables(SIGMAS)


def random_tables(rng, rows=6):
    """Random tables: lengths from 2 (one symbol + escape) upward, assorted offsets."""
    lens = [2, 3, 17, 100, 5, 300][:rows]
    width = max(lens) + 1
    cdf = np.zeros((rows, width), np.int32)
    offs = np.array([0, -1, -8, -50, 30000, -32768][:rows], np.int32)
    for r, n in enumerate(lens):
        c = cdf_from_freq(quantize_pmf(rng.random(n) ** 4 + 1e-6))
        cdf[r, :n + 1] = c
        cdf[r, n + 1:] = c[-1]
    return cdf, np.array(lens, np.int32), offs


def gaussian_symbols(rng, n):
    rows = rng.integers(0, len(SIGMAS), n).astype(np.int32)
    vals = np.round(rng.normal(0, 1, n) * np.array(SIGMAS)[rows]).astype(np.int32)
    return vals, rows


def roundtrip(values, rows, starts, tables, backend):
    streams = rans.encode(values, rows, starts, *tables, backend=backend)
    data = b"".join(streams)
    out = rans.decode(data, [len(s) for s in streams], starts, rows, *tables, backend=backend)
    return streams, out


@pytest.mark.parametrize("case", ["gauss", "random_tables", "escapes", "single", "empty_substreams"])
def test_roundtrip_identical_on_every_backend(backend, rng, case):
    if case == "gauss":
        tables = GAUSS
        values, rows = gaussian_symbols(rng, 400)
        starts = np.array([0, 150, 400], np.int64)
    elif case == "random_tables":
        tables = random_tables(rng)
        rows = rng.integers(0, 6, 300).astype(np.int32)
        lo = tables[2][rows]
        values = (lo + rng.integers(0, tables[1][rows] - 1)).astype(np.int32)
        values[::7] = rng.integers(-32768, 32768, values[::7].size)   # many escapes
        starts = np.array([0, 1, 100, 300], np.int64)
    elif case == "escapes":
        # the largest escaped values at both ends of the value range, in every row
        tables = random_tables(rng)
        vals = [-32768, 32767, -32767, 32766, 0, -1, 1]
        values = np.array(vals * 6, np.int32)
        rows = np.repeat(np.arange(6, dtype=np.int32), len(vals))
        starts = np.array([0, values.size], np.int64)
    elif case == "single":
        tables = GAUSS
        values, rows = np.array([3], np.int32), np.array([10], np.int32)
        starts = np.array([0, 1], np.int64)
    else:
        tables = GAUSS
        values, rows = gaussian_symbols(rng, 50)
        starts = np.array([0, 0, 0, 25, 25, 50, 50], np.int64)
    ref_streams, _ = roundtrip(values, rows, starts, tables, "numpy")
    streams, out = roundtrip(values, rows, starts, tables, backend)
    assert streams == ref_streams
    assert np.array_equal(out, values)


def test_many_substreams_of_every_parity_with_escapes(backend, rng):
    """Odd, even, empty and escape-heavy substreams, an odd count: the numpy
    twin's bytes on every backend."""
    tables = random_tables(rng)
    rows = rng.integers(0, 6, 701).astype(np.int32)
    values = (tables[2][rows] + rng.integers(0, tables[1][rows] - 1)).astype(np.int32)
    values[::5] = rng.integers(-32768, 32768, values[::5].size)
    starts = np.array([0, 0, 1, 2, 101, 300, 300, 551, 552, 701], np.int64)
    ref_streams, _ = roundtrip(values, rows, starts, tables, "numpy")
    streams, out = roundtrip(values, rows, starts, tables, backend)
    assert streams == ref_streams
    assert np.array_equal(out, values)


def test_empty_substream_is_eight_bytes():
    streams = rans.encode(np.zeros(0, np.int32), np.zeros(0, np.int32), np.array([0, 0], np.int64), *GAUSS,
                          backend="numpy")
    assert streams == [b"\x01\x00\x00\x00" * 2]       # two coder states, 2^16 each


def test_efficiency_within_0p1_percent_of_information_content(rng):
    """192 x 32 x 48 Gaussian symbols (768 x 512 image), sigma log-uniform over the table."""
    n = 192 * 32 * 48
    values, rows = gaussian_symbols(rng, n)
    S = 8
    starts = np.linspace(0, n, S + 1).astype(np.int64)
    streams = rans.encode(values, rows, starts, *GAUSS, backend="cpu")
    size = sum(len(s) for s in streams)
    ideal = rans.ideal_bits(values, rows, *GAUSS) / 8
    assert size <= ideal * 1.001 + 8 * S, (size, ideal)
    out = rans.decode(b"".join(streams), [len(s) for s in streams], starts, rows, *GAUSS, backend="cpu")
    assert np.array_equal(out, values)
    # the readable twin writes the very same bytes (checked on two substreams)
    part = starts[:3].copy()
    sub = rans.encode(values[:part[-1]], rows[:part[-1]], part, *GAUSS, backend="numpy")
    assert sub == streams[:2]


def corruptions(stream, rng):
    yield stream[:-2], "truncated"
    yield stream[:2], "header only"
    yield stream + b"\x00\x00", "extra word"
    for _ in range(6):
        b = bytearray(stream)
        i = int(rng.integers(len(b)))
        b[i] ^= 1 << int(rng.integers(8))
        yield bytes(b), f"bit flip at {i}"
    yield bytes(rng.integers(0, 256, len(stream)).astype(np.uint8)), "random bytes"


def assert_corruptions_agree(stream, rng, decode, backend):
    """Every corruption of ``stream`` decodes to the same values, or fails with
    the same error, on numpy and ``backend`` (``decode(data, backend)``)."""
    for bad, what in corruptions(stream, rng):
        if len(bad) % 2:
            bad = bad[:-1]
        results = []
        for be in ("numpy", backend):
            try:
                results.append(("ok", decode(bad, be).tolist()))
            except EntropyDecodingError as e:
                results.append(("error", str(e)))
        assert results[0] == results[1], what


def test_corrupt_streams_fail_the_same_way_on_every_backend(backend, rng):
    values, rows = gaussian_symbols(rng, 120)
    values[5] = 20000  # an escape
    starts = np.array([0, 120], np.int64)
    stream = rans.encode(values, rows, starts, *GAUSS, backend="numpy")[0]
    assert_corruptions_agree(stream, rng, lambda d, be: rans.decode(d, [len(d)], starts, rows, *GAUSS, backend=be),
                             backend)
    with pytest.raises(EntropyDecodingError, match="substream 0"):
        rans.decode(stream[:-2], [len(stream) - 2], starts, rows, *GAUSS, backend=backend)


def test_decode_rejects_inconsistent_lengths():
    with pytest.raises(RefcodecError):
        rans.decode(b"\x01\x00\x00\x00" * 2, [7], np.array([0, 0], np.int64), np.zeros(0, np.int32), *GAUSS)


def test_encode_rejects_values_outside_range():
    with pytest.raises(RefcodecError):
        rans.encode(np.array([40000], np.int32), np.array([0], np.int32), np.array([0, 1]), *GAUSS)


@pytest.mark.parametrize("defect", ["not_monotonic", "wrong_total", "zero_freq", "bad_len", "support"])
def test_check_tables_rejects_bad_tables(defect):
    cdf, cdf_len, offset = (a.copy() for a in GAUSS)
    if defect == "not_monotonic":
        cdf[3, 2], cdf[3, 3] = cdf[3, 3], cdf[3, 2]
    elif defect == "wrong_total":
        cdf[4, cdf_len[4]] = 65535
    elif defect == "zero_freq":
        cdf[5, 2] = cdf[5, 1]
    elif defect == "bad_len":
        cdf_len[0] = 1
    else:
        offset[7] = -40000
    with pytest.raises(ModelError, match="row"):
        rans.check_tables(cdf, cdf_len, offset)
    rans.check_tables(*GAUSS)


def test_reciprocal_division_is_exact_for_every_frequency():
    """The encoder divides by a multiplication with m = ceil(2^48 / freq) and
    a shift (kernels.rans.reciprocal): check (x * m) >> 48 == x // freq, with
    no uint64 wrap, for every frequency 1 .. 2^16 at the states where it can
    fail (multiples of freq and their neighbours, the largest state the
    encoder divides, freq * 2^16 - 1) and at random states below it."""
    freq = np.arange(1, (1 << 16) + 1, dtype=np.int64)
    m = rans.reciprocal(freq)
    assert m.dtype == np.uint64
    assert np.all(m.astype(object) * freq.astype(object) >= 1 << 48)
    rng = np.random.default_rng(7)
    top = freq << 16                       # the division's states are below freq * 2^16
    xs = [top - 1, top - 1 - (top - 1) % freq, top - 1 - (top - 1) % freq - 1]
    for k in [1, 2, 3, 255, 256, 65535]:
        for d in (-1, 0, 1):
            xs.append(np.clip(k * freq + d, 0, top - 1))
    xs += [rng.integers(0, top) for _ in range(20)]
    for x in xs:
        wide = x.astype(object) * m.astype(object)
        assert max(wide) < 1 << 64
        q = ((x.astype(np.uint64) * m) >> np.uint64(48)).astype(np.int64)
        assert np.array_equal(q, x // freq)


def test_encoder_table_is_the_cdf_tables():
    """Each entry of kernels.rans.encoder_table restates the CDF tables:
    start, freq << 16, 2^16 - freq and reciprocal(freq) of every symbol, found
    at v + rt[4r] for the values v of row r (the escape one past the top)."""
    cdf, cdf_len, offset = GAUSS
    rt, st = rans.encoder_table(cdf, cdf_len, offset)
    for r in range(cdf_len.size):
        n = int(cdf_len[r])
        lo, top = rt[4 * r + 1], rt[4 * r + 2]
        assert (lo, top) == (offset[r], n - 2)
        t = np.arange(lo, lo + n) + rt[4 * r]          # every value of the row, then the escape
        start = cdf[r, :n].astype(np.int64)
        freq = cdf[r, 1:n + 1].astype(np.int64) - start
        assert np.array_equal(st[4 * t], start)
        assert np.array_equal(st[4 * t + 1], freq << 16)
        assert np.array_equal(st[4 * t + 2], 65536 - freq)
        assert np.array_equal(st[4 * t + 3].astype(np.uint64), rans.reciprocal(freq))
    assert st.size == 4 * int(cdf_len.sum())


def test_encode_rows_of_uniform_frequency_two_power(backend):
    """Frequencies that are powers of two (uniform symbols, the escape's bits)
    take the exact-reciprocal path; long runs of them on both states."""
    cdf = (np.arange(257, dtype=np.int32) * 256)[None]      # 255 values and the escape, 256 each
    cdf_len = np.array([256], np.int32)
    offset = np.array([-128], np.int32)
    rng = np.random.default_rng(3)
    values = rng.integers(-300, 300, 5001).astype(np.int32)
    rows = np.zeros(values.size, np.int32)
    starts = np.array([0, 2500, 5001], np.int64)
    streams, out = roundtrip(values, rows, starts, (cdf, cdf_len, offset), backend)
    assert np.array_equal(out, values)
    ref = rans.encode(values, rows, starts, cdf, cdf_len, offset, backend="numpy")
    assert streams == ref


def test_decoder_lut_is_the_searchsorted_definition(rng):
    """build_lut (one sweep per row, numba) against its definition: the
    largest symbol a with cdf[r, a] <= slot, for Gaussian and random tables."""
    for cdf, cdf_len, _ in (GAUSS, random_tables(rng)):
        slots = np.arange(1 << rans.LUT_BITS, dtype=np.int64) << rans.LUT_SHIFT
        want = np.stack([np.searchsorted(cdf[r, :int(cdf_len[r]) + 1], slots, side="right") - 1
                         for r in range(cdf.shape[0])])
        assert np.array_equal(rans.build_lut(cdf, cdf_len), want)


def test_prepared_tables_code_as_the_bare_arrays(backend, rng):
    """A rans.Tables (what a model holds: derived tables built once) gives
    the bytes and values of the bare arrays, call after call, and keeps its
    own copies: changing the caller's arrays afterwards changes nothing."""
    cdf, cdf_len, offset = (a.copy() for a in random_tables(rng))
    tables = rans.Tables(cdf, cdf_len, offset)
    rows = rng.integers(0, cdf.shape[0], 3001).astype(np.int32)
    values = np.clip(offset[rows] + rng.integers(-3, 40, rows.size), -32768, 32767).astype(np.int32)  # escapes too
    starts = np.array([0, 1000, 1001, 3001], np.int64)
    ref = rans.encode(values, rows, starts, cdf, cdf_len, offset, backend="numpy")
    for _ in range(2):
        streams = rans.encode(values, rows, starts, tables, backend=backend)
        assert streams == ref
        out = rans.decode(b"".join(streams), [len(s) for s in streams], starts, rows, tables, backend=backend)
        assert np.array_equal(out, values)
    cdf[:] = 0
    offset[:] = 7
    assert rans.encode(values, rows, starts, tables, backend=backend) == ref


def test_tables_arguments_are_either_one_tables_or_three_arrays():
    tables = rans.Tables(*GAUSS)
    one = (np.zeros(1, np.int32), np.zeros(1, np.int32), np.array([0, 1], np.int64))
    with pytest.raises(TypeError):
        rans.encode(*one, tables, GAUSS[1], GAUSS[2])
    with pytest.raises(TypeError):
        rans.encode(*one, GAUSS[0])
    assert rans.encode(*one, tables) == rans.encode(*one, *GAUSS) == rans.encode(*one, tuple(GAUSS))


# ---------------------------------------------------------------- grid coder (clause 6.7's map)

def sparse_grid(rng, h, w, p=0.3, scale=3):
    v = np.round(rng.normal(0, scale, (h, w))).astype(np.int32)
    return np.where(rng.random((h, w)) < p, v, 0).astype(np.int32)


def test_grid_contexts_count_nonzero_left_and_upper_neighbours():
    v = np.array([[0, 2, 0],
                  [1, 0, -3]])
    assert rans.grid_contexts(v).tolist() == [0, 0, 1,
                                              0, 2, 0 + 0]
    v = np.array([[5, 5], [5, 5]])
    assert rans.grid_contexts(v).tolist() == [0, 1, 1, 2]


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (13, 17), (0, 5), (40, 33)])
def test_grid_roundtrip_identical_on_every_backend(backend, rng, shape):
    values = sparse_grid(rng, *shape)
    if values.size:
        values.flat[rng.integers(values.size)] = -32768          # an escape
    ctx_rows = np.array([3, 17, 40], np.int32)
    data = rans.encode_grid(values, ctx_rows, *GAUSS, backend="numpy")
    assert rans.encode_grid(values, ctx_rows, *GAUSS, backend=backend) == data
    for be in ("numpy", backend):
        assert np.array_equal(rans.decode_grid(data, *shape, ctx_rows, *GAUSS, backend=be), values)


def test_grid_with_one_row_is_the_plain_substream(backend, rng):
    """Three equal context rows: the very bytes of rans.encode with that row
    everywhere (the first edition's map coding), decoded by either."""
    values = sparse_grid(rng, 9, 11)
    rows = np.full(values.size, 12, np.int32)
    starts = np.array([0, values.size], np.int64)
    plain = rans.encode(values.reshape(-1), rows, starts, *GAUSS, backend="numpy")[0]
    assert rans.encode_grid(values, [12, 12, 12], *GAUSS, backend=backend) == plain
    assert np.array_equal(rans.decode_grid(plain, 9, 11, [12, 12, 12], *GAUSS, backend=backend), values)


def test_grid_contexts_save_bits_on_clustered_maps(rng):
    """Runs of zeros and clusters of changes (a smooth map's differences): the
    contexts' rows code them in fewer bytes than the best single row."""
    values = np.zeros((30, 40), np.int32)
    for _ in range(12):
        i, j = rng.integers(0, 26), rng.integers(0, 36)
        values[i:i + 4, j:j + 4] = rng.choice([-2, -1, 1, 2], (4, 4))
    best_one = min(len(rans.encode_grid(values, [r] * 3, *GAUSS)) for r in range(0, 40))
    ctx = rans.grid_contexts(values)
    rows = []
    for c in range(3):
        v = values.reshape(-1)[ctx == c]
        rows.append(min(range(40), key=lambda r: rans.ideal_bits(v, np.full(v.size, r, np.int32), *GAUSS)))
    assert len(rans.encode_grid(values, rows, *GAUSS)) < 0.9 * best_one


def test_corrupt_grids_fail_the_same_way_on_every_backend(backend, rng):
    values = sparse_grid(rng, 12, 10)
    values[3, 4] = 20000
    ctx_rows = [5, 20, 30]
    stream = rans.encode_grid(values, ctx_rows, *GAUSS, backend="numpy")
    assert_corruptions_agree(stream, rng, lambda d, be: rans.decode_grid(d, 12, 10, ctx_rows, *GAUSS, backend=be),
                             backend)
    with pytest.raises(EntropyDecodingError, match="substream 0"):
        rans.decode_grid(stream[:-2], 12, 10, ctx_rows, *GAUSS, backend=backend)
    with pytest.raises(RefcodecError, match="context rows"):
        rans.decode_grid(stream, 12, 10, [5, 20], *GAUSS, backend=backend)
    with pytest.raises(RefcodecError, match="context rows"):
        rans.decode_grid(stream, 12, 10, [5, 20, 80], *GAUSS, backend=backend)
