"""Bitstream container: writer and parser agree; every bad field is named."""

import pytest

from refcodec.errors import BitstreamError, TruncatedStreamError
from refcodec.syntax import PictureHeader, picture, write_picture
from refcodec.syntax.picture_header import HEADER_BYTES, LEVEL

MODEL_ID = bytes(range(8))

# (syntax element, first byte, byte count) of picture_header()
FIELDS = [("magic", 0, 4), ("version", 4, 1), ("model_id", 5, 8), ("width_minus1", 13, 2),
          ("height_minus1", 15, 2), ("beta_code", 17, 2), ("tool_flags", 19, 1), ("num_y_substreams", 20, 1)]


def sample_stream(n_y=3):
    h = PictureHeader(model_id=MODEL_ID, width=77, height=13, beta_code=40000, num_y_substreams=n_y)
    z = b"\x01\x00\x00\x00" * 2
    ys = [b"\x02\x00\x00\x00" * 2 + b"\x05\x06", b"\x03\x00\x00\x00" * 2,
          b"\x04\x00\x00\x00" * 2 + b"\x07\x08\x09\x0a"][:n_y]
    return h, z, ys, write_picture(h, z, ys)


def test_roundtrip():
    h, z, ys, data = sample_stream()
    p = picture(data)
    assert p.header == h and p.z_data == z and list(p.y_data) == ys
    assert p.header.beta == pytest.approx(40000 / 65535)
    assert sum(f[2] for f in FIELDS) == HEADER_BYTES


def test_every_truncation_is_rejected():
    *_, data = sample_stream()
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            picture(data[:cut])


def test_truncation_inside_header_names_the_field():
    *_, data = sample_stream()
    for name, start, n in FIELDS:
        with pytest.raises(TruncatedStreamError, match=name):
            picture(data[:start + n - 1])


