"""Image inputs (refcodec.imageio): every Pillow mode that opens, EXIF
orientations 1-8 and multi-frame files come out right or give a clear error;
gray pictures are coded monochrome (tool_flags bit 2)."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import refcodec
from refcodec import decoder, encoder
from refcodec.errors import ImageError
from refcodec.imageio import image_to_rgb, load_image
from refcodec.model import Model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny():
    """The conformance vectors' small W16A16 model (no context networks)."""
    return Model(os.path.join(ROOT, "vectors", "models", "conf-w16.npz"))


@pytest.fixture(scope="module")
def kodak_crop():
    return np.asarray(Image.open(os.path.join(ROOT, "tests", "data", "kodim23.png")).convert("RGB"))[200:297, 300:431]


@pytest.fixture
def orig(rng):
    """An asymmetric 5 x 7 RGB picture."""
    return rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)


def roundtrip_file(im, fmt="PNG", **save):
    buf = io.BytesIO()
    im.save(buf, fmt, **save)
    return load_image(buf.getvalue(), warn=False)


def gray3(g):
    return np.repeat(np.asarray(g, np.uint8)[:, :, None], 3, axis=2)


# ------------------------------------------------------------------ modes

def test_rgb_and_gray_modes(orig):
    rgb, notes = roundtrip_file(Image.fromarray(orig))
    assert np.array_equal(rgb, orig) and not notes
    g = orig[..., 0]
    rgb, _ = roundtrip_file(Image.fromarray(g, "L"))
    assert np.array_equal(rgb, gray3(g))
    bw = Image.fromarray(g > 128).convert("1")
    rgb, _ = roundtrip_file(bw)
    assert set(np.unique(rgb)) <= {0, 255} and np.array_equal(rgb[..., 0], np.where(g > 128, 255, 0))


def test_sixteen_bit_gray_is_scaled_not_clipped():
    v = np.array([[0, 1, 128, 257, 32896], [40000, 65280, 65534, 65535, 300]], np.uint16)
    rgb, _ = roundtrip_file(Image.fromarray(v))          # saved as a 16-bit PNG, opened as I;16
    expect = (v.astype(np.int64) * 255 + 32767) // 65535
    assert np.array_equal(rgb, gray3(expect))
    assert rgb.max() == 255 and rgb.min() == 0 and 100 < rgb[0, 4, 0] < 160     # not all white
    i32 = Image.fromarray(v.astype(np.int32), "I")
    assert np.array_equal(image_to_rgb(i32)[0], gray3(expect))


def test_out_of_range_integer_and_float_samples_are_refused():
    with pytest.raises(ImageError, match=r"outside \[0, 65535\]"):
        image_to_rgb(Image.fromarray(np.array([[-1, 5]], np.int32), "I"))
    with pytest.raises(ImageError, match=r"outside \[0, 1\]"):
        image_to_rgb(Image.fromarray(np.array([[0.5, 3.0]], np.float32), "F"))
    with pytest.raises(ImageError, match="NaN"):
        image_to_rgb(Image.fromarray(np.array([[0.5, np.nan]], np.float32), "F"))


def test_float_samples_in_unit_range_are_scaled():
    f = np.array([[0.0, 0.25, 0.5], [0.999, 1.0, 0.1]], np.float32)
    rgb, _ = roundtrip_file(Image.fromarray(f, "F"), "TIFF")
    assert np.array_equal(rgb, gray3(np.round(f.astype(np.float64) * 255)))


def test_alpha_is_composited_over_white_with_a_note(orig):
    a = np.full(orig.shape[:2], 255, np.uint8)
    a[0, 0], a[1, 1] = 0, 128
    rgba = np.dstack([orig, a])
    rgb, notes = roundtrip_file(Image.fromarray(rgba, "RGBA"))
    assert np.array_equal(rgb[0, 0], [255, 255, 255])                      # hidden colour not coded
    expect = (orig[1, 1].astype(int) * 128 + 255 * 127 + 127) // 255
    assert np.array_equal(rgb[1, 1], expect) and np.array_equal(rgb[2:], orig[2:])
    assert len(notes) == 1 and "transparent" in notes[0]
    rgb, notes = roundtrip_file(Image.fromarray(np.dstack([orig, np.full(a.shape, 255, np.uint8)]), "RGBA"))
    assert np.array_equal(rgb, orig) and not notes                         # opaque: nothing dropped, no note
    la = Image.fromarray(np.dstack([orig[..., 0], a]), "LA")
    rgb, notes = roundtrip_file(la)
    assert np.array_equal(rgb[0, 0], [255, 255, 255]) and notes and refcodec.imageio.is_gray(rgb)
    pa = Image.fromarray(orig).convert("P").convert("PA")
    rgb, _ = image_to_rgb(pa)
    assert np.array_equal(rgb, np.asarray(Image.fromarray(orig).convert("P").convert("RGB")))


