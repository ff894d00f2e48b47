"""Every jitted function takes its options from kernels/config.py (no fastmath,
cache on), as STYLE.md lesson 7 asks."""

import ast
import os

import pytest

from kernels import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOWED = {"njit": {"NJIT", "NJIT_PARALLEL", "NJIT_INLINE"}, "jit": {"CUDA_JIT"}}


def python_files():
    for top in ("kernels", "refcodec"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith(".py"):
                    yield os.path.join(dirpath, f)


def jit_calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name in ("njit", "jit"):
                yield name, node
        elif isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                name = d.attr if isinstance(d, ast.Attribute) else getattr(d, "id", None)
                if name in ("njit", "jit"):
                    yield name, d


@pytest.mark.parametrize("path", sorted(python_files()), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_jit_uses_the_config_options(path):
    tree = ast.parse(open(path).read())
    for name, node in jit_calls(tree):
        assert isinstance(node, ast.Call), f"{path}:{node.lineno}: bare @{name} without the config options"
        stars = [kw.value.id for kw in node.keywords if kw.arg is None and isinstance(kw.value, ast.Name)]
        explicit = [kw.arg for kw in node.keywords if kw.arg not in (None, "device")]
        assert stars and set(stars) <= ALLOWED[name], f"{path}:{node.lineno}: @{name} must take **{ALLOWED[name]}"
        assert not explicit, f"{path}:{node.lineno}: @{name} sets {explicit} itself"


def test_config_never_enables_fastmath():
    for opts in (config.NJIT, config.NJIT_PARALLEL, config.NJIT_INLINE, config.CUDA_JIT):
        assert opts.get("fastmath", False) is False
    assert config.NJIT["cache"] and config.NJIT_PARALLEL["cache"]


def test_package_digest_follows_every_source_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not a source\n")
    d0 = config.package_digest(str(tmp_path))
    (tmp_path / "notes.txt").write_text("still not a source\n")
    assert config.package_digest(str(tmp_path)) == d0
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")            # a helper in another file
    d1 = config.package_digest(str(tmp_path))
    assert d1 != d0
    (tmp_path / "c.py").write_text("")                            # a new file
    assert config.package_digest(str(tmp_path)) not in (d0, d1)


def test_every_cached_kernel_is_stamped_with_the_whole_package():
    """numba stamps a cached function with its own file; ours carry the
    digest of the kernels package, so editing simd.py recompiles conv.py."""
    import importlib
    from numba.core.registry import CPUDispatcher
    stamped = 0
    for name in ("conv", "ops", "rans"):
        mod = importlib.import_module(f"kernels.{name}")
        for obj in vars(mod).values():
            if isinstance(obj, CPUDispatcher) and obj._cache is not None and hasattr(obj._cache, "_impl"):
                loc = obj._cache._impl._locator
                assert getattr(loc, "_refcodec_kernels", False), (name, obj.__name__, type(loc))
                assert loc.get_source_stamp() == config.package_digest()
                stamped += 1
    assert stamped >= 10
