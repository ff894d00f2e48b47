"""refcodec: a reference learned image codec whose decoder is integer
arithmetic from the first bit to the last pixel (see SPEC.md).

    import refcodec
    data = refcodec.encode(rgb, beta=0.5)        # rgb: uint8 (H, W, 3)
    rgb2 = refcodec.decode(data, backend="cpu")  # "numpy" | "cpu" | "cuda"
"""

__version__ = "0.1.0"

from .errors import (BackendError, BitstreamError, EntropyDecodingError, ImageError, ModelError,  # noqa: F401
                     RefcodecError, TruncatedStreamError)


def encode(rgb, beta=0.5, model=None, num_y_substreams=None, backend="cpu"):
    """Encode a uint8 (H, W, 3) RGB array at rate parameter beta in [0, 1]; returns bytes."""
    from .encoder import encode as _encode
    return _encode(rgb, beta=beta, model=model, num_y_substreams=num_y_substreams, backend=backend)


def decode(data, backend="cpu", models=None):
    """Decode refcodec bytes to a uint8 (H, W, 3) RGB array, bit-exact on every backend."""
    from .decoder import decode as _decode
    return _decode(data, backend=backend, models=models)


def _register_pillow():
    try:
        from .pillow_plugin import register
        register()
    except ImportError:   # Pillow is a dependency; tolerate a broken install
        pass


_register_pillow()
