"""`pyref explain` gives the right facts for the calls users get wrong, nearest matches for
an unknown name, the calls of the current C function; and the Py_DECREF(Py_None) verdict
says how the same code behaves on the other side of 3.12."""
import json
import os
import re

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "demo", "demoext.c")
SCENARIO = os.path.join(pyreftest.ROOT, "demo", "scenario.py")
LINES = pyreftest.marker_lines(SRC)


def explain(*names):
    out = pyreftest.gdb_batch(["pyref explain --json %s" % n for n in names])
    assert "Python Exception" not in out and "Traceback" not in out, out
    return [json.loads(m) for m in re.findall(r"^\{.*?^\}", out, re.M | re.S)]


def test_facts():
    setitem, getitem, dictget, addobj, build = explain(
        "PyList_SetItem", "PyTuple_GetItem", "PyDict_GetItem", "PyModule_AddObject",
        "Py_BuildValue")
    assert setitem["returns"] == "none"
    assert setitem["steals"] == [{"arg": "item", "on_failure": True}]
    assert "even if the call fails" in setitem["rule"]
    assert getitem["returns"] == "borrowed" and getitem["container"] == "p"
    assert "do not DECREF" in getitem["rule"]
    assert dictget["returns"] == "borrowed" and dictget["container"] == "p"
    assert addobj["steals"] == [{"arg": "value", "on_failure": False}]
    assert "only if the call succeeds" in addobj["rule"]
    assert build["returns"] == "new"
    assert build["rule"].startswith("DECREF the result when done")
    assert '"N" is stolen' in build["rule"]


def test_text_and_unknown_name():
    out = pyreftest.gdb_batch(["pyref explain PyList_SetItem", "pyref explain PyList_Setitem",
                               "pyref explain NoSuchThingAtAll"])
    assert "steals:   ITEM — even when the call fails" in out
    assert re.search(r"pyref: PyList_Setitem is not in the C-API table; did you mean "
                     r"PyList_SetItem", out)
    assert "pyref: NoSuchThingAtAll is not in the C-API table" in out


def test_calls_of_the_current_function(tmp_path):
    python = "/usr/bin/python3.11d"
    pyreftest.build_ext(SRC, python, str(tmp_path))
    out = pyreftest.gdb_batch(
        ["handle SIGABRT stop nopass", "handle SIGSEGV stop nopass",
         "set breakpoint pending on", "break stolen_then_decref", "run", "pyref explain"],
        args=["--args", python, SCENARIO, str(tmp_path), "stolen_then_decref"])
    assert "C-API calls in stolen_then_decref():" in out, out
    assert re.search(r"PyList_SetItem\s+the reference to ITEM is stolen", out)
    assert re.search(r"PyBytes_FromString\s+DECREF the result when done", out)
    assert re.search(r"Py_DECREF\s+releases one reference you own", out)


@pytest.mark.parametrize("python", pyreftest.interpreters())
def test_decref_none_verdict_is_version_aware(python, tmp_path):
    major, minor, debug = pyreftest.py_version(python)
    pyreftest.build_ext(SRC, python, str(tmp_path))
    core, _ = pyreftest.run_to_core(python, [SCENARIO, str(tmp_path), "decref_none"],
                                    cwd=str(tmp_path))
    out = pyreftest.gdb_batch(["pyref why --json &_Py_NoneStruct"], args=[python, core])
    rep = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert rep["verdict"] == "double-release"
    assert rep["culprit"]["line"] == LINES["s3-culprit"]
    if minor >= 12:
        assert rep["version_note"].startswith("harmless here")
        assert "3.11 and earlier" in rep["version_note"]
    else:
        assert rep["version_note"].startswith("a real bug on 3.%d" % minor)
        assert "3.12+" in rep["version_note"]
