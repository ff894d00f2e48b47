"""Clause 5.3: substream_sizes().

    substream_sizes() {                         bits
        if (quality_map_enabled)
            q_size                              u(32)
        z_size                                  u(32)
        for (i = 0; i < num_y_substreams; i++)
            y_size[i]                           u(32)
    }

Each size is a byte count, even (the coder writes 16-bit words) and at least
8 (two coder states).  Together they must account for exactly the bytes that
follow substream_sizes() -- checked here, before any substream is read, so a
size can never make the decoder read past the end or allocate for data that
is not there.
"""

from dataclasses import dataclass
from typing import Tuple

from ..errors import BitstreamError
from .bytereader import u_bytes

CLAUSE = "5.3"
MIN_SUBSTREAM_BYTES = 8


@dataclass(frozen=True)
class SubstreamSizes:
    z_size: int
    y_size: Tuple[int, ...]
    q_size: int = 0


def _check(size, name, remaining):
    if size < MIN_SUBSTREAM_BYTES or size % 2:
        raise BitstreamError(f"{name} = {size} is not an even byte count >= {MIN_SUBSTREAM_BYTES}",
                             field=name, clause=CLAUSE)
    if size > remaining:
        raise BitstreamError(f"{name} = {size} runs past the end of the stream ({remaining} bytes left)",
                             field=name, clause=CLAUSE)


def substream_sizes(r, header):
    """Parse substream_sizes() for a parsed picture header."""
    q_size = r.u(32, "q_size", CLAUSE) if header.quality_map_enabled else 0
    z_size = r.u(32, "z_size", CLAUSE)
    y_size = tuple(r.u(32, f"y_size[{i}]", CLAUSE) for i in range(header.num_y_substreams))
    remaining = r.remaining()
    if header.quality_map_enabled:
        _check(q_size, "q_size", remaining)
        remaining -= q_size
    _check(z_size, "z_size", remaining)
    remaining -= z_size
    for i, s in enumerate(y_size):
        _check(s, f"y_size[{i}]", remaining)
        remaining -= s
    if remaining:
        raise BitstreamError(f"{remaining} bytes after the last substream", field=f"y_size[{len(y_size) - 1}]",
                             clause=CLAUSE)
    return SubstreamSizes(z_size=z_size, y_size=y_size, q_size=q_size)


def write_substream_sizes(z_size, y_sizes, q_size=None):
    head = u_bytes(q_size, 32) if q_size is not None else b""
    return head + u_bytes(z_size, 32) + b"".join(u_bytes(s, 32) for s in y_sizes)
