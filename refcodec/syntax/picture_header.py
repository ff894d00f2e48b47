"""Clause 5.2: picture_header().

    picture_header() {                          bits
        magic                                   u(32)   0x52434443 ("RCDC")
        version                                 u(8)    1
        model_id                                u(64)   first 8 bytes of the model file's SHA-256
        width_minus1                            u(16)
        height_minus1                           u(16)
        beta_code                               u(16)   beta = beta_code / 65535
        tool_flags                              u(8)    bit 0: quality_map_enabled;
                                                        bit 1: context_enabled; bit 2: monochrome;
                                                        bit 3: postfilter_enabled; bits 4-7 reserved (0)
        num_y_substreams                        u(8)    1 ... 64; even when context_enabled
        if (quality_map_enabled) {
            qmap_mode                           u(8)    bits 0-2: qmap_block_log2, 0 ... 4 (a Q value
                                                        per 2^k x 2^k latent positions); bits 3-4:
                                                        qmap_step_log2, 0 ... 2 (Q = coded value x 2^s);
                                                        bit 5: qmap_context; bit 6 reserved (0);
                                                        bit 7: qmap_direct (third edition)
            if (qmap_direct) {                          (then qmap_context shall be 0)
                qmap_v_min_plus8                u(8)    V_min = qmap_v_min_plus8 - 8
                qmap_num_values                 u(8)    A, 1 ... 17
                for (a = 0; a < A; a++)
                    qmap_freq[a]                u(8)    1 ... 255: frequency of V = V_min + a
            } else {
                qmap_sigma_row                  u(8)    y table row of the Q differences (context 0)
                if (qmap_context) {
                    qmap_sigma_row1             u(8)    ... of the differences in context 1
                    qmap_sigma_row2             u(8)    ... and in context 2
                }
            }
        }
    }

The first edition wrote ``qmap_block_log2`` (0 ... 4) as the whole byte that
is now ``qmap_mode``: the same byte means the same map.  The direct coding
(third edition) takes bit 7, so bit 6 stays reserved and a stream the second
edition refused for it is refused still.  Its values must satisfy
V_min * 2^s >= -8 and (V_min + A - 1) * 2^s <= 8.

Every field is range-checked here, before anything is allocated; a bad value
raises BitstreamError naming the field and this clause.
"""

from dataclasses import dataclass

from ..errors import BitstreamError
from .bytereader import u_bytes

CLAUSE = "5.2"
MAGIC = 0x52434443
VERSION = 1
HEADER_BYTES = 4 + 1 + 8 + 2 + 2 + 2 + 1 + 1

#: Level limits (SPEC.md clause 9): the only level of version 1.
LEVEL = {
    "max_width": 16384,
    "max_height": 16384,
    "max_samples": 1 << 26,          # samples per picture (e.g. 8192 x 8192; a 48-megapixel camera's 8064 x 6048)
    "max_y_substreams": 64,
}

QUALITY_MAP_FLAG = 1
CONTEXT_FLAG = 2
MONOCHROME_FLAG = 4
POSTFILTER_FLAG = 8
TOOL_FLAGS = QUALITY_MAP_FLAG | CONTEXT_FLAG | MONOCHROME_FLAG | POSTFILTER_FLAG
QMAP_BLOCK_LOG2_MAX = 4
QMAP_STEP_LOG2_MAX = 2
QMAP_CONTEXT_BIT = 5
QMAP_DIRECT_BIT = 7
QMAP_RESERVED_BITS = 0x40
QMAP_VALUES_MAX = 17


