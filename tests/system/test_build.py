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
@pytest.mark.parametrize("python", pyreftest.interpreters())
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


# ---------------------------------------------------------------------------------------
# The ring records the right counts on every interpreter
# ---------------------------------------------------------------------------------------
RING_DRIVER = r'''
import os, sys
sys.path.insert(0, sys.argv[1])
import sameext
probe = object()
after = sameext.trace(probe)                 # Py_REFCNT(probe) after each operation
print("PROBE", id(probe), id(None), " ".join(map(str, after)))
sys.stdout.flush()
os.abort()
'''

# sameext.trace's eight operations on its argument, in order, and their count change
TRACE_OPS = [("INCREF", 1), ("INCREF", 1), ("INCREF", 1), ("INCREF", 1),
             ("DECREF", -1), ("DECREF", -1), ("DECREF", -1), ("DECREF", -1)]


@pytest.mark.parametrize("opt", ["-O1", "-O0"])   # -O0: the out-of-line optimised copies
@pytest.mark.parametrize("python", pyreftest.every_version())
def test_ring_records_the_counts(python, opt, tmp_path):
    """A traced build's ring, read from a real core, holds each transition with the count
    the interpreter had before it (what Py_REFCNT said one step earlier) and its change;
    None's are flagged immortal with no change on 3.12+ (where the interpreter leaves
    its count alone) and are plain +1/-1 before."""
    pyreftest.build_ext(SRC, python, str(tmp_path), extra_cflags=[opt])
    driver = tmp_path / "driver.py"
    driver.write_text(RING_DRIVER)
    core, proc = pyreftest.run_to_core(python, [str(driver), str(tmp_path)],
                                       cwd=str(tmp_path))
    line = [l for l in proc.stdout.splitlines() if l.startswith("PROBE ")]
    assert line, proc.stdout + proc.stderr
    fields = line[0].split()
    probe, none = int(fields[1]), int(fields[2])
    after = [int(x) for x in fields[3:]]
    ring, site = pyreftest.ring_from_core(core)
    assert ring.errors == [], ring.errors
    ours = [r for r in ring.records if site(r) and site(r)[0] == "sameext.c"]
    got = [(r.op_name, r.delta, r.refcnt) for r in ours if r.obj == probe]
    befores = [after[0] - 1] + after[:-1]   # the first: the count the call found
    assert got == [(op, d, b) for (op, d), b in zip(TRACE_OPS, befores)], (got, after)
    assert not any(r.immortal for r in ours if r.obj == probe)
    nones = [(r.op_name, r.delta, r.immortal) for r in ours if r.obj == none]
    if pyreftest.py_version(python)[:2] >= (3, 12):
        assert nones == [("INCREF", 0, True), ("DECREF", 0, True)], nones
    else:
        assert nones == [("INCREF", 1, False), ("DECREF", -1, False)], nones
