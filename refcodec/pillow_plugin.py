"""Pillow support: after ``import refcodec``, Pillow reads and writes refcodec files.

    from PIL import Image
    im = Image.open("x.rcd")                # mode "RGB", or "L" for a monochrome stream
    im.save("y.rcd", beta=0.5)              # or bpp=0.25; qmap=, model=, tolerance=, rdoq=

Errors come the way Pillow users catch them: a stream that is not refcodec
is not identified (``UnidentifiedImageError``); a corrupt one raises an
``OSError`` whose message is refcodec's and whose ``__cause__`` is the
:class:`refcodec.errors.RefcodecError`.
"""

from PIL import Image, ImageFile

from .syntax.picture_header import MAGIC

FORMAT = "REFCODEC"

#: Options ``Image.save`` passes on to :func:`refcodec.encode`.
SAVE_OPTIONS = ("beta", "bpp", "tolerance", "side", "method", "nearest", "qmap", "qmap_block_log2", "roi_q",
                "context", "rdoq", "num_y_substreams", "monochrome", "postfilter")


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
        self._mode = "L" if h.monochrome else "RGB"
        self.tile = [ImageFile._Tile("refcodec", (0, 0) + self.size, 0, ())]


class RefcodecDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer):
        from .decoder import decode
        from .errors import RefcodecError
        self.fd.seek(0)
        try:
            rgb = decode(self.fd.read())
        except RefcodecError as e:
            raise OSError(f"refcodec: {e}") from e
        self.set_as_raw((rgb[..., 0] if self.mode == "L" else rgb).tobytes())
        return -1, 0


def _save(im, fp, filename):
    from .api import encode
    from .errors import RefcodecError
    from .imageio import image_to_rgb
    import warnings
    info = im.encoderinfo
    unknown = sorted(set(info) - set(SAVE_OPTIONS) - {"model"})
    if unknown:
        raise ValueError(f"refcodec: unknown save option(s) {', '.join(unknown)}; known: "
                         f"{', '.join(SAVE_OPTIONS + ('model',))}")
    kw = {k: info[k] for k in SAVE_OPTIONS if k in info}
    try:
        rgb, notes = image_to_rgb(im, filename or "image")
        for n in notes:
            warnings.warn(n, stacklevel=3)
        if "model" in info:
            from .model import load
            kw["model"] = load(info["model"]) if isinstance(info["model"], str) else info["model"]
        data = encode(rgb, **kw)
    except RefcodecError as e:
        raise OSError(f"refcodec: {e}") from e
    fp.write(data)


def register():
    Image.register_open(FORMAT, RefcodecImageFile, _accept)
    Image.register_decoder("refcodec", RefcodecDecoder)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".rcd")
    Image.register_mime(FORMAT, "image/x-refcodec")
