"""Colour: clause 6.6 (the decoder's integer YCbCr -> RGB) and its forward
twins (not normative): the float RGB -> YCbCr that g_a is fed, and the
float YCbCr of 8-bit RGB that the metrics and the encoder's RD choices use.
One BT.709 matrix (refcodec.arch.RGB_TO_YCBCR) for all of them."""

import numpy as np

from .arch import RGB_TO_YCBCR

#: Clause 6.6: BT.709 YCbCr -> RGB, times 255 * 2^16 (rows R, G, B; columns Y, Cb, Cr).
COLOUR_MATRIX = np.array([[16711680, 0, 26317554],
                          [16711680, -3130503, -7823143],
                          [16711680, 31010193, 0]], np.int64)
#: 255 * 0.5 * 2^16: the luma offset (g_s outputs Y - 1/2).
LUMA_OFFSET = 8355840


def colour_transform(x_q, p_x, monochrome=False):
    """Clause 6.6: int16 Y', Cb, Cr at p_x fractional bits -> uint8 RGB.
    ``monochrome`` (tool_flags bit 2): R = G = B from Y' alone, Cb and Cr unread.
    The accumulator fits int64 easily: |C| < 2^25 times |v| <= 2^15, three terms."""
    v = x_q.astype(np.int64)
    sh = 16 + p_x
    if monochrome:
        acc = v[..., :1] * COLOUR_MATRIX[0, 0] + LUMA_OFFSET * (1 << p_x)
        g = np.clip((acc + (1 << (sh - 1))) >> sh, 0, 255).astype(np.uint8)
        return np.repeat(g, 3, axis=-1)
    acc = v @ COLOUR_MATRIX.T + LUMA_OFFSET * (1 << p_x)
    return np.clip((acc + (1 << (sh - 1))) >> sh, 0, 255).astype(np.uint8)


def to_ycbcr(rgb):
    """uint8 RGB (H, W, 3) -> float32 centred YCbCr, as the trainer feeds g_a."""
    x = rgb.astype(np.float32) / 255.0
    y = x @ np.array(RGB_TO_YCBCR, np.float32).T
    y[..., 0] -= 0.5
    return y


def ycbcr(rgb):
    """8-bit RGB -> float64 YCbCr at the 0 ... 255 scale (the metrics' PSNR-Y/Cb/Cr)."""
    return np.asarray(rgb, np.float64) @ np.array(RGB_TO_YCBCR).T
