"""refcodec: a reference learned image codec whose decoder is integer
arithmetic from the first bit to the last pixel (see SPEC.md).

    import refcodec
    data = refcodec.encode(rgb, beta=0.5)        # rgb: uint8 (H, W, 3)
    rgb2 = refcodec.decode(data, backend="cpu")  # "numpy" | "cpu" | "cuda"
"""

from .version import __version__  # noqa: F401
from .api import decode, encode, read_image  # noqa: F401
from .errors import (BackendError, BitstreamError, EntropyDecodingError, ImageError, ModelError,  # noqa: F401
                     RefcodecError, TruncatedStreamError)


def _register_pillow():
    try:
        from .pillow_plugin import register
        register()
    except ImportError:   # Pillow is a dependency; tolerate a broken install
        pass


_register_pillow()
