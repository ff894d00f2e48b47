"""rANS entropy coder over integer CDF tables (SPEC.md clause 6.1).

Coder: range asymmetric numeral systems with two interleaved 32-bit states
kept in [2^16, 2^32) (symbol j of a substream uses state j % 2), 16-bit
probability precision and 16-bit output words.  A stream is a sequence of
little-endian 16-bit words; the decoder reads it forward.

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
two states (high word first); a decoder checks at the end that every word was
read and that both states are back at 2^16, which catches most corruption.

Bit widths: state fits uint32 (held in int64); ``freq * (x >> 16)`` fits
uint32; cdf entries fit 17 bits; the encoder's division ``x * m`` (m =
ceil(2^48 / freq), x < freq 2^16) fits uint64 (see :func:`reciprocal`).
"""

import numpy as np
from numba import njit, prange

from .config import NJIT, NJIT_INLINE, NJIT_PARALLEL, check_backend

PRECISION = 16
#: Interleaved coder states per substream (symbol j of a substream uses state j % 2).
STATES = 2
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
    """Validate CDF tables (raises the table error, refcodec's ModelError, naming the row)."""
    from .errors import error
    if cdf.dtype != np.int32 or cdf.ndim != 2 or cdf_len.dtype != np.int32 or offset.dtype != np.int32:
        raise error("table", "CDF tables must be int32 arrays (cdf 2-D, cdf_len and offset 1-D)")
    rows = cdf.shape[0]
    if cdf_len.shape != (rows,) or offset.shape != (rows,):
        raise error("table", "cdf_len and offset must have one entry per CDF row")
    for r in range(rows):
        n = int(cdf_len[r])
        if not 2 <= n <= cdf.shape[1] - 1:
            raise error("table", f"CDF row {r}: length {n} outside [2, {cdf.shape[1] - 1}]")
        row = cdf[r, :n + 1].astype(np.int64)
        if row[0] != 0 or row[-1] != 1 << PRECISION or np.any(np.diff(row) <= 0):
            raise error("table", f"CDF row {r}: must rise strictly from 0 to 2^{PRECISION}")
        lo, hi = int(offset[r]), int(offset[r]) + n - 2
        if lo < VALUE_MIN or hi > VALUE_MAX:
            raise error("table", f"CDF row {r}: support [{lo}, {hi}] outside the value range")


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


#: The decoders' symbol search starts from a per-row table indexed by the top
#: LUT_BITS bits of the slot (derived from the CDF; not part of the format).
LUT_BITS = 10
LUT_SHIFT = PRECISION - LUT_BITS


def build_lut(cdf, cdf_len):
    """lut[r, b] = the symbol whose interval holds slot b << LUT_SHIFT (uint16):
    the largest a < cdf_len[r] with cdf[r, a] <= slot (one sweep per row)."""
    lut = np.zeros((cdf.shape[0], 1 << LUT_BITS), np.uint16)
    _fill_lut(np.ascontiguousarray(cdf, np.int32), np.ascontiguousarray(cdf_len, np.int64), lut)
    return lut


@njit(**NJIT)
def _fill_lut(cdf, cdf_len, lut):
    for r in range(cdf.shape[0]):
        a = np.int64(0)
        n = cdf_len[r]
        for b in range(lut.shape[1]):
            slot = np.int64(b) << LUT_SHIFT
            while a + 1 < n and cdf[r, a + 1] <= slot:
                a += 1
            lut[r, b] = np.uint16(a)


# ===========================================================================
# numpy twin: the readable oracle, one symbol at a time.
# ===========================================================================

