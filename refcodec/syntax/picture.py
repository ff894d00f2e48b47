"""Clause 5.1: picture().

    picture() {
        picture_header()                        clause 5.2
        substream_sizes()                       clause 5.3
        if (quality_map_enabled)
            q_data                              q_size bytes        (clause 6.7)
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
    q_data: bytes = b""


def picture(data):
    """Parse a whole refcodec stream into its header and substreams."""
    r = ByteReader(data)
    header = picture_header(r)
    sizes = substream_sizes(r, header)
    q_data = r.bytes(sizes.q_size, "q_data", CLAUSE) if header.quality_map_enabled else b""
    z_data = r.bytes(sizes.z_size, "z_data", CLAUSE)
    y_data = tuple(r.bytes(s, f"y_data[{i}]", CLAUSE) for i, s in enumerate(sizes.y_size))
    return ParsedPicture(header=header, sizes=sizes, z_data=z_data, y_data=y_data, q_data=q_data)


def write_picture(header, z_data, y_data, q_data=None):
    """Serialize a stream: header, sizes, then the substreams in syntax order."""
    y_data = list(y_data)
    if len(y_data) != header.num_y_substreams:
        raise ValueError("one y substream per num_y_substreams")
    if header.quality_map_enabled != (q_data is not None):
        raise ValueError("q_data must be given exactly when quality_map_enabled")
    sizes = write_substream_sizes(len(z_data), [len(d) for d in y_data],
                                  None if q_data is None else len(q_data))
    return (write_picture_header(header) + sizes + (bytes(q_data) if q_data is not None else b"")
            + bytes(z_data) + b"".join(bytes(d) for d in y_data))
