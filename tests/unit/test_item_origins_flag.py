"""PYREF_ITEM_ORIGINS_OFF (c_helpers/shim/pyref_capi_prelude.h, CONFIGURATION): the opt-in
that leaves PyTuple_GET_ITEM, PyList_GET_ITEM, PyTuple_SET_ITEM and PyList_SET_ITEM as the
interpreter defines them, and nothing else: checked on the preprocessed shim (gcc -E, no
build, no run). Default builds keep recording them (bench/RESULTS.md, 2026-12-06: the bug
corpus loses 6 of 33 diagnoses without them)."""
import os
import shutil
import subprocess
import sysconfig

import pytest

import pyreftest

SRC = r"""
#include <Python.h>
PyObject *get(PyObject *t, PyObject *l) { return PyTuple_GET_ITEM(t, 0) ? PyList_GET_ITEM(l, 0) : 0; }
void set(PyObject *t, PyObject *l, PyObject *o) { PyTuple_SET_ITEM(t, 0, o); PyList_SET_ITEM(l, 0, o); }
PyObject *other(PyObject *t) { return PyTuple_GetItem(t, 0); }
"""
INCLUDE = sysconfig.get_paths()["include"]


def preprocessed(tmp_path, *defines):
    src = tmp_path / "t.c"
    src.write_text(SRC)
    shim = os.path.join(pyreftest.ROOT, "c_helpers")
    return subprocess.run(["gcc", "-E", "-P", *defines, "-I" + os.path.join(shim, "shim"),
                           "-I" + os.path.join(shim, "include"), "-I" + INCLUDE, str(src)],
                          check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(not shutil.which("gcc") or not os.path.exists(
    os.path.join(INCLUDE, "Python.h")), reason="needs gcc and Python.h")
def test_the_flag_leaves_only_the_item_accessors_unwrapped(tmp_path):
    wrappers = ("pyref__slot_PyTuple_GET_ITEM(", "pyref__slot_PyList_GET_ITEM(",
                "pyref__orig_PyTuple_SET_ITEM(", "pyref__orig_PyList_SET_ITEM(")
    default = preprocessed(tmp_path)
    off = preprocessed(tmp_path, "-DPYREF_ITEM_ORIGINS_OFF")
    body = lambda text: text[text.index("PyObject *get("):]       # noqa: E731
    assert all(w in body(default) for w in wrappers)
    assert not any(w in body(off) for w in wrappers)
    # PyTuple_GetItem is still recorded (a BORROW naming its tuple)
    assert "PyTuple_GetItem\")" in body(off) or "\"PyTuple_GetItem\"" in body(off)
