"""Bitstream syntax (SPEC.md clause 5): one module per syntax structure.

The parser follows SPEC.md's clause order and uses its syntax-element names;
the writer is its mirror image.
"""

from .picture import ParsedPicture, picture, write_picture
from .picture_header import LEVEL, PictureHeader, picture_header, write_picture_header
from .substream_sizes import SubstreamSizes, substream_sizes, write_substream_sizes

__all__ = ["ParsedPicture", "picture", "write_picture", "LEVEL", "PictureHeader", "picture_header",
           "write_picture_header", "SubstreamSizes", "substream_sizes", "write_substream_sizes"]
