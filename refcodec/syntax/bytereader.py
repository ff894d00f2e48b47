"""Byte-aligned reading of fixed-width unsigned fields (SPEC.md clause 5.0).

``u(n)`` reads an n-bit unsigned integer, most significant byte first
(n a multiple of 8).  Reading past the end raises TruncatedStreamError naming
the syntax element being read.
"""

from ..errors import TruncatedStreamError


class ByteReader:
    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def remaining(self):
        return len(self.data) - self.pos

    def u(self, nbits, name, clause):
        n = nbits // 8
        if self.pos + n > len(self.data):
            raise TruncatedStreamError(f"stream ends inside {name} (byte {self.pos}, needs {n} bytes, "
                                       f"{self.remaining()} left)", field=name, clause=clause)
        v = int.from_bytes(self.data[self.pos:self.pos + n], "big")
        self.pos += n
        return v

    def bytes(self, n, name, clause):
        if self.pos + n > len(self.data):
            raise TruncatedStreamError(f"stream ends inside {name} (byte {self.pos}, needs {n} bytes, "
                                       f"{self.remaining()} left)", field=name, clause=clause)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def u_bytes(value, nbits):
    return int(value).to_bytes(nbits // 8, "big")
