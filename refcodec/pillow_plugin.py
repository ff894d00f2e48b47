"""Pillow support: after ``import refcodec``, ``PIL.Image.open`` reads refcodec files."""

from PIL import Image, ImageFile

from .syntax.picture_header import MAGIC

FORMAT = "REFCODEC"


def _accept(prefix):
    return prefix[:4] == MAGIC.to_bytes(4, "big")


class RefcodecImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "refcodec learned image codec"

    def _open(self):
        from .errors import BitstreamError
        from .syntax import picture_header
        from .syntax.bytereader import ByteReader
        head = self.fp.read(64)
        try:
            h = picture_header(ByteReader(head))
        except BitstreamError as e:
            raise SyntaxError(f"not a valid refcodec file: {e}") from None
        self._size = (h.width, h.height)
        self._mode = "RGB"
        self.tile = [ImageFile._Tile("refcodec", (0, 0) + self.size, 0, ())]


class RefcodecDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer):
        from .decoder import decode
        self.fd.seek(0)
        rgb = decode(self.fd.read())
        self.set_as_raw(rgb.tobytes())
        return -1, 0


def register():
    Image.register_open(FORMAT, RefcodecImageFile, _accept)
    Image.register_decoder("refcodec", RefcodecDecoder)
    Image.register_extension(FORMAT, ".rcd")
    Image.register_mime(FORMAT, "image/x-refcodec")
