"""rANS entropy coder over integer CDF tables (SPEC.md clause 6.1).

Coder: range asymmetric numeral systems with a 32-bit state ``x`` kept in
[2^16, 2^32), 16-bit probability precision and 16-bit output words.  A stream
is a sequence of little-endian 16-bit words; the decoder reads it forward.

Tables: row ``r`` of ``cdf`` (int32) has ``n = cdf_len[r]`` symbols with
``cdf[r, 0] = 0 < cdf[r, 1] < ... < cdf[r, n] = 2^16``; symbol ``s < n - 1``
stands for the value ``offset[r] + s`` and symbol ``n - 1`` is the escape.

Escape (values outside ``[lo, hi] = [offset, offset + n - 2]``): after the
escape symbol come, each as a uniform symbol of b bits
(start ``v << (16 - b)``, frequency ``2^(16 - b)``):

* ``nb`` (5 bits), then the ``nb`` low bits of ``m = u + 1`` without its
  leading one, in chunks of 16 bits, least significant chunk first;
* ``u = 2 (lo - v) - 1`` when ``v < lo`` (odd) and ``u = 2 (v - hi) - 2``
  when ``v > hi`` (even).

Values must lie in [-32768, 32767], so ``nb <= 17``.

Substreams: the symbols are split by ``starts`` (``starts[0] = 0``, ...,
``starts[S] = n``) into S independent streams, encoded and decoded in
parallel (prange on CPU, one thread each on CUDA).  A stream opens with its
state (high word first); a decoder checks at the end that every word was read
and that the state is back at 2^16, which catches most corruption.

Bit widths: state fits uint32 (held in int64); ``freq * (x >> 16)`` fits
uint32; cdf entries fit 17 bits.
"""

import numpy as np
from numba import njit, prange

from .config import NJIT, NJIT_PARALLEL, check_backend

PRECISION = 16
RANS_L = 1 << 16
VALUE_MIN = -32768
VALUE_MAX = 32767
NB_BITS = 5
NB_MAX = 17
#: Largest number of 16-bit words one symbol can produce (escape with nb = 17).
MAX_WORDS_PER_SYMBOL = 4

# status codes shared by the kernels
OK, ERR_EOF, ERR_NB, ERR_RANGE, ERR_FINAL, ERR_LEFTOVER, ERR_INIT = 0, 1, 2, 3, 4, 5, 6
STATUS_TEXT = {
    ERR_EOF: "stream ends before its last symbol",
    ERR_NB: f"escape length above {NB_MAX} bits",
    ERR_RANGE: f"escaped value outside [{VALUE_MIN}, {VALUE_MAX}]",
    ERR_FINAL: "final coder state is not the initial state",
    ERR_LEFTOVER: "words left over after the last symbol",
    ERR_INIT: "initial coder state below 2^16",
}


def check_tables(cdf, cdf_len, offset):
    """Validate CDF tables (raises ModelError naming the row)."""
    from refcodec.errors import ModelError
    if cdf.dtype != np.int32 or cdf.ndim != 2 or cdf_len.dtype != np.int32 or offset.dtype != np.int32:
        raise ModelError("CDF tables must be int32 arrays (cdf 2-D, cdf_len and offset 1-D)")
    rows = cdf.shape[0]
    if cdf_len.shape != (rows,) or offset.shape != (rows,):
        raise ModelError("cdf_len and offset must have one entry per CDF row")
    for r in range(rows):
        n = int(cdf_len[r])
        if not 2 <= n <= cdf.shape[1] - 1:
            raise ModelError(f"CDF row {r}: length {n} outside [2, {cdf.shape[1] - 1}]")
        row = cdf[r, :n + 1].astype(np.int64)
        if row[0] != 0 or row[-1] != 1 << PRECISION or np.any(np.diff(row) <= 0):
            raise ModelError(f"CDF row {r}: must rise strictly from 0 to 2^{PRECISION}")
        lo, hi = int(offset[r]), int(offset[r]) + n - 2
        if lo < VALUE_MIN or hi > VALUE_MAX:
            raise ModelError(f"CDF row {r}: support [{lo}, {hi}] outside the value range")


