"""Clause 5.1: picture().

    picture() {
        picture_header()                        clause 5.2
        substream_sizes()                       clause 5.3
        z_data                                  z_size bytes        (clause 6.2)
        for (i = 0; i < num_y_substreams; i++)
            y_data[i]                           y_size[i] bytes     (clause 6.4)
    }
"""

from dataclasses import dataclass
from typing import Tuple

from .bytereader import ByteReader
from .picture_header import PictureHeader, picture_header, write_picture_header
from .substream_sizes import SubstreamSizes, substream_sizes, write_substream_sizes

CLAUSE = "5.1"


@dataclass(frozen=True)
class ParsedPicture:
    header: PictureHeader
    sizes: SubstreamSizes
    z_data: bytes
    y_data: Tuple[bytes, ...]


def picture(data):
    """Parse a whole refcodec stream into its header and substreams."""
    r = ByteReader(data)
    header = picture_header(r)
    sizes = substream_sizes(r, header)
    z_data = r.bytes(sizes.z_size, "z_data", CLAUSE)
    y_data = tuple(r.bytes(s, f"y_data[{i}]", CLAUSE) for i, s in enumerate(sizes.y_size))
    return ParsedPicture(header=header, sizes=sizes, z_data=z_data, y_data=y_data)


def write_picture(header, z_data, y_data):
    """Serialize a stream: header, sizes, then the substreams in syntax order."""
    y_data = list(y_data)
    if len(y_data) != header.num_y_substreams:
        raise ValueError("one y substream per num_y_substreams")
    return (write_picture_header(header) + write_substream_sizes(len(z_data), [len(d) for d in y_data])
            + bytes(z_data) + b"".join(bytes(d) for d in y_data))
