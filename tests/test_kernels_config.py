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
