"""The kernels' own exceptions: the package stands alone and imports
nothing of refcodec.

    KernelError             the base
    ├── BackendUnavailable  an unknown backend, or CUDA without a GPU
    ├── TableError          CDF tables that break clause 8.3's rules
    ├── StreamError         a substream that does not decode (clause 6.1)
    └── ArgumentError       arrays of the wrong type or shape (also a ValueError)

A library built on the kernels can have them raise its own subclasses:
``register(stream=MyStreamError, ...)`` -- refcodec.errors does, so the
decoder's callers see refcodec's EntropyDecodingError, ModelError,
BackendError and RefcodecError, which extend these classes.
"""


class KernelError(Exception):
    """Base class of every error the kernels raise on purpose.  Keyword
    details (``field``, ``clause``: the substream and the SPEC.md clause)
    become attributes."""

    def __init__(self, message="", **details):
        super().__init__(message)
        for k, v in details.items():
            setattr(self, k, v)


class BackendUnavailable(KernelError):
    pass


class TableError(KernelError):
    pass


class StreamError(KernelError):
    pass


class ArgumentError(KernelError, ValueError):
    pass


_BASES = {"backend": BackendUnavailable, "table": TableError, "stream": StreamError, "argument": ArgumentError}
_classes = dict(_BASES)


def register(**classes):
    """Raise these subclasses instead of the kernels' own classes
    (keys: backend, table, stream, argument)."""
    for kind, cls in classes.items():
        if kind not in _BASES or not issubclass(cls, _BASES[kind]):
            raise TypeError(f"{kind}: {cls!r} must subclass {_BASES[kind].__name__}")
    _classes.update(classes)


def error(kind, message, **details):
    """An exception of the class registered for ``kind`` (details: field, clause)."""
    return _classes[kind](message, **details)