@dataclass(frozen=True)
class PictureHeader:
    model_id: bytes
    width: int
    height: int
    beta_code: int
    tool_flags: int = 0
    num_y_substreams: int = 1
    version: int = VERSION
    qmap_block_log2: int = 0
    qmap_sigma_row: int = 0
    qmap_step_log2: int = 0
    qmap_context: bool = False
    qmap_sigma_row1: int = 0
    qmap_sigma_row2: int = 0
    qmap_direct: bool = False
    qmap_v_min: int = 0
    qmap_freqs: tuple = ()

    @property
    def qmap_mode(self):
        """The qmap_mode byte: block size, step, context flag, direct flag."""
        return (self.qmap_block_log2 | (self.qmap_step_log2 << 3) | (int(self.qmap_context) << QMAP_CONTEXT_BIT)
                | (int(self.qmap_direct) << QMAP_DIRECT_BIT))

    @property
    def qmap_direct_table(self):
        """(V_min, frequencies) of the direct coding; None for the difference codings."""
        return (self.qmap_v_min, tuple(self.qmap_freqs)) if self.qmap_direct else None

    @property
    def qmap_ctx_rows(self):
        """The table row of each context 0, 1, 2 (one row for all without qmap_context)."""
        if self.qmap_context:
            return (self.qmap_sigma_row, self.qmap_sigma_row1, self.qmap_sigma_row2)
        return (self.qmap_sigma_row,) * 3

    @property
    def beta(self):
        return self.beta_code / 65535

    @property
    def quality_map_enabled(self):
        return bool(self.tool_flags & QUALITY_MAP_FLAG)

    @property
    def context_enabled(self):
        return bool(self.tool_flags & CONTEXT_FLAG)

    @property
    def monochrome(self):
        """Clause 6.6: the output is R = G = B, from the luma channel alone."""
        return bool(self.tool_flags & MONOCHROME_FLAG)

    @property
    def postfilter_enabled(self):
        """Clause 6.5.1: the model's post-filter g_pf runs on g_s's output."""
        return bool(self.tool_flags & POSTFILTER_FLAG)


def _fail(msg, field):
    raise BitstreamError(msg, field=field, clause=CLAUSE)


def picture_header(r):
    """Parse picture_header() from ByteReader ``r``."""
    magic = r.u(32, "magic", CLAUSE)
    if magic != MAGIC:
        _fail(f"not a refcodec stream (magic {magic:#010x}, expected {MAGIC:#010x})", "magic")
    version = r.u(8, "version", CLAUSE)
    if version != VERSION:
        _fail(f"unsupported version {version} (this decoder reads version {VERSION})", "version")
    model_id = r.bytes(8, "model_id", CLAUSE)
    width = r.u(16, "width_minus1", CLAUSE) + 1
    if width > LEVEL["max_width"]:
        _fail(f"width {width} above the level limit {LEVEL['max_width']}", "width_minus1")
    height = r.u(16, "height_minus1", CLAUSE) + 1
    if height > LEVEL["max_height"]:
        _fail(f"height {height} above the level limit {LEVEL['max_height']}", "height_minus1")
    if width * height > LEVEL["max_samples"]:
        _fail(f"{width} x {height} = {width * height} samples above the level limit {LEVEL['max_samples']}",
              "height_minus1")
    beta_code = r.u(16, "beta_code", CLAUSE)
    tool_flags = r.u(8, "tool_flags", CLAUSE)
    if tool_flags & ~TOOL_FLAGS:
        _fail(f"reserved tool_flags bits set ({tool_flags:#04x})", "tool_flags")
    num_y_substreams = r.u(8, "num_y_substreams", CLAUSE)
    if not 1 <= num_y_substreams <= LEVEL["max_y_substreams"]:
        _fail(f"num_y_substreams {num_y_substreams} outside [1, {LEVEL['max_y_substreams']}]", "num_y_substreams")
    if tool_flags & CONTEXT_FLAG and num_y_substreams % 2:
        _fail(f"num_y_substreams {num_y_substreams} is odd with context_enabled (one half per checkerboard "
              "phase)", "num_y_substreams")
    qmap = {}
    if tool_flags & QUALITY_MAP_FLAG:
        mode = r.u(8, "qmap_mode", CLAUSE)
        k, step, ctx = mode & 7, (mode >> 3) & 3, (mode >> QMAP_CONTEXT_BIT) & 1
        direct = (mode >> QMAP_DIRECT_BIT) & 1
        if mode & QMAP_RESERVED_BITS:
            _fail(f"reserved qmap_mode bits set ({mode:#04x})", "qmap_mode")
        if k > QMAP_BLOCK_LOG2_MAX:
            _fail(f"qmap_block_log2 {k} above {QMAP_BLOCK_LOG2_MAX}", "qmap_mode")
        if step > QMAP_STEP_LOG2_MAX:
            _fail(f"qmap_step_log2 {step} above {QMAP_STEP_LOG2_MAX}", "qmap_mode")
        if direct:
            if ctx:
                _fail("qmap_context and qmap_direct both set", "qmap_mode")
            v_min = r.u(8, "qmap_v_min_plus8", CLAUSE) - 8
            n = r.u(8, "qmap_num_values", CLAUSE)
            if not 1 <= n <= QMAP_VALUES_MAX:
                _fail(f"qmap_num_values {n} outside [1, {QMAP_VALUES_MAX}]", "qmap_num_values")
            if v_min << step < -8 or (v_min + n - 1) << step > 8:
                _fail(f"the direct coding's values {v_min} ... {v_min + n - 1} (x 2^{step}) leave [-8, 8]",
                      "qmap_v_min_plus8")
            freqs = tuple(r.u(8, "qmap_freq", CLAUSE) for _ in range(n))
            if 0 in freqs:
                _fail(f"qmap_freq[{freqs.index(0)}] is 0", "qmap_freq")
            return PictureHeader(model_id=model_id, width=width, height=height, beta_code=beta_code,
                                 tool_flags=tool_flags, num_y_substreams=num_y_substreams, version=version,
                                 qmap_block_log2=k, qmap_step_log2=step, qmap_direct=True, qmap_v_min=v_min,
                                 qmap_freqs=freqs)
        qmap = dict(qmap_block_log2=k, qmap_step_log2=step, qmap_context=bool(ctx),
                    qmap_sigma_row=r.u(8, "qmap_sigma_row", CLAUSE))
        if ctx:
            qmap.update(qmap_sigma_row1=r.u(8, "qmap_sigma_row1", CLAUSE),
                        qmap_sigma_row2=r.u(8, "qmap_sigma_row2", CLAUSE))
    return PictureHeader(model_id=model_id, width=width, height=height, beta_code=beta_code,
                         tool_flags=tool_flags, num_y_substreams=num_y_substreams, version=version, **qmap)


