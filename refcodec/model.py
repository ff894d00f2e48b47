"""Model files (SPEC.md clause 8): loading, validation and the integer networks.

A model file is an ``.npz`` holding a JSON header (``__header__``) and
arrays.  Loading checks everything a decoder relies on before it is used:
the format and version, the presence, dtype and shape of every array, the
entropy tables (clause 8.3), and the no-overflow bound of every integer
layer (clause 7.1) -- a file that breaks any of these is refused with a
:class:`ModelError` naming what is wrong.
"""

import hashlib
import io
import json
import os
import re
import zipfile

import numpy as np

import kernels
from kernels import rans
from kernels.conv import interleave_weights

from .arch import has_context, has_postfilter, nets_of
from .errors import ModelError
from .quant import INT31, layer_bound

FORMAT = "refcodec-model"
FORMAT_VERSION = 1
MODELS_DIR = os.path.join(os.path.dirname(__file__), "models")
#: The default model: the second generation with the post-filter, trained on
#: with the encoder's rounding and the log-rd loss (issue 19; v12, the weight
#: average at training step 178,000), W16A16, shipped without a float copy
#: (its W16 file gives the float weights back, SPEC.md 8.5).  The earlier ones
#: (refcodec-v1/v2/v3/v4/v7/v8/v9/v10/v11-*.npz) stay
#: decodable: decoders find every shipped model by the stream's model_id
#: (:func:`shipped`).
DEFAULT_MODEL = os.path.join(MODELS_DIR, "refcodec-v12-w16.npz")
#: Its W8A16 export (the same float weights, SPEC.md clause 7.1's 8-bit mode).
DEFAULT_W8 = DEFAULT_MODEL.replace("-w16.npz", "-w8.npz")


class IntNet:
    """An integer network (h_s or g_s): a list of ops of SPEC.md clause 7."""

    def __init__(self, name, ops, arrays, in_range, in_channels, out_channels):
        self.name = name
        self.ops = []
        lo, hi = in_range
        ch = in_channels
        if not isinstance(ops, list) or not ops:
            raise ModelError(f"{name}: the model file lists no layers")
        for op in ops:
            if not isinstance(op, dict):
                raise ModelError(f"{name}: malformed layer description {op!r}")
            kind = op.get("op")
            if kind == "conv":
                i = op["index"]
                w, b, shift = (_array(arrays, f"{name}.{i}.{k}") for k in ("w", "b", "shift"))
                _check_conv(f"{name}.{i}", w, b, shift, op, lo, hi)
                if w.shape[3] != ch:
                    raise ModelError(f"layer {name}.{i}: takes {w.shape[3]} channels, receives {ch}")
                ch = w.shape[0]
                self.ops.append(("conv", w, b, shift, int(op["lo"]), int(op["hi"]), interleave_weights(w)))
                lo, hi = int(op["lo"]), int(op["hi"])
            elif kind == "d2s":
                r = op.get("r")
                if r not in (2, 4):
                    raise ModelError(f"{name}: depth_to_space factor {r!r} not supported")
                if ch % (r * r):
                    raise ModelError(f"{name}: depth_to_space by {r} of {ch} channels")
                ch //= r * r
                self.ops.append(("d2s", int(r)))
            elif kind == "igdn":
                i = op["index"]
                gamma, beta, r_n, t = (_array(arrays, f"{name}.{i}.{k}") for k in ("gamma", "beta", "r_n", "t"))
                c = gamma.shape[0]
                if gamma.shape != (c, 1, 1, c) or beta.shape != (c,) or r_n.shape != (c,) or t.shape != (c,) \
                        or c != ch:
                    raise ModelError(f"layer {name}.{i}: IGDN arrays have inconsistent shapes")
                if gamma.min() < 0 or beta.min() < 0:
                    raise ModelError(f"layer {name}.{i}: IGDN needs gamma >= 0 and beta >= 0")
                if t.min() < 0 or t.max() > 30:
                    raise ModelError(f"layer {name}.{i}: IGDN shifts outside [0, 30]")
                _check_conv(f"{name}.{i}.gamma", gamma, beta, r_n, {"lo": 0, "hi": 32767}, 0, 32767)
                self.ops.append(("igdn", gamma, beta, r_n, t, interleave_weights(gamma)))
                lo, hi = -32768, 32767
            else:
                raise ModelError(f"{name}: unknown op {kind!r}")
        if ch != out_channels:
            raise ModelError(f"{name}: outputs {ch} channels, {out_channels} expected")
        # the scale factor of the network, for the decoder's grid check
        self.upscale = 1
        for op in self.ops:
            if op[0] == "d2s":
                self.upscale *= op[1]

    def __call__(self, x, backend="cpu"):
        """Run on an int16 (H, W, C) array; int16 out.  Bit-exact on every backend."""
        for op in self.ops:
            x = self.run_op(op, x, backend)
        return x

    @staticmethod
    def run_op(op, x, backend="cpu"):
        """One op of clause 7 (an entry of ``ops``) on int16 x."""
        if op[0] == "conv":
            _, w, b, shift, lo, hi, wi = op
            if backend == "cpu":
                return kernels.conv.conv2d_cpu(x, w, b, shift, lo, hi, Wi=wi)
            return kernels.conv2d(x, w, b, shift, lo, hi, backend=backend)
        if op[0] == "d2s":
            return kernels.depth_to_space(x, op[1], backend=backend)
        _, gamma, beta, r_n, t, gi = op
        a = kernels.abs_sat(x, backend=backend)
        if backend == "cpu":
            n = kernels.conv.conv2d_cpu(a, gamma, beta, r_n, 0, 32767, Wi=gi)
        else:
            n = kernels.conv2d(a, gamma, beta, r_n, 0, 32767, backend=backend)
        return kernels.mul_shift(x, n, t, backend=backend)


