"""The shim builds C and C++ extensions, with and without PY_SSIZE_T_CLEAN and under
Py_LIMITED_API, with the shared and the static runtime, and the traced module behaves
exactly as the untraced one (same reference counts after every operation)."""
import os
import shutil
import subprocess

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "sameext.c")

VARIANTS = {
    "c": dict(cc="gcc"),
    "c-ssize-clean": dict(cc="gcc", extra_cflags=["-DPY_SSIZE_T_CLEAN"]),
    "c++": dict(cc="g++", extra_cflags=["-x", "c++"]),
    "limited-3.10": dict(cc="gcc", extra_cflags=["-DPy_LIMITED_API=0x030A0000"]),
    "static-runtime": dict(cc="gcc", static=True),
}


def run_trace(python, moddir):
    code = ("import sys; sys.path.insert(0, %r); import sameext; "
            "print(sameext.trace(object()))" % moddir)
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ, PYTHONMALLOC="")).stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("python", pyreftest.interpreters(pyreftest.ALL))
def test_traced_behaves_as_untraced(python, variant, tmp_path):
    if variant == "c++" and not shutil.which("g++"):
        pytest.skip("g++ not installed")
    if variant.startswith("limited") and pyreftest.interpreter_info(python).get("free_threaded"):
        pytest.skip("free-threaded CPython does not support Py_LIMITED_API (its own headers "
                    "warn without the shim)")
    opts = VARIANTS[variant]
    traced, plain = tmp_path / "traced", tmp_path / "plain"
    traced.mkdir(), plain.mkdir()
    pyreftest.build_ext(SRC, python, str(traced), **opts)
    pyreftest.build_ext(SRC, python, str(plain), traced=False,
                        **{k: v for k, v in opts.items() if k != "static"})
    expect = run_trace(python, str(plain))
    assert expect.startswith("[")
    assert run_trace(python, str(traced)) == expect


def test_pyref_config_usage():
    p = subprocess.run([pyreftest.PYREF_CONFIG], capture_output=True, text=True)
    assert p.returncode == 2 and "Usage: pyref-config" in p.stderr
    flags = subprocess.check_output([pyreftest.PYREF_CONFIG, "--python", "/usr/bin/python3.11d",
                                     "--cflags"], text=True).split()
    assert flags[0].endswith("c_helpers/shim"), "the shim must come first"
    assert "-I/usr/include/python3.11d" in flags
    libs = subprocess.check_output([pyreftest.PYREF_CONFIG, "--libs"], text=True)
    assert "-lpyref" in libs