def test_palette_cmyk_and_other_modes_convert_like_pillow(orig):
    p = Image.fromarray(orig).convert("P")
    assert np.array_equal(roundtrip_file(p)[0], np.asarray(p.convert("RGB")))
    cmyk = Image.fromarray(orig).convert("CMYK")
    assert np.array_equal(roundtrip_file(cmyk, "TIFF")[0], np.asarray(cmyk.convert("RGB")))
    ycc = Image.fromarray(orig).convert("YCbCr")
    assert np.array_equal(image_to_rgb(ycc)[0], np.asarray(ycc.convert("RGB")))
    with pytest.raises(ImageError):
        image_to_rgb(Image.new("I;16", (3, 2)).convert("I").point(lambda v: v - 10))   # negative: refused


# ------------------------------------------------------------------ orientation, frames, files

STORED = {1: lambda a: a, 2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud,
          5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, 1),
          7: lambda a: np.rot90(a, 2).transpose(1, 0, 2), 8: lambda a: np.rot90(a, -1)}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orig, orientation):
    """A file stored turned, with the EXIF orientation that turns it back,
    reads upright (the stored pixels are built with numpy, not Pillow)."""
    im = Image.fromarray(np.ascontiguousarray(STORED[orientation](orig)))
    exif = im.getexif()
    exif[0x0112] = orientation
    rgb, _ = roundtrip_file(im, exif=exif)
    assert rgb.shape == orig.shape and np.array_equal(rgb, orig)


def test_multi_frame_files_code_the_first_frame_with_a_note(orig):
    frames = [Image.fromarray(orig).convert("P"), Image.fromarray(255 - orig).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    rgb, notes = load_image(buf.getvalue(), warn=False)
    assert np.array_equal(rgb, np.asarray(frames[0].convert("RGB")))
    assert len(notes) == 1 and "2 frames" in notes[0]
    with pytest.warns(UserWarning, match="2 frames"):
        load_image(buf.getvalue())


def _png_header_only(w, h):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("w,h", [(20000, 20000), (16385, 8), (8192, 8193)])
def test_pictures_above_the_level_are_refused_before_decoding(w, h):
    with pytest.raises(ImageError, match="level"):
        load_image(_png_header_only(w, h), name="big.png")


def test_unreadable_files_name_the_file(tmp_path, orig):
    p = tmp_path / "cut.png"
    Image.fromarray(orig).save(p)
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(ImageError, match="cut.png"):
        load_image(str(p))
    with pytest.raises(ImageError, match="no such file"):
        load_image(str(tmp_path / "missing.png"))
    with pytest.raises(ImageError, match="directory"):
        load_image(str(tmp_path))
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ImageError, match="text.png"):
        load_image(str(tmp_path / "text.png"))


# ------------------------------------------------------------------ monochrome (tool_flags bit 2)

def test_gray_pictures_are_coded_monochrome_and_stay_gray(tiny, kodak_crop):
    g = gray3(np.round(kodak_crop.astype(float) @ [0.2126, 0.7152, 0.0722]).astype(np.uint8))
    mono = encoder.encode(g, beta=0.6, model=tiny)
    plain = encoder.encode(g, beta=0.6, model=tiny, monochrome=False)
    assert decoder.picture(mono).header.monochrome and not decoder.picture(plain).header.monochrome
    out = {be: decoder.decode(mono, backend=be, models=[tiny]) for be in ("numpy", "cpu")}
    assert np.array_equal(out["numpy"], out["cpu"])
    assert refcodec.imageio.is_gray(out["cpu"])
    tinted = decoder.decode(plain, models=[tiny])
    assert not refcodec.imageio.is_gray(tinted)                       # what the flag fixes
    flagged = bytearray(plain)
    flagged[19] |= 4                       # tool_flags: the streams differ in the monochrome bit alone
    assert bytes(flagged) == mono
    with pytest.raises(refcodec.RefcodecError, match="gray"):
        encoder.encode(kodak_crop, beta=0.5, model=tiny, monochrome=True)
    assert not decoder.picture(encoder.encode(kodak_crop, beta=0.5, model=tiny)).header.monochrome


def test_monochrome_streams_open_in_pillow_as_mode_L(tiny, kodak_crop):
    g = gray3(kodak_crop[..., 1])
    data = refcodec.encode(g, beta=0.5)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), refcodec.decode(data)[..., 0])