def _array(arrays, key):
    if key not in arrays:
        raise ModelError(f"model file lacks array {key!r}")
    return arrays[key]


def _check_conv(name, w, b, shift, op, in_lo, in_hi):
    if w.ndim != 4 or w.dtype not in (np.int16, np.int8) or w.shape[1] != w.shape[2] or w.shape[1] % 2 != 1:
        raise ModelError(f"layer {name}: weights must be int16/int8 (Cout, k, k, Cin) with odd k")
    cout = w.shape[0]
    if b.dtype != np.int32 or b.shape != (cout,) or shift.dtype != np.int32 or shift.shape != (cout,):
        raise ModelError(f"layer {name}: bias and shift must be int32 of length {cout}")
    if shift.min() < 0 or shift.max() > 31:
        raise ModelError(f"layer {name}: shifts outside [0, 31]")
    if not -32768 <= int(op["lo"]) <= int(op["hi"]) <= 32767:
        raise ModelError(f"layer {name}: clamp range outside int16")
    bound = layer_bound(w, b, shift, in_lo, in_hi)
    worst = max(bound)
    if worst > INT31:
        c = bound.index(worst)
        raise ModelError(f"layer {name}: output channel {c} can overflow the 32-bit accumulator "
                         f"(worst case {worst} > 2^31 - 1)")


