"""Quality metrics on 8-bit RGB images (the definitions of ../shared/anchors).

* PSNR-RGB: one MSE over all three channels (as CompressAI reports);
* PSNR-Y, PSNR-Cb, PSNR-Cr: BT.709 YCbCr computed in float from 8-bit RGB,
  peak 255 (as JPEG AI reports);
* MS-SSIM: on RGB, per channel, averaged (see ms_ssim); NaN for pictures
  under 161 pixels on a side.
"""

import numpy as np

from ..colour import ycbcr  # noqa: F401 (the metrics' YCbCr)


def psnr(a, b, peak=255.0):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def psnr_ycbcr(a, b):
    ya, yb = ycbcr(a), ycbcr(b)
    return tuple(psnr(ya[..., i], yb[..., i]) for i in range(3))


def _gaussian_window(size=11, sigma=1.5):
    x = np.arange(size) - size // 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _filter(img, win):
    from scipy.ndimage import correlate1d
    out = correlate1d(img, win, axis=0, mode="constant")
    out = correlate1d(out, win, axis=1, mode="constant")
    k = win.size // 2
    return out[k:out.shape[0] - k, k:out.shape[1] - k]       # 'valid' region


def _ssim_cs(x, y, peak=255.0):
    win = _gaussian_window()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mx, my = _filter(x, win), _filter(y, win)
    sxx = _filter(x * x, win) - mx * mx
    syy = _filter(y * y, win) - my * my
    sxy = _filter(x * y, win) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * cs
    return ssim.mean(), cs.mean()


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(a, b, peak=255.0):
    """MS-SSIM (Wang et al. 2003) averaged over the RGB channels, 5 scales,
    11x11 Gaussian window sigma 1.5, 2x2 average pooling between scales --
    the definition of pytorch-msssim / CompressAI."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if min(a.shape[:2]) < 161:          # five scales of an 11-tap window need 161 pixels
        return float("nan")
    vals = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        mcs = []
        for i, w in enumerate(MS_SSIM_WEIGHTS):
            ssim, cs = _ssim_cs(x, y, peak)
            if i < len(MS_SSIM_WEIGHTS) - 1:
                mcs.append(max(cs, 0.0))
                h, wd = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
                x = x[:h, :wd].reshape(h // 2, 2, wd // 2, 2).mean((1, 3))
                y = y[:h, :wd].reshape(h // 2, 2, wd // 2, 2).mean((1, 3))
        val = np.prod([m ** w for m, w in zip(mcs, MS_SSIM_WEIGHTS[:-1])]) * max(ssim, 0.0) ** MS_SSIM_WEIGHTS[-1]
        vals.append(val)
    return float(np.mean(vals))