def escape_code(v, lo, hi):
    """(u, m, nb) of an escaped value v (see the module docstring)."""
    u = 2 * (lo - v) - 1 if v < lo else 2 * (v - hi) - 2
    m = u + 1
    return u, m, m.bit_length() - 1


def ideal_bits(values, rows, cdf, cdf_len, offset):
    """Information content in bits of the symbols under the integer tables,
    escapes included (the bound the coder is measured against)."""
    bits = 0.0
    for v, r in zip(values.tolist(), rows.tolist()):
        n, lo = int(cdf_len[r]), int(offset[r])
        hi = lo + n - 2
        s = v - lo if lo <= v <= hi else n - 1
        bits -= np.log2((int(cdf[r, s + 1]) - int(cdf[r, s])) / (1 << PRECISION))
        if s == n - 1:
            bits += NB_BITS + escape_code(v, lo, hi)[2]
    return bits


# ===========================================================================
# numpy twin: the readable oracle, one symbol at a time.
# ===========================================================================

class RansEncoder:
    """Encoder of one substream.  Symbols are pushed in reverse order."""

    def __init__(self):
        self.x = RANS_L
        self.words = []          # in emission order; the stream is their reverse

    def put(self, start, freq):
        x_max = freq << 16
        if self.x >= x_max:
            self.words.append(self.x & 0xFFFF)
            self.x >>= 16
        self.x = ((self.x // freq) << PRECISION) + (self.x % freq) + start

    def put_bits(self, value, b):
        self.put(value << (PRECISION - b), 1 << (PRECISION - b))

    def put_value(self, v, row, cdf, cdf_len, offset):
        n, lo = int(cdf_len[row]), int(offset[row])
        hi = lo + n - 2
        if lo <= v <= hi:
            s = v - lo
            self.put(int(cdf[row, s]), int(cdf[row, s + 1]) - int(cdf[row, s]))
            return
        _, m, nb = escape_code(v, lo, hi)
        if nb > 16:
            self.put_bits((m >> 16) & ((1 << (nb - 16)) - 1), nb - 16)
        if nb > 0:
            b0 = min(nb, 16)
            self.put_bits(m & ((1 << b0) - 1), b0)
        self.put_bits(nb, NB_BITS)
        self.put(int(cdf[row, n - 1]), (1 << PRECISION) - int(cdf[row, n - 1]))

    def finish(self):
        words = self.words + [self.x & 0xFFFF, self.x >> 16]
        return np.array(words[::-1], dtype="<u2").tobytes()


class RansDecoder:
    """Decoder of one substream; raises ``_Fail(status)`` on a bad stream."""

    class Fail(Exception):
        pass

    def __init__(self, data):
        self.w = np.frombuffer(data, dtype="<u2")
        if self.w.size < 2:
            raise self.Fail(ERR_EOF)
        self.x = (int(self.w[0]) << 16) | int(self.w[1])
        self.pos = 2
        if self.x < RANS_L:
            raise self.Fail(ERR_INIT)

    def advance(self, start, freq, slot):
        self.x = freq * (self.x >> 16) + slot - start
        if self.x < RANS_L:
            if self.pos >= self.w.size:
                raise self.Fail(ERR_EOF)
            self.x = (self.x << 16) | int(self.w[self.pos])
            self.pos += 1

    def get_bits(self, b):
        slot = self.x & 0xFFFF
        v = slot >> (PRECISION - b)
        self.advance(v << (PRECISION - b), 1 << (PRECISION - b), slot)
        return v

    def get_value(self, row, cdf, cdf_len, offset):
        n, lo = int(cdf_len[row]), int(offset[row])
        slot = self.x & 0xFFFF
        s = int(np.searchsorted(cdf[row, :n + 1], slot, side="right")) - 1
        start = int(cdf[row, s])
        self.advance(start, int(cdf[row, s + 1]) - start, slot)
        if s < n - 1:
            return lo + s
        nb = self.get_bits(NB_BITS)
        if nb > NB_MAX:
            raise self.Fail(ERR_NB)
        m = 1 << nb
        if nb > 0:
            b0 = min(nb, 16)
            m |= self.get_bits(b0)
            if nb > 16:
                m |= self.get_bits(nb - 16) << 16
        u = m - 1
        hi = lo + n - 2
        v = lo - (u + 1) // 2 if u & 1 else hi + (u + 2) // 2
        if not VALUE_MIN <= v <= VALUE_MAX:
            raise self.Fail(ERR_RANGE)
        return v

    def finish(self):
        if self.pos != self.w.size:
            raise self.Fail(ERR_LEFTOVER)
        if self.x != RANS_L:
            raise self.Fail(ERR_FINAL)


def encode_numpy(values, rows, starts, cdf, cdf_len, offset):
    out = []
    for s in range(starts.size - 1):
        enc = RansEncoder()
        for i in range(int(starts[s + 1]) - 1, int(starts[s]) - 1, -1):
            enc.put_value(int(values[i]), int(rows[i]), cdf, cdf_len, offset)
        out.append(enc.finish())
    return out


def decode_numpy(data, lengths, starts, rows, cdf, cdf_len, offset):
    values = np.zeros(int(starts[-1]), np.int32)
    status = np.zeros(starts.size - 1, np.int32)
    pos = 0
    for s in range(starts.size - 1):
        chunk = data[pos:pos + int(lengths[s])]
        pos += int(lengths[s])
        try:
            dec = RansDecoder(chunk)
            for i in range(int(starts[s]), int(starts[s + 1])):
                values[i] = dec.get_value(int(rows[i]), cdf, cdf_len, offset)
            dec.finish()
        except RansDecoder.Fail as f:
            status[s] = f.args[0]
    return values, status


# ===========================================================================
# numba CPU: the same process, one prange task per substream.
# ===========================================================================

@njit(**NJIT)
def _put(x, start, freq, buf, pos):
    if x >= (np.int64(freq) << 16):
        pos -= 1
        buf[pos] = np.uint16(x & 0xFFFF)
        x >>= 16
    x = ((x // freq) << 16) + (x % freq) + start
    return x, pos


@njit(**NJIT)
def _encode_one(s, values, rows, starts, cdf, cdf_len, offset, buf, region, first):
    """Encode substream s into buf[first[s]:region[s + 1]] (written backward)."""
    x = np.int64(RANS_L)
    pos = region[s + 1]
    for i in range(starts[s + 1] - 1, starts[s] - 1, -1):
        v = np.int64(values[i])
        r = rows[i]
        n = np.int64(cdf_len[r])
        lo = np.int64(offset[r])
        hi = lo + n - 2
        if lo <= v <= hi:
            sym = v - lo
            st = np.int64(cdf[r, sym])
            x, pos = _put(x, st, np.int64(cdf[r, sym + 1]) - st, buf, pos)
            continue
        if v < lo:
            u = 2 * (lo - v) - 1
        else:
            u = 2 * (v - hi) - 2
        m = u + 1
        nb = np.int64(0)
        while (m >> (nb + 1)) > 0:
            nb += 1
        if nb > 16:
            b = nb - 16
            val = (m >> 16) & ((np.int64(1) << b) - 1)
            x, pos = _put(x, val << (16 - b), np.int64(1) << (16 - b), buf, pos)
        if nb > 0:
            b = min(nb, np.int64(16))
            val = m & ((np.int64(1) << b) - 1)
            x, pos = _put(x, val << (16 - b), np.int64(1) << (16 - b), buf, pos)
        x, pos = _put(x, nb << (16 - NB_BITS), np.int64(1) << (16 - NB_BITS), buf, pos)
        st = np.int64(cdf[r, n - 1])
        x, pos = _put(x, st, np.int64(1 << 16) - st, buf, pos)
    pos -= 1
    buf[pos] = np.uint16(x & 0xFFFF)
    pos -= 1
    buf[pos] = np.uint16(x >> 16)
    first[s] = pos


@njit(**NJIT_PARALLEL)
def _encode_cpu(values, rows, starts, cdf, cdf_len, offset, buf, region, first):
    for s in prange(starts.size - 1):
        _encode_one(s, values, rows, starts, cdf, cdf_len, offset, buf, region, first)


@njit(**NJIT)
def _get_bits(x, b, w, pos, end):
    slot = x & 0xFFFF
    v = slot >> (16 - b)
    x = (np.int64(1) << (16 - b)) * (x >> 16) + slot - (v << (16 - b))
    if x < RANS_L:
        if pos >= end:
            return v, x, pos, False
        x = (x << 16) | np.int64(w[pos])
        pos += 1
    return v, x, pos, True


@njit(**NJIT)
def _decode_one(s, w, wstart, starts, rows, cdf, cdf_len, offset, values, status):
    """Decode substream s (words w[wstart[s]:wstart[s + 1]]); status[s] = 0 or an error code."""
    pos = wstart[s]
    end = wstart[s + 1]
    if end - pos < 2:
        status[s] = ERR_EOF
        return
    x = (np.int64(w[pos]) << 16) | np.int64(w[pos + 1])
    pos += 2
    if x < RANS_L:
        status[s] = ERR_INIT
        return
    st_code = OK
    for i in range(starts[s], starts[s + 1]):
        r = rows[i]
        n = np.int64(cdf_len[r])
        lo = np.int64(offset[r])
        slot = x & 0xFFFF
        a = np.int64(0)
        b = n
        while b - a > 1:
            mid = (a + b) >> 1
            if cdf[r, mid] <= slot:
                a = mid
            else:
                b = mid
        start = np.int64(cdf[r, a])
        freq = np.int64(cdf[r, a + 1]) - start
        x = freq * (x >> 16) + slot - start
        if x < RANS_L:
            if pos >= end:
                st_code = ERR_EOF
                break
            x = (x << 16) | np.int64(w[pos])
            pos += 1
        if a < n - 1:
            values[i] = np.int32(lo + a)
            continue
        nb, x, pos, ok = _get_bits(x, np.int64(NB_BITS), w, pos, end)
        if not ok:
            st_code = ERR_EOF
            break
        if nb > NB_MAX:
            st_code = ERR_NB
            break
        m = np.int64(1) << nb
        if nb > 0:
            v0, x, pos, ok = _get_bits(x, min(nb, np.int64(16)), w, pos, end)
            if not ok:
                st_code = ERR_EOF
                break
            m |= v0
            if nb > 16:
                v1, x, pos, ok = _get_bits(x, nb - 16, w, pos, end)
                if not ok:
                    st_code = ERR_EOF
                    break
                m |= v1 << 16
        u = m - 1
        if u & 1:
            v = lo - (u + 1) // 2
        else:
            v = lo + n - 2 + (u + 2) // 2
        if v < VALUE_MIN or v > VALUE_MAX:
            st_code = ERR_RANGE
            break
        values[i] = np.int32(v)
    if st_code == OK:
        if pos != end:
            st_code = ERR_LEFTOVER
        elif x != RANS_L:
            st_code = ERR_FINAL
    status[s] = st_code


@njit(**NJIT_PARALLEL)
def _decode_cpu(w, wstart, starts, rows, cdf, cdf_len, offset, values, status):
    for s in prange(starts.size - 1):
        _decode_one(s, w, wstart, starts, rows, cdf, cdf_len, offset, values, status)


def _regions(starts):
    n_per = np.diff(starts).astype(np.int64)
    return np.concatenate([[0], np.cumsum(MAX_WORDS_PER_SYMBOL * n_per + 2)]).astype(np.int64)


def encode_cpu(values, rows, starts, cdf, cdf_len, offset):
    region = _regions(starts)
    buf = np.empty(int(region[-1]), np.uint16)
    first = np.empty(starts.size - 1, np.int64)
    _encode_cpu(values, rows, starts, cdf, cdf_len, offset, buf, region, first)
    return [buf[first[s]:region[s + 1]].astype("<u2").tobytes() for s in range(starts.size - 1)]


def _words(data, lengths):
    w = np.frombuffer(data, dtype="<u2") if len(data) else np.zeros(0, np.uint16)
    wstart = np.concatenate([[0], np.cumsum(np.asarray(lengths, np.int64) // 2)]).astype(np.int64)
    return w, wstart


def decode_cpu(data, lengths, starts, rows, cdf, cdf_len, offset):
    w, wstart = _words(data, lengths)
    values = np.zeros(int(starts[-1]), np.int32)
    status = np.zeros(starts.size - 1, np.int32)
    _decode_cpu(w, wstart, starts, rows, cdf, cdf_len, offset, values, status)
    return values, status


# ===========================================================================
# dispatch
# ===========================================================================

def _prepare(values_or_rows, rows, starts):
    from refcodec.errors import RefcodecError
    starts = np.ascontiguousarray(starts, np.int64)
    rows = np.ascontiguousarray(rows, np.int32)
    if starts.ndim != 1 or starts.size < 2 or starts[0] != 0 or np.any(np.diff(starts) < 0) \
            or starts[-1] != rows.size:
        raise RefcodecError("rans: starts must rise from 0 to the number of symbols")
    return rows, starts


def encode(values, rows, starts, cdf, cdf_len, offset, backend="cpu"):
    """Encode ``values`` (int32) with table rows ``rows`` into one bytes
    object per substream.  Values must lie in [VALUE_MIN, VALUE_MAX] and rows
    in [0, R)."""
    from refcodec.errors import RefcodecError
    check_backend(backend)
    values = np.ascontiguousarray(values, np.int32)
    rows, starts = _prepare(values, rows, starts)
    if values.shape != rows.shape:
        raise RefcodecError("rans: values and rows differ in length")
    if values.size and (values.min() < VALUE_MIN or values.max() > VALUE_MAX):
        raise RefcodecError(f"rans: values must lie in [{VALUE_MIN}, {VALUE_MAX}]")
    if rows.size and (rows.min() < 0 or rows.max() >= cdf.shape[0]):
        raise RefcodecError("rans: a table row index is out of range")
    if backend == "numpy":
        return encode_numpy(values, rows, starts, cdf, cdf_len, offset)
    if backend == "cpu":
        return encode_cpu(values, rows, starts, cdf, cdf_len, offset)
    from .cuda import rans as cuda_rans
    return cuda_rans.encode_cuda(values, rows, starts, cdf, cdf_len, offset, _regions(starts))


def decode(data, lengths, starts, rows, cdf, cdf_len, offset, backend="cpu"):
    """Decode the substreams concatenated in ``data`` (byte lengths
    ``lengths``, each even).  Returns the int32 values; raises
    :class:`refcodec.errors.EntropyDecodingError` naming the first bad
    substream."""
    from refcodec.errors import EntropyDecodingError, RefcodecError
    check_backend(backend)
    rows, starts = _prepare(rows, rows, starts)
    lengths = np.asarray(lengths, np.int64)
    if lengths.shape != (starts.size - 1,) or np.any(lengths % 2) or np.any(lengths < 0) \
            or int(lengths.sum()) != len(data):
        raise RefcodecError("rans: substream lengths must be even and add up to the data size")
    if rows.size and (rows.min() < 0 or rows.max() >= cdf.shape[0]):
        raise RefcodecError("rans: a table row index is out of range")
    data = bytes(data)
    if backend == "numpy":
        values, status = decode_numpy(data, lengths, starts, rows, cdf, cdf_len, offset)
    elif backend == "cpu":
        values, status = decode_cpu(data, lengths, starts, rows, cdf, cdf_len, offset)
    else:
        from .cuda import rans as cuda_rans
        w, wstart = _words(data, lengths)
        values, status = cuda_rans.decode_cuda(w, wstart, starts, rows, cdf, cdf_len, offset)
    bad = np.flatnonzero(status)
    if bad.size:
        s = int(bad[0])
        raise EntropyDecodingError(f"substream {s}: {STATUS_TEXT[int(status[s])]}",
                                   field=f"substream[{s}]", clause="6.1")
    return values
