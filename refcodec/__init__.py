"""refcodec: a reference learned image codec whose decoder is integer
arithmetic from the first bit to the last pixel (see SPEC.md)."""

__version__ = "0.1.0"

from .errors import (BackendError, BitstreamError, EntropyDecodingError, ImageError, ModelError,  # noqa: F401
                     RefcodecError, TruncatedStreamError)
