"""The library's entry points, re-exported by the package: ``refcodec.encode``,
``refcodec.decode``, ``refcodec.read_image``."""

from .errors import RefcodecError


def encode(rgb, beta=None, model=None, num_y_substreams=None, backend="cpu", bpp=None, tolerance=0.01,
           side="both", method="fast", nearest=False, qmap=None, qmap_block_log2=None, roi_q=(6, -3), refine=0,
           context=None, rdoq=None, monochrome=None, tune="psnr", postfilter=None):
    """Encode a uint8 (H, W, 3) RGB array; returns bytes.

    Either at rate parameter ``beta`` in [0, 1] (default 0.5), or at a target
    rate ``bpp`` (bit-rate matching: within ``tolerance``, ``side="below"``
    never above the target; ``nearest=True`` accepts the nearest reachable
    rate, with a warning, when the target is out of range; ``method`` "fast"
    or the "bisect" baseline).

    ``qmap``: the spatial quality map -- None or "flat", "rdo" (optimized
    for ``tune``), "activity" (JPEG AI's variance thresholds, for comparison:
    it loses on PSNR and MS-SSIM), an integer array on the block grid, a ``.npy`` file, or a PNG mask (white =
    region of interest, Q values ``roi_q = (foreground, background)``); one Q
    per 2^qmap_block_log2 latent positions (16 pixels each).  With
    ``qmap_block_log2=None``, "rdo" chooses its block size by rate-distortion
    cost among those whose map costs at most 2 % of the stream (and codes no
    map where none pays for its bits), the others one Q per latent position.

    ``refine=N``: optimize the latents for this picture with N gradient steps
    (refcodec.refine, needs PyTorch; about N training steps of the picture):
    the same syntax and decoder, fewer bits for the same quality.

    ``context``: code with the checkerboard context (SPEC.md clause 6.4) --
    by default whenever the model has it; ``False`` codes without it.

    ``rdoq``: the rate weight C of the rate-aware rounding of y (None: the
    default, which follows beta; 0 rounds to nearest).

    ``monochrome``: code a gray picture as monochrome (tool_flags bit 2: the
    decoder outputs R = G = B); by default when every pixel has R = G = B.

    ``postfilter``: run the model's post-filter g_pf (SPEC.md clause 6.5.1)
    -- by default whenever the model has one, unless a quality map takes its
    rate beyond the rates it was trained at and the picture measures better
    without it (``Analysis.choose_postfilter``); ``False`` codes without it.

    ``tune``: the metric the "rdo" map optimizes -- "psnr" (squared error,
    YUV 6:1:1) or "ms-ssim" (squared error weighted down where the picture
    is busy, as SSIM weighs it).

    Options outside their ranges raise a :class:`RefcodecError` naming them.
    """
    qkw = dict(qmap=qmap, qmap_block_log2=qmap_block_log2, roi_q=roi_q, refine=refine, context=context, rdoq=rdoq,
               monochrome=monochrome, tune=tune, postfilter=postfilter)
    if bpp is not None:
        if beta is not None:
            raise RefcodecError("give either beta or bpp, not both")
        from .ratecontrol import match
        return match(rgb, bpp, model=model, method=method, tolerance=tolerance, side=side, nearest=nearest,
                     num_y_substreams=num_y_substreams, backend=backend, **qkw).data
    from .encoder import encode as _encode
    return _encode(rgb, beta=0.5 if beta is None else beta, model=model, num_y_substreams=num_y_substreams,
                   backend=backend, **qkw)


def decode(data, backend="cpu", models=None):
    """Decode refcodec bytes to a uint8 (H, W, 3) RGB array, bit-exact on every
    backend (R = G = B for a monochrome stream).  ``models``: model objects
    (refcodec.model.load) to choose from by the stream's model_id; by default
    every model that ships with refcodec."""
    from .decoder import decode as _decode
    return _decode(data, backend=backend, models=models)


def read_image(path):
    """Read a picture file as the encoder takes it: uint8 (H, W, 3) RGB, with
    EXIF orientation applied, 16-bit and float samples scaled, alpha
    composited over white (with a warning); see refcodec.imageio."""
    from .imageio import load_image
    return load_image(path)[0]