class Model:
    """A loaded, validated model file."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise ModelError(f"cannot read model file {path}: {e.strerror}") from None
        self.model_id = hashlib.sha256(raw).digest()[:8]
        if raw[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise ModelError(f"{path} is not a refcodec model file (not an .npz archive)")
        try:
            npz = np.load(io.BytesIO(raw), allow_pickle=False)
            # the encoder's float weights are read on first use, the trainer's members
            # (clause 8.5) only by refcodec.nn.dequantize: a decoder never needs them
            arrays = {k: npz[k] for k in npz.files if not k.startswith(("enc.", "train."))}
            header = json.loads(bytes(arrays.pop("__header__")).decode())
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
            raise ModelError(f"{path} is not a refcodec model file ({type(e).__name__}: {e})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            fmt = header.get("format") if isinstance(header, dict) else type(header).__name__
            raise ModelError(f"{path} is not a refcodec model file (format {fmt!r})")
        if header.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"{path}: model format version {header.get('format_version')} is not supported "
                             f"(this decoder reads version {FORMAT_VERSION})")
        self.header = header
        try:
            self.arch = header["arch"]
            for net in nets_of(self.arch):
                self.arch[net] = [tuple(layer) for layer in self.arch[net]]
            for key in ("M", "Z", "K", "sigma_levels"):
                if not isinstance(self.arch[key], int) or not 1 <= self.arch[key] <= 4096:
                    raise ValueError(f"arch {key} = {self.arch[key]!r}")
            self.prec = {k: int(header["precisions"][k]) for k in ("p_mu", "p_s", "p_y", "p_x")}
            if not all(0 <= v <= 15 for v in self.prec.values()) or self.prec["p_s"] < 1:
                raise ValueError(f"precisions {self.prec} outside [0, 15] (p_s >= 1)")
            self.weight_bits = int(header["weight_bits"])
            self.ig_p = int(header["ig_p"])
            self.z_bits = int(header["z_bits"])
            if not 1 <= self.z_bits <= 16 or int(header["exp2_bits"]) != 10:
                raise ValueError("z_bits or exp2_bits out of range")
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{path}: malformed model header ({type(e).__name__}: {e})") from None
        zr = 1 << (self.z_bits - 1)
        try:
            nets = header["nets"]
            self.h_s = IntNet("h_s", nets["h_s"], arrays, (-zr, zr - 1), self.arch["Z"], 2 * self.arch["M"])
            self.g_s = IntNet("g_s", nets["g_s"], arrays, (-32768, 32767), self.arch["M"], 3)
            # the checkerboard context tool (clause 6.4), where the model has it
            self.context = has_context(self.arch)
            if self.context:
                M, C = self.arch["M"], self.arch["C"]
                if not isinstance(C, int) or not 1 <= C <= 4096:
                    raise ValueError(f"arch C = {C!r}")
                self.g_cm = IntNet("g_cm", nets["g_cm"], arrays, (-32768, 32767), M, C)
                self.g_ep = IntNet("g_ep", nets["g_ep"], arrays, (-32768, 32767), 2 * M + C, 2 * M)
            # the post-filter tool (clause 6.5.1), where the model has it
            self.postfilter = has_postfilter(self.arch)
            if self.postfilter:
                self.g_pf = IntNet("g_pf", nets["g_pf"], arrays, (-32768, 32767), 4, 3)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{path}: malformed network description ({type(e).__name__}: {e})") from None
        if self.h_s.upscale != 4 or self.g_s.upscale != 16:
            raise ModelError(f"{path}: h_s must upsample by 4 and g_s by 16")
        if self.context and (self.g_cm.upscale != 1 or self.g_ep.upscale != 1):
            raise ModelError(f"{path}: g_cm and g_ep must keep the latent grid")
        if self.postfilter and self.g_pf.upscale != 1:
            raise ModelError(f"{path}: g_pf must keep the picture's grid")
        # rans.Tables: the coders' derived tables are built once per model
        self.y_tables = rans.Tables(*(_array(arrays, k) for k in ("y_cdf", "y_cdf_len", "y_offset")))
        self.z_tables = rans.Tables(*(_array(arrays, k) for k in ("z_cdf", "z_cdf_len", "z_offset")))
        for name, tabs in (("y", self.y_tables), ("z", self.z_tables)):
            try:
                rans.check_tables(*tabs)
            except ModelError as e:
                raise ModelError(f"{name} entropy tables: {e}") from None
        if self.y_tables[0].shape[0] != self.arch["sigma_levels"]:
            raise ModelError("y entropy tables: one row per sigma level expected")
        if self.z_tables[0].shape[0] != self.arch["Z"]:
            raise ModelError("z entropy tables: one row per z channel expected")
        self.gain_log2_fp = _array(arrays, "gain_log2_fp")
        if self.gain_log2_fp.dtype != np.int32 or self.gain_log2_fp.shape != (self.arch["K"], self.arch["M"]):
            raise ModelError("gain_log2_fp must be int32 (K, M)")
        if np.abs(self.gain_log2_fp.astype(np.int64)).max() > 8 * 65536:
            raise ModelError("gain_log2_fp: a gain outside 2^-8 ... 2^8")
        self.exp2 = _array(arrays, "exp2_table")
        if self.exp2.dtype != np.int64 or self.exp2.shape != (1 << int(header["exp2_bits"]),) \
                or self.exp2[0] != 1 << 30 or np.any(np.diff(self.exp2) < 0) or self.exp2[-1] >= 1 << 31:
            raise ModelError("exp2_table must be a rising int64 table from 2^30 to below 2^31")
        self._npz = npz
        self._enc = None
        if self.ig_p != 16 or self.ig_p + self.prec["p_y"] < self.prec["p_mu"]:
            raise ModelError("ig_p must be 16 and ig_p + p_y >= p_mu")

    @property
    def enc(self):
        """The float analysis weights (``enc.*`` arrays), read on first use.

        A file whose header has ``encoder_from`` (a W8 export beside the W16
        one, :func:`refcodec.export.export`) holds none: they are those of
        the model file it names, which must lie in the same folder with the
        SHA-256 the header gives (:func:`encoder_of`)."""
        if self._enc is None and "encoder_from" in self.header:
            self._enc = encoder_of(self.header["encoder_from"], self.path)
        if self._enc is None:
            try:
                self._enc = {k[4:]: self._npz[k] for k in self._npz.files if k.startswith("enc.")}
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                raise ModelError(f"{self.path}: unreadable encoder weights ({type(e).__name__}: {e})") from None
        return self._enc

    @classmethod
    def default(cls):
        return load(DEFAULT_MODEL)


def encoder_of(ref, referrer):
    """The float analysis weights of the model file that ``ref`` (an
    ``encoder_from`` entry: ``{"file": NAME, "sha256": HEX}``) names, NAME
    being looked up in the folder of ``referrer`` (the file that refers to
    it).  A missing file, another file under that name, or one that refers
    on again is a :class:`ModelError` naming both."""
    if not (isinstance(ref, dict) and isinstance(ref.get("file"), str) and isinstance(ref.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", ref["sha256"]) and os.path.basename(ref["file"]) == ref["file"]
            and ref["file"] not in ("", ".", "..")):
        raise ModelError(f"{referrer}: malformed encoder_from {ref!r} (expected a file name and its sha256)")
    path = os.path.join(os.path.dirname(os.path.abspath(referrer)), ref["file"])
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        raise ModelError(f"{referrer}: its encoder weights are those of {ref['file']}, which cannot be read "
                         f"beside it ({e.strerror})") from None
    if digest != ref["sha256"]:
        raise ModelError(f"{referrer}: its encoder weights are those of {ref['file']}, but the file there is "
                         f"another one (sha256 {digest[:16]}..., expected {ref['sha256'][:16]}...)")
    source = load(path)
    if "encoder_from" in source.header:
        raise ModelError(f"{referrer}: {ref['file']}, which holds its encoder weights, refers on to another file")
    return source.enc


_cache = {}


def load(path=None):
    """Load (and memoize) a model file; the shipped W16A16 model by default."""
    path = os.path.abspath(path or DEFAULT_MODEL)
    if path not in _cache:
        _cache[path] = Model(path)
    return _cache[path]


_ids = {}


def float_weights_of(model_path):
    """The float weights a shipped model was exported from, as a file that
    :func:`refcodec.nn.load_float` reads: refcodec-vK-wB.npz comes from
    vK-float.npz in the same folder where that ships (v1 … v8); a later
    model ships without a float copy, and its W16 file refcodec-vK-w16.npz
    gives them back (its ``train.*`` members, clause 8.5).  None for a model
    file not named so."""
    m = re.fullmatch(r"refcodec-(v\d+)-w(?:8|16)\.npz", os.path.basename(model_path))
    if not m:
        return None
    folder = os.path.dirname(os.path.abspath(model_path))
    copy = os.path.join(folder, f"{m.group(1)}-float.npz")
    w16 = os.path.join(folder, f"refcodec-{m.group(1)}-w16.npz")
    if not os.path.exists(copy) and _has_train_members(w16):
        return w16
    return copy


def _has_train_members(path):
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.startswith("train.") for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def shipped_models():
    """{model_id: path} of every model that ships in refcodec/models
    (``refcodec-*.npz``; the float training weights are not decoder models).
    The ids are the files' SHA-256 prefixes (clause 5.2), computed once."""
    out = {}
    for name in sorted(os.listdir(MODELS_DIR)):
        if not (name.startswith("refcodec-") and name.endswith(".npz")):
            continue
        path = os.path.join(MODELS_DIR, name)
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        if key not in _ids:
            with open(path, "rb") as f:
                _ids[key] = hashlib.sha256(f.read()).digest()[:8]
        out[_ids[key]] = path
    return out


def shipped(model_id):
    """The shipped model whose id is ``model_id`` (the default decoder knows
    them all); BitstreamError when none is."""
    from .errors import BitstreamError
    default = load()
    if default.model_id == model_id:
        return default
    models = shipped_models()
    if model_id not in models:
        raise BitstreamError(f"model_id {model_id.hex()} names no model that ships with refcodec (have "
                             f"{', '.join(k.hex() + ' ' + os.path.basename(v) for k, v in models.items())}); "
                             "give its model file with --model", field="model_id", clause="5.2")
    return load(models[model_id])
