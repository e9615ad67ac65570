"""rules/cpython.py on CPython's words as the crashed thread's frames carry them (a fatal
error's function and message, _PyObject_AssertFailed's arguments) and on hand-written
events: which evidence counts, and the verdict it leads to. No gdb."""
import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.reader.sites import Site
from pyref.rules import cpython, verdict
from pyref.rules.events import Event


def ev(seq, op, func, line, api, before=1, after=None):
    return Event(seq=seq, op=op, before=before, after=before if after is None else after,
                 site=Site(0, func + ".c", line, func, api))


GC_DECREF = {"obj": 0xba5b80, "expr": "gc_get_refs(g) > 0",
             "msg": "refcount is too small", "file": "../Modules/gcmodule.c", "line": 113,
             "function": "gc_decref"}


def test_classify():
    e = cpython.classify("_PyObject_AssertFailed", GC_DECREF)
    assert (e.kind, e.obj, e.where) == ("refcount-too-small", 0xba5b80, "gc_decref")
    assert e.text == 'gc_decref: Assertion "gc_get_refs(g) > 0" failed: refcount is too small'
    e = cpython.classify("_Py_FatalErrorFunc", {
        "func": "none_dealloc",
        "msg": "deallocating None: bug likely caused by a refcount error in a C extension"})
    assert (e.kind, e.obj) == ("singleton-dealloc", None)
    e = cpython.classify("_PyObject_AssertFailed", {
        "obj": 0x998120, "expr": None, "msg": "object has negative ref count",
        "function": "_Py_NegativeRefcount"})
    assert (e.kind, e.obj) == ("negative-refcount", 0x998120)
    # a fatal error that is not about references says nothing
    assert cpython.classify("_Py_FatalErrorFunc", {"func": "f", "msg": "out of memory"}) \
        is None
    assert cpython.classify("_PyObject_AssertFailed", {"obj": 1, "msg": "bad type",
                                                       "expr": "PyType_Check(t)"}) is None
    assert cpython.strongest([None, cpython.Evidence("singleton-dealloc", "x"), e]) is e


def test_refcount_too_small_names_the_steal_whose_pointer_stayed():
    evs = [ev(1, "NEW", "init", 45, "PyErr_NewException"),
           ev(2, "STEAL", "init", 49, "PyModule_AddObject")]
    said = cpython.classify("_PyObject_AssertFailed", GC_DECREF)
    v = verdict.analyze(evs, state="live", cpython=said)
    assert (v.kind, v.culprit.line, v.culprit.op) == ("premature-free", 49, "STEAL")
    assert "a holder without a reference" in v.why and v.harm.startswith("CPython: ")


def test_negative_none_without_records_is_never_not_a_refcount_bug():
    said = cpython.Evidence("negative-refcount", "_Py_NegativeRefcount: object has "
                            "negative ref count", 0x998120, "_Py_NegativeRefcount")
    v = verdict.analyze([], state="freed", singleton="None", cpython=said)
    assert v.kind == "double-release" and v.culprit is None
    assert "return Py_None;" in v.summary and v.missing


def test_cpython_evidence_about_an_ended_lifetime_uses_the_history():
    """_Py_NegativeRefcount on an object traced code freed: the ring's release after the
    steal is the culprit, not the bare evidence."""
    evs = [ev(1, "NEW", "parse", 29, "PyUnicode_DecodeUTF8"),
           ev(2, "STEAL", "parse", 32, "PyTuple_SET_ITEM"),
           ev(3, "DEALLOC", "parse", 43, "Py_XDECREF", before=1, after=0),
           Event(seq=4, op="FREE", before=0, after=0)]
    said = cpython.Evidence("negative-refcount", "negative", 0x10, "_Py_NegativeRefcount")
    v = verdict.analyze(evs, state="freed", cpython=said)
    assert (v.kind, v.culprit.line, v.origin.line) == ("double-release", 43, 32)
