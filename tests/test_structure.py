"""The layout as seen from the imports: the decode path reads bottom to top
and imports nothing of the encoder, the trainer, eval or torch; no module
imports a module above it (the encoder above refine, the rate matcher above
the encoder, export above both)."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "refcodec")

#: Rank of each module or package of refcodec: a module imports only modules
#: of its own rank or below (lazy imports inside functions included).
RANK = {
    "errors": 0, "arch": 0, "version": 0,
    "gain": 1, "quant": 1, "tables": 1, "colour": 1, "syntax": 1,
    "qmap": 2, "model": 2,
    "decoder": 3,
    "trace": 4, "nn": 4, "imageio": 4, "train.nets": 4,
    "refine": 5,
    "encoder": 6,
    "ratecontrol": 7,
    "export": 8,
    "conformance": 9, "inspector": 9, "fuzz": 9, "eval.metrics": 9, "eval.bdrate": 9,
    "vectors": 10, "eval": 10, "studies": 10, "train": 10, "bench": 10, "bigbench": 10, "ratecontrol.bench": 10,
    "cli": 11, "pillow_plugin": 11, "api": 11,
    "": 12, "__main__": 12,             # the package itself
}
#: The decode path (clauses 5-6), bottom to top.
DECODE_PATH = ("errors", "arch", "gain", "quant", "tables", "colour", "syntax", "qmap", "model", "decoder")


def modules():
    for dirpath, dirnames, files in os.walk(PKG):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), PKG)[:-3].replace(os.sep, ".")
                yield rel[:-len(".__init__")] if rel.endswith(".__init__") else ("" if rel == "__init__" else rel)


def rank(name):
    """The rank of a module: its own entry, else its package's."""
    parts = name.split(".")
    for i in range(len(parts), -1, -1):
        key = ".".join(parts[:i])
        if key in RANK:
            return RANK[key], key
    raise KeyError(name)


def imports(mod):
    """refcodec modules that ``mod`` imports anywhere in its file (names relative to the package)."""
    path = os.path.join(PKG, *mod.split(".")) if mod else PKG
    path = os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = mod.split(".") if os.path.basename(path) == "__init__.py" else mod.split(".")[:-1]
    package = [p for p in package if p]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [".".join(base + [a.name]) for a in node.names]
                out.update(n.strip(".") for n in names)
            elif node.module and node.module.startswith("refcodec"):
                out.add(node.module[len("refcodec"):].strip("."))
        elif isinstance(node, ast.Import):
            out.update(a.name[len("refcodec"):].strip(".") for a in node.names if a.name.startswith("refcodec"))
    return out


def test_every_module_has_a_rank():
    for m in modules():
        rank(m)


def test_no_module_imports_a_module_above_it():
    bad = []
    for m in modules():
        r, _ = rank(m)
        for t in imports(m):
            try:
                rt, key = rank(t)
            except KeyError:
                continue            # a name imported from a package (from . import encode)
            if rt > r:
                bad.append(f"{m or 'refcodec'} (rank {r}) imports {t} (rank {rt})")
    assert not bad, "\n".join(bad)


def test_the_decode_path_imports_nothing_else():
    for m in DECODE_PATH:
        for t in imports(m):
            assert rank(t)[1] in DECODE_PATH, f"{m} imports {t}, which is not on the decode path"


def test_decoding_loads_no_encoder_trainer_eval_or_torch():
    """In a fresh process, importing refcodec and decoding a stream (the
    command line's decode included) loads no module of the encoder side."""
    vec = os.path.join(ROOT, "vectors", "beta_0p5", "bitstream.bin")
    script = (
        "import sys\n"
        "import refcodec\n"
        "from refcodec.model import Model\n"
        f"m = Model({os.path.join(ROOT, 'vectors', 'models', 'conf-w16.npz')!r})\n"
        f"refcodec.decode(open({vec!r}, 'rb').read(), models=[m])\n"
        "bad = [k for k in sys.modules if k.startswith(('refcodec.encoder', 'refcodec.train', 'refcodec.eval',\n"
        "       'refcodec.export', 'refcodec.ratecontrol', 'refcodec.refine', 'refcodec.nn', 'torch'))]\n"
        "print('LOADED', bad)\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout, r.stdout


def test_kernels_import_nothing_of_refcodec():
    """kernels/ stands alone: no module of it (its benchmark included) imports refcodec."""
    kdir = os.path.join(ROOT, "kernels")
    bad = []
    for dirpath, dirnames, files in os.walk(kdir):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for f in files:
            if not f.endswith(".py"):
                continue
            tree = ast.parse(open(os.path.join(dirpath, f), encoding="utf-8").read())
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                bad += [f"{f}: {n}" for n in names if n.split(".")[0] == "refcodec"]
    assert not bad, bad


def test_kernel_errors_are_refcodec_errors_once_refcodec_is_loaded():
    import numpy as np

    import kernels
    from kernels import errors as kerr
    from refcodec.errors import ArgumentError, BackendError, RefcodecError
    try:
        kernels.conv2d(np.zeros((2, 2, 1), np.float32), np.zeros((1, 1, 1, 1), np.int16),
                       np.zeros(1, np.int32), np.zeros(1, np.int32))
    except RefcodecError as e:
        assert isinstance(e, (ArgumentError, kerr.ArgumentError))
    else:
        raise AssertionError("a float input was accepted")
    try:
        kernels.abs_sat(np.zeros((1, 1, 1), np.int16), backend="tpu")
    except BackendError as e:
        assert isinstance(e, kerr.BackendUnavailable) and isinstance(e, kerr.KernelError)
    else:
        raise AssertionError("an unknown backend was accepted")