class RansEncoder:
    """Encoder of one substream.  Symbols are pushed in reverse order; symbol
    j (counted from the substream start) goes to state j % 2."""

    def __init__(self):
        self.x = [RANS_L] * STATES
        self.words = []          # in emission order; the stream is their reverse

    def put(self, k, start, freq):
        if self.x[k] >= freq << 16:
            self.words.append(self.x[k] & 0xFFFF)
            self.x[k] >>= 16
        self.x[k] = ((self.x[k] // freq) << PRECISION) + (self.x[k] % freq) + start

    def put_bits(self, k, value, b):
        self.put(k, value << (PRECISION - b), 1 << (PRECISION - b))

    def put_value(self, k, v, row, cdf, cdf_len, offset):
        n, lo = int(cdf_len[row]), int(offset[row])
        hi = lo + n - 2
        if lo <= v <= hi:
            s = v - lo
            self.put(k, int(cdf[row, s]), int(cdf[row, s + 1]) - int(cdf[row, s]))
            return
        _, m, nb = escape_code(v, lo, hi)
        if nb > 16:
            self.put_bits(k, (m >> 16) & ((1 << (nb - 16)) - 1), nb - 16)
        if nb > 0:
            b0 = min(nb, 16)
            self.put_bits(k, m & ((1 << b0) - 1), b0)
        self.put_bits(k, nb, NB_BITS)
        self.put(k, int(cdf[row, n - 1]), (1 << PRECISION) - int(cdf[row, n - 1]))

    def finish(self):
        words = list(self.words)
        for x in reversed(self.x):          # the stream opens with x[0], then x[1]
            words += [x & 0xFFFF, x >> 16]
        return np.array(words[::-1], dtype="<u2").tobytes()


class RansDecoder:
    """Decoder of one substream; raises ``RansDecoder.Fail(status)`` on a bad stream."""

    class Fail(Exception):
        pass

    def __init__(self, data):
        self.w = np.frombuffer(data, dtype="<u2")
        if self.w.size < 2 * STATES:
            raise self.Fail(ERR_EOF)
        self.x = [(int(self.w[2 * k]) << 16) | int(self.w[2 * k + 1]) for k in range(STATES)]
        self.pos = 2 * STATES
        if min(self.x) < RANS_L:
            raise self.Fail(ERR_INIT)

    def advance(self, k, start, freq, slot):
        self.x[k] = freq * (self.x[k] >> 16) + slot - start
        if self.x[k] < RANS_L:
            if self.pos >= self.w.size:
                raise self.Fail(ERR_EOF)
            self.x[k] = (self.x[k] << 16) | int(self.w[self.pos])
            self.pos += 1

    def get_bits(self, k, b):
        slot = self.x[k] & 0xFFFF
        v = slot >> (PRECISION - b)
        self.advance(k, v << (PRECISION - b), 1 << (PRECISION - b), slot)
        return v

    def get_value(self, k, row, cdf, cdf_len, offset):
        n, lo = int(cdf_len[row]), int(offset[row])
        slot = self.x[k] & 0xFFFF
        s = int(np.searchsorted(cdf[row, :n + 1], slot, side="right")) - 1
        start = int(cdf[row, s])
        self.advance(k, start, int(cdf[row, s + 1]) - start, slot)
        if s < n - 1:
            return lo + s
        nb = self.get_bits(k, NB_BITS)
        if nb > NB_MAX:
            raise self.Fail(ERR_NB)
        m = 1 << nb
        if nb > 0:
            b0 = min(nb, 16)
            m |= self.get_bits(k, b0)
            if nb > 16:
                m |= self.get_bits(k, nb - 16) << 16
        u = m - 1
        hi = lo + n - 2
        v = lo - (u + 1) // 2 if u & 1 else hi + (u + 2) // 2
        if not VALUE_MIN <= v <= VALUE_MAX:
            raise self.Fail(ERR_RANGE)
        return v

    def finish(self):
        if self.pos != self.w.size:
            raise self.Fail(ERR_LEFTOVER)
        if any(x != RANS_L for x in self.x):
            raise self.Fail(ERR_FINAL)


def encode_numpy(values, rows, starts, cdf, cdf_len, offset):
    out = []
    for s in range(starts.size - 1):
        enc = RansEncoder()
        a, b = int(starts[s]), int(starts[s + 1])
        for i in range(b - 1, a - 1, -1):
            enc.put_value((i - a) % STATES, int(values[i]), int(rows[i]), cdf, cdf_len, offset)
        out.append(enc.finish())
    return out


def decode_numpy(data, lengths, starts, rows, cdf, cdf_len, offset):
    values = np.zeros(int(starts[-1]), np.int32)
    status = np.zeros(starts.size - 1, np.int32)
    pos = 0
    for s in range(starts.size - 1):
        chunk = data[pos:pos + int(lengths[s])]
        pos += int(lengths[s])
        a, b = int(starts[s]), int(starts[s + 1])
        try:
            dec = RansDecoder(chunk)
            for i in range(a, b):
                values[i] = dec.get_value((i - a) % STATES, int(rows[i]), cdf, cdf_len, offset)
            dec.finish()
        except RansDecoder.Fail as f:
            status[s] = f.args[0]
    return values, status


# ===========================================================================
# numba CPU: the same process, one prange task per substream.
# ===========================================================================

class Tables(tuple):
    """The CDF tables ``(cdf, cdf_len, offset)`` of one entropy model, with
    what the coders derive from them (the encoder's row and symbol tables,
    the decoders' LUT) computed once, on first use, instead of per call.

    A tuple, so ``cdf, cdf_len, offset = tables`` and ``*tables`` still give
    the three arrays.  It keeps its own copies of them (``copy=True``), so
    the derived tables cannot go stale: do not modify the arrays it holds.
    Pass it as the ``cdf`` argument of :func:`encode` / :func:`decode`
    (leaving ``cdf_len`` and ``offset`` out), as a model does for every
    stream it codes.
    """

    def __new__(cls, cdf, cdf_len, offset, copy=True):
        arrays = (np.array(cdf, copy=copy), np.array(cdf_len, copy=copy), np.array(offset, copy=copy))
        self = super().__new__(cls, arrays)
        self._encoder = self._lut = self._cost = None
        return self

    @property
    def encoder(self):
        """``(rt, st)`` of :func:`encoder_table`."""
        if self._encoder is None:
            self._encoder = encoder_table(*self)
        return self._encoder

    @property
    def lut(self):
        """The decoders' LUT of :func:`build_lut`."""
        if self._lut is None:
            self._lut = build_lut(self[0], self[1])
        return self._lut

    def symbol_bits(self, values, rows):
        """The information content in bits (float64) of each symbol, values
        and table rows of the same shape, as the coder codes it:
        -log2(freq / 2^16), and outside a row's range the escape symbol,
        NB_BITS and nb bits -- :func:`ideal_bits` per symbol, vectorized."""
        if self._cost is None:
            freq = np.diff(self[0].astype(np.int64), axis=1)
            self._cost = np.where(freq > 0, PRECISION - np.log2(np.maximum(freq, 1)), 0.0)
        v = np.asarray(values, np.int64)
        n = self[1][rows].astype(np.int64)
        lo = self[2][rows].astype(np.int64)
        hi = lo + n - 2
        inside = (v >= lo) & (v <= hi)
        bits = self._cost[rows, np.where(inside, v - lo, n - 1)]
        if not inside.all():
            ve, loe, hie = v[~inside], lo[~inside], hi[~inside]
            u = np.where(ve < loe, 2 * (loe - ve) - 1, 2 * (ve - hie) - 2)
            bits[~inside] += NB_BITS + np.floor(np.log2(u + 1))
        return bits


def as_tables(cdf, cdf_len=None, offset=None):
    """``cdf`` itself when it is a :class:`Tables`, else the three arrays
    (or a plain 3-tuple of them) wrapped without copies: the derived tables
    then live for one call."""
    if isinstance(cdf, tuple):
        if cdf_len is not None or offset is not None:
            raise TypeError("pass either a Tables or the three arrays cdf, cdf_len, offset")
        return cdf if isinstance(cdf, Tables) else Tables(*cdf, copy=False)
    if cdf_len is None or offset is None:
        raise TypeError("cdf_len and offset are needed with a bare cdf array")
    return Tables(cdf, cdf_len, offset, copy=False)


#: Entries per row of the encoder's row table and per symbol of its symbol table.
_RT, _ST = 4, 4


def encoder_table(cdf, cdf_len, offset):
    """The encoder's view of the CDF tables (derived; not part of the format).

    Returns ``(rt, st)``, two flat int64 arrays.  Row ``r``:
    ``rt[4r : 4r + 3] = (base[r] - lo, lo, top)`` with ``lo = offset[r]``,
    ``top = cdf_len[r] - 2`` and ``base[r]`` the row's first symbol in ``st``.
    A value v of row r lies in range when ``0 <= v - lo <= top``; its symbol
    index is then ``t = v + rt[4r]`` (the escape is ``t = base[r] + top + 1``),
    and ``st[4t : 4t + 4] = (start, freq << 16, 2^16 - freq, reciprocal(freq))``
    is all :func:`_put` needs, so the hot loop does four loads and no
    unpacking.  Bit widths: start < 2^16, freq <= 2^16, reciprocal <= 2^48.
    """
    n = cdf_len.astype(np.int64)
    rt = np.zeros(_RT * n.size, np.int64)
    st = np.empty(_ST * int(n.sum()), np.int64)
    _fill_encoder_table(cdf, n, offset.astype(np.int64), rt, st)
    return rt, st


def reciprocal(freq):
    """The encoder's division constant ``m = ceil(2^48 / freq)`` (uint64) for
    frequencies 1 <= freq <= 2^16: then for every state ``0 <= x < freq * 2^16``
    (which renormalization guarantees before the division),
    ``(x * m) >> 48 == x // freq``, and ``x * m`` fits uint64.

    Why: 0 <= m - 2^48 / freq < 1, so x m / 2^48 exceeds x / freq by less
    than x / 2^48 < freq / 2^32 <= 1 / freq (as freq^2 <= 2^32), while the
    fraction of x / freq is at most (freq - 1) / freq: the floor cannot move.
    Width: x <= freq 2^16 - 1 and m <= (2^48 + freq - 1) / freq give
    x m <= 2^64 + 2^16 (freq - 1) - (2^48 + freq - 1) / freq < 2^64, because
    freq (freq - 1) < 2^32.  A test checks every frequency at its critical
    states.
    """
    f = np.maximum(np.asarray(freq, np.int64), 1).astype(np.uint64)
    return ((np.uint64(1) << np.uint64(48)) + f - np.uint64(1)) // f


@njit(**NJIT)
def _fill_encoder_table(cdf, n, offset, rt, st):
    """The loop of :func:`encoder_table`; the reciprocal as :func:`reciprocal`."""
    t = np.int64(0)
    for r in range(n.size):
        rt[_RT * r] = t - offset[r]
        rt[_RT * r + 1] = offset[r]
        rt[_RT * r + 2] = n[r] - 2
        for s in range(n[r]):
            a = np.int64(cdf[r, s])
            f = np.int64(cdf[r, s + 1]) - a
            st[_ST * t] = a
            st[_ST * t + 1] = f << 16
            st[_ST * t + 2] = 65536 - f
            st[_ST * t + 3] = ((np.int64(1) << 48) + f - 1) // f
            t += 1


@njit(**NJIT_INLINE)
def _put(x, start, bound, mf, rc, buf, pos):
    """Push the interval [start, start + freq) onto state x, given
    ``bound = freq << 16``, ``mf = 2^16 - freq`` and ``rc = reciprocal(freq)``."""
    # Renormalize without a branch: the low word is always written below pos
    # and kept only when x >= freq * 2^16 (the region always has room for it).
    emit = x >= bound
    buf[np.uint64(pos - 1)] = np.uint16(x & 0xFFFF)
    pos -= np.int64(emit)
    x = (x >> 16) if emit else x
    # q = floor(x / freq) by a multiplication with rc = ceil(2^48 / freq)
    # (see reciprocal(): exact and within uint64 for x < freq 2^16, which
    # holds here); then x' = (q << 16) + x mod freq + start
    # = x + start + q (2^16 - freq).
    q = np.int64((np.uint64(x) * np.uint64(rc)) >> np.uint64(48))
    x = (x + start) + q * mf
    return x, pos


@njit(**NJIT_INLINE)
def _put_entry(x, st, t, buf, pos):
    """Push symbol t of the encoder's symbol table (see encoder_table)."""
    k = np.uint64(_ST) * t
    return _put(x, st[k], st[k + np.uint64(1)], st[k + np.uint64(2)], st[k + np.uint64(3)], buf, pos)


@njit(**NJIT_INLINE)
def _put_bits(x, val, b, buf, pos):
    """A uniform symbol of b bits: frequency 2^(16 - b), division constant 2^(32 + b) (exact)."""
    f = np.int64(1) << (16 - b)
    return _put(x, val << (16 - b), f << 16, 65536 - f, np.int64(1) << (32 + b), buf, pos)


@njit(**NJIT)
def _encode_escape(x, v, lo, hi, st, e, buf, pos):
    """The escape symbol (entry ``e`` of the symbol table), then nb and the
    bits of a value v outside [lo, hi]."""
    if v < lo:
        u = 2 * (lo - v) - 1
    else:
        u = 2 * (v - hi) - 2
    m = u + 1
    nb = np.int64(0)
    while (m >> (nb + 1)) > 0:
        nb += 1
    if nb > 16:
        x, pos = _put_bits(x, (m >> 16) & ((np.int64(1) << (nb - 16)) - 1), nb - 16, buf, pos)
    if nb > 0:
        b = min(nb, np.int64(16))
        x, pos = _put_bits(x, m & ((np.int64(1) << b) - 1), b, buf, pos)
    x, pos = _put_bits(x, nb, np.int64(NB_BITS), buf, pos)
    return _put_entry(x, st, np.uint64(e), buf, pos)


@njit(**NJIT_INLINE)
def _lookup(i, values, rows, rt):
    """(inside, t): whether symbol i's value lies in its row's range, and its
    index in the encoder's symbol table."""
    k = np.uint64(_RT) * np.uint64(rows[i])
    v = np.int64(values[i])
    return np.uint64(v - rt[k + np.uint64(1)]) <= np.uint64(rt[k + np.uint64(2)]), np.uint64(v + rt[k])


@njit(**NJIT)
def _encode_span(x0, x1, pos, i0, j, values, rows, rt, st, buf):
    """Push symbols i0 + j, i0 + j - 1, ... (symbol k of the substream on
    state k & 1) while their values lie inside their rows' ranges; return
    ``(x0, x1, pos, j)`` with j the first symbol left (an escape), or -1.

    The hot loop: no call, unsigned indices (no negative-index wrap code)
    and the two dependency chains interleaved.
    """
    if j >= 0 and (j & 1) == 0:
        ok, t = _lookup(np.uint64(i0 + j), values, rows, rt)
        if not ok:
            return x0, x1, pos, j
        x0, pos = _put_entry(x0, st, t, buf, pos)
        j -= 1
    while j >= 1:
        oka, ta = _lookup(np.uint64(i0 + j), values, rows, rt)
        okb, tb = _lookup(np.uint64(i0 + j - 1), values, rows, rt)
        if not (oka and okb):
            break
        x1, pos = _put_entry(x1, st, ta, buf, pos)
        x0, pos = _put_entry(x0, st, tb, buf, pos)
        j -= 2
    if j >= 1:
        # j odd: symbol j (state 1) or j - 1 (state 0) is an escape
        ok, t = _lookup(np.uint64(i0 + j), values, rows, rt)
        if ok:
            x1, pos = _put_entry(x1, st, t, buf, pos)
            j -= 1
    return x0, x1, pos, j


@njit(**NJIT_INLINE)
def _encode_flush(x0, x1, buf, pos):
    """The stream opens with x0 then x1, high word first."""
    buf[pos - 1] = np.uint16(x1 & 0xFFFF)
    buf[pos - 2] = np.uint16(x1 >> 16)
    buf[pos - 3] = np.uint16(x0 & 0xFFFF)
    buf[pos - 4] = np.uint16(x0 >> 16)
    return pos - 4


@njit(**NJIT)
def _encode_one(s, values, rows, starts, rt, st, buf, region, first):
    """Encode substream s into buf[first[s]:region[s + 1]] (written backward):
    runs of in-range symbols, each escape between them on its own."""
    x0 = np.int64(RANS_L)
    x1 = np.int64(RANS_L)
    pos = region[s + 1]
    i0 = starts[s]
    j = starts[s + 1] - i0 - 1
    while True:
        x0, x1, pos, j = _encode_span(x0, x1, pos, i0, j, values, rows, rt, st, buf)
        if j < 0:
            break
        k = _RT * np.int64(rows[i0 + j])
        v = np.int64(values[i0 + j])
        lo = rt[k + 1]
        e = rt[k] + lo + rt[k + 2] + 1          # the row's escape: base + top + 1
        if j & 1:
            x1, pos = _encode_escape(x1, v, lo, lo + rt[k + 2], st, e, buf, pos)
        else:
            x0, pos = _encode_escape(x0, v, lo, lo + rt[k + 2], st, e, buf, pos)
        j -= 1
    first[s] = _encode_flush(x0, x1, buf, pos)


@njit(**NJIT_PARALLEL)
def _encode_cpu(values, rows, starts, rt, st, buf, region, first):
    for s in prange(starts.size - 1):
        _encode_one(s, values, rows, starts, rt, st, buf, region, first)


@njit(**NJIT_INLINE)
def _advance(x, start, freq, slot, w, pos, end):
    """Decoder state transition; returns (x, pos, ok).  The word array carries
    one padding word after ``end``, so the read below never leaves it; a
    read of the padding means the substream ended early."""
    x = freq * (x >> 16) + slot - start
    need = np.int64(x < RANS_L)
    x = (x << (16 * need)) | (np.int64(w[pos]) * need)
    pos += need
    return x, pos, pos <= end


@njit(**NJIT)
def _get_bits(x, b, w, pos, end):
    slot = x & 0xFFFF
    v = slot >> (16 - b)
    x, pos, ok = _advance(x, v << (16 - b), np.int64(1) << (16 - b), slot, w, pos, end)
    return v, x, pos, ok


@njit(**NJIT_INLINE)
def _decode_symbol(x, r, cdf, cdf_len, offset, lut, w, pos, end):
    """Pop one value with table row r from state x: (value, x, pos, status)."""
    n = np.int64(cdf_len[r])
    lo = np.int64(offset[r])
    slot = x & 0xFFFF
    a = np.int64(lut[r, slot >> LUT_SHIFT])
    while cdf[r, a + 1] <= slot:
        a += 1
    start = np.int64(cdf[r, a])
    x, pos, ok = _advance(x, start, np.int64(cdf[r, a + 1]) - start, slot, w, pos, end)
    if not ok:
        return np.int64(0), x, pos, ERR_EOF
    if a < n - 1:
        return lo + a, x, pos, OK
    return _decode_escape(x, n, lo, w, pos, end)


@njit(**NJIT)
def _decode_escape(x, n, lo, w, pos, end):
    """nb and the bits of an escaped value, after the escape symbol."""
    nb, x, pos, ok = _get_bits(x, np.int64(NB_BITS), w, pos, end)
    if not ok:
        return np.int64(0), x, pos, ERR_EOF
    if nb > NB_MAX:
        return np.int64(0), x, pos, ERR_NB
    m = np.int64(1) << nb
    if nb > 0:
        v0, x, pos, ok = _get_bits(x, min(nb, np.int64(16)), w, pos, end)
        if not ok:
            return np.int64(0), x, pos, ERR_EOF
        m |= v0
        if nb > 16:
            v1, x, pos, ok = _get_bits(x, nb - 16, w, pos, end)
            if not ok:
                return np.int64(0), x, pos, ERR_EOF
            m |= v1 << 16
    u = m - 1
    if u & 1:
        v = lo - (u + 1) // 2
    else:
        v = lo + n - 2 + (u + 2) // 2
    if v < VALUE_MIN or v > VALUE_MAX:
        return np.int64(0), x, pos, ERR_RANGE
    return v, x, pos, OK


@njit(**NJIT_INLINE)
def _end_status(st, pos, end, x0, x1):
    """A substream's status after its last symbol: every word read, both states back at 2^16."""
    if st != OK:
        return st
    if pos != end:
        return ERR_LEFTOVER
    if x0 != RANS_L or x1 != RANS_L:
        return ERR_FINAL
    return OK


@njit(**NJIT)
def _decode_one(s, w, wstart, starts, rows, cdf, cdf_len, offset, lut, values, status):
    """Decode substream s (words w[wstart[s]:wstart[s + 1]]); status[s] = 0 or an error code."""
    pos = wstart[s]
    end = wstart[s + 1]
    if end - pos < 4:
        status[s] = ERR_EOF
        return
    x0 = (np.int64(w[pos]) << 16) | np.int64(w[pos + 1])
    x1 = (np.int64(w[pos + 2]) << 16) | np.int64(w[pos + 3])
    pos += 4
    if x0 < RANS_L or x1 < RANS_L:
        status[s] = ERR_INIT
        return
    st = OK
    i = starts[s]
    stop = starts[s + 1]
    while i + 1 < stop:
        v, x0, pos, st = _decode_symbol(x0, rows[i], cdf, cdf_len, offset, lut, w, pos, end)
        if st != OK:
            break
        values[i] = np.int32(v)
        v, x1, pos, st = _decode_symbol(x1, rows[i + 1], cdf, cdf_len, offset, lut, w, pos, end)
        if st != OK:
            break
        values[i + 1] = np.int32(v)
        i += 2
    if st == OK and i < stop:
        v, x0, pos, st = _decode_symbol(x0, rows[i], cdf, cdf_len, offset, lut, w, pos, end)
        if st == OK:
            values[i] = np.int32(v)
    status[s] = _end_status(st, pos, end, x0, x1)


@njit(**NJIT_PARALLEL)
def _decode_cpu(w, wstart, starts, rows, cdf, cdf_len, offset, lut, values, status):
    for s in prange(starts.size - 1):
        _decode_one(s, w, wstart, starts, rows, cdf, cdf_len, offset, lut, values, status)


def _regions(starts):
    n_per = np.diff(starts).astype(np.int64)
    return np.concatenate([[0], np.cumsum(MAX_WORDS_PER_SYMBOL * n_per + 2 * STATES)]).astype(np.int64)


def encode_cpu(values, rows, starts, cdf, cdf_len=None, offset=None):
    """``cdf``: a :class:`Tables` (derived tables reused) or the cdf array."""
    tables = as_tables(cdf, cdf_len, offset)
    region = _regions(starts)
    buf = np.empty(int(region[-1]), np.uint16)
    first = np.empty(starts.size - 1, np.int64)
    _encode_cpu(values, rows, starts, *tables.encoder, buf, region, first)
    return [buf[first[s]:region[s + 1]].astype("<u2", copy=False).tobytes() for s in range(starts.size - 1)]


def _words(data, lengths):
    """16-bit words of all substreams, plus one padding word (see _advance)."""
    w = np.zeros(len(data) // 2 + 1, np.uint16)
    w[:len(data) // 2] = np.frombuffer(data, dtype="<u2")
    wstart = np.concatenate([[0], np.cumsum(np.asarray(lengths, np.int64) // 2)]).astype(np.int64)
    return w, wstart


def decode_cpu(data, lengths, starts, rows, cdf, cdf_len=None, offset=None):
    """``cdf``: a :class:`Tables` (derived tables reused) or the cdf array."""
    tables = as_tables(cdf, cdf_len, offset)
    w, wstart = _words(data, lengths)
    values = np.zeros(int(starts[-1]), np.int32)
    status = np.zeros(starts.size - 1, np.int32)
    _decode_cpu(w, wstart, starts, rows, *tables, tables.lut, values, status)
    return values, status


# ===========================================================================
# one substream of values on a 2-D grid, each value's table row chosen by
# its decoded neighbours (the quality map of SPEC.md clause 6.7)
# ===========================================================================

#: Contexts of a grid value: how many of its left and upper neighbours
#: (those inside the grid) are nonzero, 0 ... 2.
GRID_CONTEXTS = 3


def grid_contexts(values):
    """Context of each value of the 2-D int array ``values`` (raster order,
    flattened): (left neighbour != 0) + (upper neighbour != 0)."""
    v = np.asarray(values) != 0
    c = np.zeros(v.shape, np.int32)
    c[:, 1:] += v[:, :-1]
    c[1:, :] += v[:-1, :]
    return c.reshape(-1)


def decode_grid_numpy(data, h, w, ctx_rows, cdf, cdf_len, offset):
    """Plain twin of :func:`_decode_grid`: (values (h * w,), status)."""
    values = np.zeros(h * w, np.int32)
    try:
        dec = RansDecoder(data)
        for i in range(h):
            for j in range(w):
                c = int(j > 0 and values[i * w + j - 1] != 0) + int(i > 0 and values[(i - 1) * w + j] != 0)
                values[i * w + j] = dec.get_value((i * w + j) % STATES, int(ctx_rows[c]), cdf, cdf_len, offset)
        dec.finish()
    except RansDecoder.Fail as f:
        return values, int(f.args[0])
    return values, OK


@njit(**NJIT)
def _decode_grid(w, h, wd, ctx_rows, cdf, cdf_len, offset, lut, values, status):
    """Decode the h x wd values of one substream (words w, one padding word
    after them) in raster order; value k uses state k % 2 and the table row
    ctx_rows[(left != 0) + (up != 0)].  status[0] = 0 or an error code."""
    end = w.size - 1
    if end < 4:
        status[0] = ERR_EOF
        return
    x0 = (np.int64(w[0]) << 16) | np.int64(w[1])
    x1 = (np.int64(w[2]) << 16) | np.int64(w[3])
    pos = np.int64(4)
    if x0 < RANS_L or x1 < RANS_L:
        status[0] = ERR_INIT
        return
    st = OK
    for k in range(h * wd):
        i = k // wd
        j = k - i * wd
        c = 0
        if j > 0 and values[k - 1] != 0:
            c += 1
        if i > 0 and values[k - wd] != 0:
            c += 1
        if k % 2 == 0:
            v, x0, pos, st = _decode_symbol(x0, ctx_rows[c], cdf, cdf_len, offset, lut, w, pos, end)
        else:
            v, x1, pos, st = _decode_symbol(x1, ctx_rows[c], cdf, cdf_len, offset, lut, w, pos, end)
        if st != OK:
            break
        values[k] = np.int32(v)
    status[0] = _end_status(st, pos, end, x0, x1)


# ===========================================================================
# dispatch
# ===========================================================================

def _prepare(values_or_rows, rows, starts):
    from .errors import error
    starts = np.ascontiguousarray(starts, np.int64)
    rows = np.ascontiguousarray(rows, np.int32)
    if starts.ndim != 1 or starts.size < 2 or starts[0] != 0 or np.any(np.diff(starts) < 0) \
            or starts[-1] != rows.size:
        raise error("argument", "rans: starts must rise from 0 to the number of symbols")
    return rows, starts


def encode(values, rows, starts, cdf, cdf_len=None, offset=None, backend="cpu"):
    """Encode ``values`` (int32) with table rows ``rows`` into one bytes
    object per substream.  Values must lie in [VALUE_MIN, VALUE_MAX] and rows
    in [0, R).  The tables: the arrays ``cdf, cdf_len, offset``, or one
    :class:`Tables` as ``cdf``."""
    from .errors import error
    check_backend(backend)
    tables = as_tables(cdf, cdf_len, offset)
    cdf, cdf_len, offset = tables
    values = np.ascontiguousarray(values, np.int32)
    rows, starts = _prepare(values, rows, starts)
    if values.shape != rows.shape:
        raise error("argument", "rans: values and rows differ in length")
    if values.size and (values.min() < VALUE_MIN or values.max() > VALUE_MAX):
        raise error("argument", f"rans: values must lie in [{VALUE_MIN}, {VALUE_MAX}]")
    if rows.size and (rows.min() < 0 or rows.max() >= cdf.shape[0]):
        raise error("argument", "rans: a table row index is out of range")
    if backend == "numpy":
        return encode_numpy(values, rows, starts, cdf, cdf_len, offset)
    if backend == "cpu":
        return encode_cpu(values, rows, starts, tables)
    from .cuda import rans as cuda_rans
    return cuda_rans.encode_cuda(values, rows, starts, tables, _regions(starts))


def decode(data, lengths, starts, rows, cdf, cdf_len=None, offset=None, backend="cpu"):
    """Decode the substreams concatenated in ``data`` (byte lengths
    ``lengths``, each even) with the tables of :func:`encode`.  Returns the
    int32 values; raises the stream error (refcodec's EntropyDecodingError)
    naming the first bad substream."""
    from .errors import error
    check_backend(backend)
    tables = as_tables(cdf, cdf_len, offset)
    cdf, cdf_len, offset = tables
    rows, starts = _prepare(rows, rows, starts)
    lengths = np.asarray(lengths, np.int64)
    if lengths.shape != (starts.size - 1,) or np.any(lengths % 2) or np.any(lengths < 0) \
            or int(lengths.sum()) != len(data):
        raise error("argument", "rans: substream lengths must be even and add up to the data size")
    if rows.size and (rows.min() < 0 or rows.max() >= cdf.shape[0]):
        raise error("argument", "rans: a table row index is out of range")
    data = bytes(data)
    if backend == "numpy":
        values, status = decode_numpy(data, lengths, starts, rows, cdf, cdf_len, offset)
    elif backend == "cpu":
        values, status = decode_cpu(data, lengths, starts, rows, tables)
    else:
        from .cuda import rans as cuda_rans
        w, wstart = _words(data, lengths)
        values, status = cuda_rans.decode_cuda(w, wstart, starts, rows, cdf, cdf_len, offset, tables.lut)
    bad = np.flatnonzero(status)
    if bad.size:
        s = int(bad[0])
        raise error("stream", f"substream {s}: {STATUS_TEXT[int(status[s])]}", field=f"substream[{s}]",
                    clause="6.1")
    return values


def encode_grid(values, ctx_rows, cdf, cdf_len=None, offset=None, backend="cpu"):
    """One substream of the 2-D int array ``values`` in raster order, each
    value with the table row ``ctx_rows[c]`` of its context c
    (:func:`grid_contexts`)."""
    from .errors import error
    values = np.asarray(values)
    ctx_rows = np.asarray(ctx_rows, np.int32)
    if values.ndim != 2 or ctx_rows.shape != (GRID_CONTEXTS,):
        raise error("argument", f"rans: a 2-D grid of values and {GRID_CONTEXTS} context rows expected")
    rows = ctx_rows[grid_contexts(values)]
    return encode(values.reshape(-1), rows, np.array([0, values.size], np.int64), cdf, cdf_len, offset,
                  backend=backend)[0]


def decode_grid(data, h, w, ctx_rows, cdf, cdf_len=None, offset=None, backend="cpu"):
    """Inverse of :func:`encode_grid`: the (h, w) int32 values of the
    substream ``data``.  The row of each value depends on values decoded
    before it, so the substream decodes on one thread of any backend."""
    from .errors import error
    check_backend(backend)
    tables = as_tables(cdf, cdf_len, offset)
    cdf, cdf_len, offset = tables
    ctx_rows = np.ascontiguousarray(ctx_rows, np.int32)
    if ctx_rows.shape != (GRID_CONTEXTS,) or ctx_rows.min() < 0 or ctx_rows.max() >= cdf.shape[0]:
        raise error("argument", f"rans: {GRID_CONTEXTS} context rows within the table expected")
    if h < 0 or w < 0 or len(data) % 2:
        raise error("argument", "rans: grid sizes must be >= 0 and the substream's length even")
    data = bytes(data)
    if backend == "numpy":
        values, st = decode_grid_numpy(data, h, w, ctx_rows, cdf, cdf_len, offset)
    else:
        wds, _ = _words(data, [len(data)])
        if backend == "cpu":
            values = np.zeros(h * w, np.int32)
            status = np.zeros(1, np.int32)
            _decode_grid(wds, h, w, ctx_rows, cdf, cdf_len, offset, tables.lut, values, status)
        else:
            from .cuda import rans as cuda_rans
            values, status = cuda_rans.decode_grid_cuda(wds, h, w, ctx_rows, cdf, cdf_len, offset, tables.lut)
        st = int(status[0])
    if st:
        raise error("stream", f"substream 0: {STATUS_TEXT[st]}", field="substream[0]", clause="6.1")
    return values.reshape(h, w)
