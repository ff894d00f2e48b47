"""refcodec's error classes.

Every failure that bad input can cause is one of these; nothing else escapes
from the decoder.  ``str(err)`` names what is wrong (the syntax element, the
layer, the file).

The kernels package has its own exceptions (kernels.errors); the classes
here extend them and are registered with it, so the kernels raise these.
"""

from kernels import errors as _kernel_errors


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


class EntropyDecodingError(BitstreamError, _kernel_errors.StreamError):
    """A substream does not decode to a consistent end state."""


class ModelError(RefcodecError, _kernel_errors.TableError):
    """A model file is unreadable, of the wrong version, or fails a check
    (for example the no-overflow bound of a layer)."""


class ImageError(RefcodecError):
    """An input image cannot be read or has an unsupported shape or type."""


class BackendError(RefcodecError, _kernel_errors.BackendUnavailable):
    """The requested compute backend is unknown or unavailable."""


class ArgumentError(RefcodecError, _kernel_errors.ArgumentError):
    """An array of the wrong type or shape handed to a kernel."""


_kernel_errors.register(backend=BackendError, table=ModelError, stream=EntropyDecodingError, argument=ArgumentError)