def write_picture_header(h):
    """Serialize a PictureHeader (the writer checks the same ranges as the parser)."""
    if len(h.model_id) != 8:
        raise ValueError("model_id must be 8 bytes")
    if not (1 <= h.width <= LEVEL["max_width"] and 1 <= h.height <= LEVEL["max_height"]
            and h.width * h.height <= LEVEL["max_samples"]):
        raise ValueError(f"picture size {h.width} x {h.height} outside the level limits")
    if not 0 <= h.beta_code <= 65535:
        raise ValueError("beta_code must fit 16 bits")
    if not 1 <= h.num_y_substreams <= LEVEL["max_y_substreams"]:
        raise ValueError("num_y_substreams outside [1, 64]")
    if h.tool_flags & ~TOOL_FLAGS:
        raise ValueError("reserved tool_flags bits set")
    if h.context_enabled and h.num_y_substreams % 2:
        raise ValueError("num_y_substreams must be even with context_enabled")
    out = [u_bytes(MAGIC, 32), u_bytes(h.version, 8), bytes(h.model_id),
           u_bytes(h.width - 1, 16), u_bytes(h.height - 1, 16), u_bytes(h.beta_code, 16),
           u_bytes(h.tool_flags, 8), u_bytes(h.num_y_substreams, 8)]
    if h.quality_map_enabled:
        rows = (h.qmap_sigma_row, h.qmap_sigma_row1, h.qmap_sigma_row2)
        if not 0 <= h.qmap_block_log2 <= QMAP_BLOCK_LOG2_MAX or not 0 <= h.qmap_step_log2 <= QMAP_STEP_LOG2_MAX \
                or not all(0 <= r <= 255 for r in rows):
            raise ValueError("qmap_block_log2, qmap_step_log2 or a qmap_sigma_row out of range")
        if h.qmap_direct:
            n, s = len(h.qmap_freqs), h.qmap_step_log2
            if h.qmap_context or not 1 <= n <= QMAP_VALUES_MAX or h.qmap_v_min << s < -8 \
                    or (h.qmap_v_min + n - 1) << s > 8 or not all(1 <= f <= 255 for f in h.qmap_freqs):
                raise ValueError("qmap_direct with qmap_context, or its values or frequencies out of range")
            return b"".join(out + [u_bytes(h.qmap_mode, 8), u_bytes(h.qmap_v_min + 8, 8), u_bytes(n, 8),
                                   *(u_bytes(f, 8) for f in h.qmap_freqs)])
        out += [u_bytes(h.qmap_mode, 8), u_bytes(h.qmap_sigma_row, 8)]
        if h.qmap_context:
            out += [u_bytes(h.qmap_sigma_row1, 8), u_bytes(h.qmap_sigma_row2, 8)]
    return b"".join(out)
