"""refcodec's error classes.

Every failure that bad input can cause is one of these; nothing else escapes
from the decoder.  ``str(err)`` names what is wrong (the syntax element, the
layer, the file).
"""


class RefcodecError(Exception):
    """Base class of every error refcodec raises on purpose."""


class BitstreamError(RefcodecError):
    """A stream violates the syntax or semantics of SPEC.md.

    ``field`` is the syntax element (or substream) at fault, ``clause`` the
    SPEC.md clause that states the rule.
    """

    def __init__(self, message, field=None, clause=None):
        self.field = field
        self.clause = clause
        where = []
        if field:
            where.append(field)
        if clause:
            where.append(f"SPEC {clause}")
        super().__init__(f"{message} [{', '.join(where)}]" if where else message)


class TruncatedStreamError(BitstreamError):
    """The stream ends before a syntax element is complete."""


class EntropyDecodingError(BitstreamError):
    """A substream does not decode to a consistent end state."""


class ModelError(RefcodecError):
    """A model file is unreadable, of the wrong version, or fails a check
    (for example the no-overflow bound of a layer)."""


class ImageError(RefcodecError):
    """An input image cannot be read or has an unsupported shape or type."""


class BackendError(RefcodecError):
    """The requested compute backend is unknown or unavailable."""