@pytest.mark.parametrize("name,start,n", FIELDS)
def test_flipped_bit_in_each_header_field(name, start, n):
    """Each bit of each field flipped: either a valid header with that field
    changed, or a BitstreamError naming a field of the stream."""
    *_, data = sample_stream()
    for bit in range(8 * n):
        b = bytearray(data)
        b[start + bit // 8] ^= 0x80 >> (bit % 8)
        try:
            parsed = picture(bytes(b))
        except BitstreamError as e:
            assert e.field is not None and e.clause is not None
            if name in ("magic", "version"):
                assert e.field == name
            if name == "tool_flags":
                # a reserved bit; the quality-map bit: then the fields that follow no longer fit;
                # the context bit: then the sample's odd num_y_substreams is refused
                assert e.field in ("tool_flags", "qmap_mode", "qmap_sigma_row", "q_size", "z_size") \
                    or e.field.startswith("y_size") \
                    or (e.field == "num_y_substreams" and bit == 6 and "odd" in str(e))
            if name == "num_y_substreams":
                # out of range, or a count that no longer matches the sizes that follow
                assert e.field == name or e.field == "z_size" or e.field.startswith("y_size")
        else:
            # tool_flags bit 2 (0x80 >> 5) is monochrome: the output transform alone changes;
            # bit 3 (0x80 >> 4) the post-filter: the parse is the same, the decoder checks the model
            assert name in ("model_id", "beta_code", "width_minus1", "height_minus1") \
                or (name == "tool_flags" and bit == 5 and parsed.header.monochrome) \
                or (name == "tool_flags" and bit == 4 and parsed.header.postfilter_enabled)
            assert parsed.z_data == data[-len(parsed.z_data) - sum(map(len, parsed.y_data)):][:len(parsed.z_data)]


def test_absurd_sizes_are_rejected_before_allocation():
    h = PictureHeader(model_id=MODEL_ID, width=16384, height=16384, beta_code=0)
    data = bytearray(write_picture(PictureHeader(model_id=MODEL_ID, width=8, height=8, beta_code=0),
                                   b"\x01\x00\x00\x00" * 2, [b"\x01\x00\x00\x00" * 2]))
    data[13:15] = (65535).to_bytes(2, "big")       # width 65536
    with pytest.raises(BitstreamError, match="width_minus1"):
        picture(bytes(data))
    data[13:15] = (16383).to_bytes(2, "big")
    data[15:17] = (16383).to_bytes(2, "big")       # 16384 x 16384 > max_samples
    with pytest.raises(BitstreamError, match="level limit"):
        picture(bytes(data))
    assert 16384 * 16384 > LEVEL["max_samples"]
    with pytest.raises(ValueError):
        write_picture(h, b"", [])


def test_substream_size_past_the_end():
    *_, data = sample_stream()
    b = bytearray(data)
    b[HEADER_BYTES:HEADER_BYTES + 4] = (1 << 31).to_bytes(4, "big")
    with pytest.raises(BitstreamError, match="z_size"):
        picture(bytes(b))


def test_odd_or_tiny_substream_size():
    *_, data = sample_stream()
    b = bytearray(data)
    b[HEADER_BYTES + 4:HEADER_BYTES + 8] = (6).to_bytes(4, "big")
    with pytest.raises(BitstreamError, match=r"y_size\[0\]"):
        picture(bytes(b))


def test_trailing_bytes_are_rejected():
    *_, data = sample_stream()
    with pytest.raises(BitstreamError, match="after the last substream"):
        picture(data + b"\x00\x00")


def test_zero_substreams_rejected():
    *_, data = sample_stream()
    b = bytearray(data)
    b[20] = 0
    with pytest.raises(BitstreamError, match="num_y_substreams"):
        picture(bytes(b))


def test_context_flag_and_even_substreams():
    """context_enabled (tool_flags bit 1) parses; with it num_y_substreams
    shall be even -- the writer refuses an odd count, the parser names the field."""
    h, z, ys, _ = sample_stream(2)
    hc = PictureHeader(**{**h.__dict__, "tool_flags": 2})
    parsed = picture(write_picture(hc, z, ys))
    assert parsed.header.context_enabled and not parsed.header.quality_map_enabled
    h3, z3, ys3, data3 = sample_stream(3)
    with pytest.raises(ValueError, match="even"):
        write_picture(PictureHeader(**{**h3.__dict__, "tool_flags": 2}), z3, ys3)
    b = bytearray(data3)
    b[19] = 2
    with pytest.raises(BitstreamError, match="odd") as e:
        picture(bytes(b))
    assert e.value.field == "num_y_substreams"


def qmap_stream(**fields):
    h, z, ys, _ = sample_stream(1)
    h = PictureHeader(**{**h.__dict__, "tool_flags": 1, **fields})
    return h, write_picture(h, z, ys, q_data=b"\x00\x00\x01\x00\x00\x00\x01\x00")


def test_direct_map_coding_header():
    """Clause 5.2, third edition: qmap_mode bit 7 (qmap_direct) brings
    qmap_v_min_plus8, qmap_num_values and the frequencies in place of the
    table rows; the writer and the parser agree, and every bad value is
    refused by both, naming the field."""
    h, data = qmap_stream(qmap_block_log2=1, qmap_step_log2=1, qmap_direct=True, qmap_v_min=-4,
                          qmap_freqs=(1, 255, 7, 9, 3, 2, 1, 1, 200))
    p = picture(data)
    assert p.header == h and p.header.qmap_mode == 0x89 and p.header.qmap_direct_table[0] == -4
    assert data[HEADER_BYTES:HEADER_BYTES + 3] == bytes([0x89, 4, 9])
    # the extremes: one value; seventeen; the full range at step 0
    for fields in [dict(qmap_v_min=8, qmap_freqs=(5,)), dict(qmap_v_min=-8, qmap_freqs=(255,) * 17),
                   dict(qmap_step_log2=2, qmap_v_min=-2, qmap_freqs=(1, 2, 3, 4, 5))]:
        h, data = qmap_stream(qmap_direct=True, **fields)
        assert picture(data).header == h
    for case in range(len(data) - HEADER_BYTES):      # every truncation inside the map's fields
        with pytest.raises(BitstreamError):
            picture(data[:HEADER_BYTES + case])

    def patched(offset, value):
        b = bytearray(qmap_stream(qmap_step_log2=1, qmap_direct=True, qmap_v_min=-4,
                                  qmap_freqs=(1, 2, 3, 4, 5, 6, 7, 8, 9))[1])
        b[HEADER_BYTES + offset] = value
        return bytes(b)
    for offset, value, field, text in [
            (0, 0x80 | 0x20 | 0x08, "qmap_mode", "both set"),            # with qmap_context
            (0, 0x80 | 0x40 | 0x08, "qmap_mode", "reserved"),            # bit 6 stays reserved
            (1, 3, "qmap_v_min_plus8", "leave"),                         # V_min -5 x 2 = -10
            (1, 5, "qmap_v_min_plus8", "leave"),                         # V_max (-3 + 8) x 2 = 10
            (2, 0, "qmap_num_values", "outside"), (2, 18, "qmap_num_values", "outside"),
            (3, 0, "qmap_freq", "is 0"), (11, 0, "qmap_freq", "is 0")]:
        with pytest.raises(BitstreamError, match=text) as e:
            picture(patched(offset, value))
        assert e.value.field == field, (offset, value)
    base = dict(qmap_direct=True, qmap_v_min=0, qmap_freqs=(1, 1))
    for bad in [dict(qmap_context=True), dict(qmap_freqs=()), dict(qmap_freqs=(0, 1)), dict(qmap_freqs=(256,)),
                dict(qmap_v_min=-9), dict(qmap_v_min=8), dict(qmap_freqs=(1,) * 18)]:
        with pytest.raises(ValueError):
            qmap_stream(**{**base, **bad})
