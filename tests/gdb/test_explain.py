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
    assert re.search(r"pyref: PyList_Setitem is not a C-API function, macro or singleton "
                     r"pyref knows; did you mean PyList_SetItem, PyList_SET_ITEM, ", out)
    assert re.search(r"^pyref: NoSuchThingAtAll is not a C-API function, macro or singleton "
                     r"pyref knows$", out, re.M), out


def suggestions(out, name):
    m = re.search(r"^pyref: %s is not .*; did you mean (.*)\?$" % re.escape(name), out, re.M)
    assert m, out
    return m.group(1).split(", ")


def test_suggestions_ranked_and_once():
    """The same name in another case first, then other underscores, then the most alike;
    each name once (macros are in both tables), never a private _Py name first."""
    names = ["Py_Return_None", "Py_clear", "Py_NONE", "PyTuple_GetItm", "Py_Setref",
             "PyDict_GetItemStr"]
    out = pyreftest.gdb_batch(["pyref explain " + n for n in names])
    first = {n: suggestions(out, n) for n in names}
    for got in first.values():
        assert len(got) == len(set(got)) and 1 <= len(got) <= 5
        assert not got[0].startswith("_")
    assert first["Py_Return_None"][0] == "Py_RETURN_NONE"
    assert first["Py_clear"][0] == "Py_CLEAR"
    assert first["Py_NONE"][0] == "Py_None"
    assert first["PyTuple_GetItm"][0] == "PyTuple_GetItem"
    assert first["Py_Setref"][:2] == ["Py_SETREF", "Py_XSETREF"]
    assert first["PyDict_GetItemStr"][0] == "PyDict_GetItemString"


def test_macros_and_singletons():
    """The reference-count macros and singletons, each with its rule and what differs
    between 3.11 and 3.12+ (immortal singletons)."""
    names = ["Py_RETURN_NONE", "Py_None", "Py_RETURN_TRUE", "Py_RETURN_FALSE", "Py_True",
             "Py_False", "Py_CLEAR", "Py_SETREF", "Py_XSETREF", "Py_NewRef", "Py_XNewRef",
             "Py_INCREF", "Py_DECREF", "Py_XDECREF", "Py_RETURN_NOTIMPLEMENTED",
             "Py_NotImplemented"]
    facts = dict(zip(names, explain(*names)))
    assert set(facts) == set(names)
    ret_none, none = facts["Py_RETURN_NONE"], facts["Py_None"]
    assert ret_none["kind"] == "macro" and none["kind"] == "singleton"
    assert "without Py_INCREF is the classic over-release" in ret_none["rule"]
    assert "return Py_NewRef(Py_None) (<=3.11); return Py_None (3.12+" in ret_none["expands"]
    assert [v["versions"] for v in ret_none["versions"]] == ["<=3.11", "3.12+"]
    assert "immortal" in ret_none["versions"][1]["text"]
    assert none["rule"].startswith("a borrowed reference to the None singleton: Py_INCREF it")
    assert "deallocating None" in none["versions"][0]["text"]
    assert "immortal" in none["versions"][1]["text"]
    assert "sets it to NULL first" in facts["Py_CLEAR"]["rule"]
    assert "after the store" in facts["Py_SETREF"]["rule"]
    assert "may be NULL" in facts["Py_XSETREF"]["rule"]
    assert facts["Py_INCREF"]["recorded"] == "INCREF"
    for name in ("Py_True", "Py_False", "Py_NotImplemented"):
        assert facts[name]["kind"] == "singleton"
        assert "immortal" in facts[name]["versions"][1]["text"], name
    out = pyreftest.gdb_batch(["pyref explain Py_RETURN_NONE"])
    assert out.splitlines()[:3] == [
        "Py_RETURN_NONE",
        "  macro:    return Py_NewRef(Py_None) (<=3.11); return Py_None (3.12+: None is "
        "immortal)",
        "  rule:     returns a new reference to None, as a function returning PyObject * "
        "must: `return Py_None;` without Py_INCREF is the classic over-release"], out
    assert re.search(r"^  <=3\.11:   each return takes a reference to None", out, re.M)
    assert re.search(r"^  3\.12\+:    None is immortal", out, re.M)


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


def test_calls_of_the_function_from_a_shim_frame(tmp_path):
    """Stopped inside the shim's pyref_decref (an inline frame of stolen_then_decref), or
    in CPython's Py_DECREF it calls, `pyref explain` explains the user's function."""
    python = "/usr/bin/python3.11d"
    pyreftest.build_ext(SRC, python, str(tmp_path))
    out = pyreftest.gdb_batch(
        ["handle SIGABRT stop nopass", "set breakpoint pending on",
         "break stolen_then_decref", "run", "break _Py_Dealloc", "continue",
         "frame 2", "echo @@shim\\n", "pyref explain", "frame 1", "echo @@header\\n",
         "pyref explain"],
        args=["--args", python, SCENARIO, str(tmp_path), "stolen_then_decref"])
    assert re.search(r"^#2 .*pyref_\w*decref\w* \(.*\) at \S+/shim/Python\.h:\d+$",
                     out.split("@@shim\n")[0], re.M), out
    assert re.search(r"^#1 .*Py_DECREF \(.*\) at \S+/object\.h:\d+$",
                     out.split("@@header\n")[0], re.M), out
    for part in out.split("@@shim\n")[1].split("@@header\n"):
        assert part.splitlines()[0] == "C-API calls in stolen_then_decref():", out
        assert re.search(r"PyList_SetItem\s+the reference to ITEM is stolen", part)


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
