"""Reading pictures for the encoder (not normative): any file Pillow opens,
turned into the 8-bit RGB array the encoder takes -- or refused with an
:class:`ImageError` that says why.  Nothing is changed silently:

* EXIF orientation is applied (a portrait photo stays upright);
* 16-bit samples (modes ``I;16*``, and ``I`` within [0, 65535]) are scaled
  to 8 bits, ``round(v * 255 / 65535)``; float samples (mode ``F``) must lie
  in [0, 1] and are scaled by 255; other ranges are refused;
* grayscale modes (``1``, ``L``, ``LA``, ``I;16``, ``I``, ``F``) become R = G = B,
  which the encoder codes as a monochrome picture (tool_flags bit 2);
* alpha (``RGBA``, ``LA``, ``PA``, a palette's or a mode's transparency) is
  composited over white, with a note, since refcodec codes no alpha: the
  colours hidden under transparent pixels are not coded;
* a file with several frames (animated GIF, multi-page TIFF) codes its first
  frame, with a note;
* a picture beyond the level limits (SPEC.md clause 9) is refused before its
  pixels are decoded.

:func:`load_image` returns ``(rgb, notes)``; the notes are also issued as
Python warnings (once each).
"""

import io
import os
import warnings

import numpy as np

from .errors import ImageError
from .syntax.picture_header import LEVEL

#: Background that transparent pixels are composited over.
BACKGROUND = (255, 255, 255)

def _level_text():
    return (f"at most {LEVEL['max_width']} x {LEVEL['max_height']} and {LEVEL['max_samples']} samples "
            "(SPEC.md clause 9)")


def check_size(width, height, name="image"):
    if not (1 <= width <= LEVEL["max_width"] and 1 <= height <= LEVEL["max_height"]
            and width * height <= LEVEL["max_samples"]):
        raise ImageError(f"{name} is {width} x {height}: above the level limits of refcodec, {_level_text()}")


def _gray16_to_8(a):
    a = np.asarray(a, np.int64)
    return ((a * 255 + 32767) // 65535).astype(np.uint8)


def image_to_rgb(im, name="image"):
    """A Pillow image -> (uint8 (H, W, 3) array, notes)."""
    from PIL import ImageOps
    notes = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"{name} has {frames} frames; refcodec codes the first one only")
        im.seek(0)
    check_size(*im.size, name=name)
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:           # a broken EXIF block: keep the stored orientation
        orientation = 1
    if orientation not in (None, 1):
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode.startswith("I;16"):
        g = _gray16_to_8(np.asarray(im))
        return np.repeat(g[:, :, None], 3, axis=2), notes
    if mode == "I":
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageError(f"{name}: 32-bit integer samples outside [0, 65535] (mode I, {a.min()} ... "
                             f"{a.max()}); convert it to 8 or 16 bits first")
        g = _gray16_to_8(a)
        return np.repeat(g[:, :, None], 3, axis=2), notes
    if mode == "F":
        a = np.asarray(im, np.float64)
        if not np.all(np.isfinite(a)):
            raise ImageError(f"{name}: float samples include NaN or infinity (mode F)")
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ImageError(f"{name}: float samples outside [0, 1] (mode F, {a.min():.4g} ... {a.max():.4g}); "
                             "refcodec reads float pictures as [0, 1]: rescale it or convert it to 8 bits")
        g = np.round(a * 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2), notes
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        a = np.asarray(rgba)
        alpha = a[..., 3:4].astype(np.int64)
        if alpha.size and alpha.min() < 255:
            notes.append(f"{name} has transparent pixels: refcodec codes no alpha, so they are composited over "
                         "white")
        bg = np.array(BACKGROUND, np.int64)
        rgb = (a[..., :3].astype(np.int64) * alpha + bg * (255 - alpha) + 127) // 255
        if mode in ("LA", "La"):
            rgb[..., 1] = rgb[..., 2] = rgb[..., 0]
        return rgb.astype(np.uint8), notes
    if mode in ("1", "L"):
        g = np.asarray(im.convert("L"))
        return np.repeat(g[:, :, None], 3, axis=2), notes
    if mode == "RGB":
        return np.asarray(im), notes
    try:
        return np.asarray(im.convert("RGB")), notes          # P, CMYK, YCbCr, LAB, HSV, RGBX, ...
    except (ValueError, OSError) as e:
        raise ImageError(f"{name}: cannot convert mode {mode} to RGB ({e})") from None


def load_image(src, name=None, warn=True):
    """Read a picture file (a path, a binary file object or bytes) -> (rgb, notes).

    Raises :class:`ImageError` naming the file for anything unreadable or
    unsupported."""
    from PIL import Image, UnidentifiedImageError
    if name is None:
        name = src if isinstance(src, (str, os.PathLike)) else "image"
    if isinstance(src, (bytes, bytearray)):
        src = io.BytesIO(src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                check_size(*im.size, name=name)      # before a pixel is decoded
                im.load()
                rgb, notes = image_to_rgb(im, name)
    except Image.DecompressionBombError as e:
        raise ImageError(f"cannot read image {name}: too large for refcodec, whose level allows "
                         f"{_level_text()} ({e})") from None
    except IsADirectoryError:
        raise ImageError(f"cannot read image {name}: it is a directory") from None
    except FileNotFoundError:
        raise ImageError(f"cannot read image {name}: no such file") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"cannot read image {name}: {e}") from None
    if warn:
        for n in notes:
            warnings.warn(n, stacklevel=2)
    return np.ascontiguousarray(rgb), notes


def is_gray(rgb):
    """True when every pixel has R = G = B."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))
