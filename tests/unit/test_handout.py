"""rules/handout.py: the statements that hand a reference out without a record, read from
C source (no gdb)."""
from pyref.reader.sites import Site
from pyref.rules import handout
from pyref.rules.events import Event

SRC = """\
#include <Python.h>
typedef struct { PyObject_HEAD PyObject *label; PyObject *cb; } G;   /* { braces } */

static PyObject *
g_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *label, *cb;
    if (!PyArg_ParseTuple(args, "OO", &label, &cb))
        return NULL;
    G *self = (G *)type->tp_alloc(type, 0);
    Py_INCREF(label);
    self->label = label;
    self->cb = cb;
    return (PyObject *)self;
}

static PyObject *
g_label(G *self, void *closure)
{
    return self->label;
}

static PyObject *
g_label_ok(G *self, void *closure)
{
    Py_INCREF(self->label);
    return self->label;
}

static PyObject *
g_next(PyObject *list)
{
    PyObject *row = PyList_GET_ITEM(list, 0);
#ifdef FIXED
    Py_INCREF(row);
#endif
    return row;
}

static PyObject *
g_none(PyObject *self, PyObject *unused)
{
    const char *s = "return Py_None;";   // return Py_None; in a comment
    return Py_None;
}

static PyObject *
g_none_ok(PyObject *self, PyObject *unused)
{
    Py_INCREF(Py_None);
    return Py_None;
}
"""
LINES = {t.strip(): i + 1 for i, t in reversed(list(enumerate(SRC.split("\n"))))}
ALL = set(range(1, SRC.count("\n") + 2))
FIXED = LINES["Py_INCREF(row);"]


def line(text, nth=0):
    found = [i + 1 for i, t in enumerate(SRC.split("\n")) if t.strip() == text]
    return found[nth]


def test_functions_found_with_their_lines():
    fs = handout.functions(SRC)
    assert set(fs) == {"g_new", "g_label", "g_label_ok", "g_next", "g_none", "g_none_ok"}
    assert fs["g_label"].first == line("g_label(G *self, void *closure)") - 1
    assert fs["g_label"].last == line("return self->label;") + 1
    assert fs["g_new"].returns_object


def test_borrowed_return_needs_the_build_without_the_fixed_branch():
    at = line("PyObject *row = PyList_GET_ITEM(list, 0);")
    assert handout.borrowed_return(SRC, "g_next", at, "PyList_GET_ITEM",
                                   active=ALL - {FIXED}) == (line("return row;"), "row")
    # the INCREF compiled in: no borrowed return
    assert handout.borrowed_return(SRC, "g_next", at, "PyList_GET_ITEM",
                                   active=ALL) is None


def test_field_return_only_where_no_incref():
    assert handout.stored_field(SRC, "g_new", line("Py_INCREF(label);"), "Py_INCREF",
                                "INCREF") == ("label", line("self->label = label;"))
    assert handout.field_returns(SRC, "label", lambda f: True) == [
        (line("return self->label;"), "g_label")]
    assert handout.field_returns(SRC, "label", lambda f: False) == []


def test_singleton_return_ignores_comments_strings_and_increfs():
    assert handout.singleton_returns(SRC, "None", lambda f: True) == [
        (line("return Py_None;", 0), "g_none")]


def test_borrowed_store_of_a_parse_output():
    at = line('if (!PyArg_ParseTuple(args, "OO", &label, &cb))')
    assert handout.borrowed_store(SRC, "g_new", at, "PyArg_ParseTuple") == (
        line("self->cb = cb;"), "cb")
    assert handout.borrowed_store(SRC, "g_new", at, "PyArg_ParseTuple", field="label") is None


def test_source_must_match_the_recorded_sites():
    lines = SRC.split("\n")
    at = line("Py_INCREF(label);")
    assert handout.source_matches(lines, [(at, "Py_INCREF")])
    assert not handout.source_matches(lines, [(at + 5, "Py_INCREF")])
    assert not handout.source_matches(lines, [])
    assert handout.written_name("_PyArg_ParseTuple_SizeT") == "PyArg_ParseTuple"
    assert handout.written_name("PyModule_Create2") == "PyModule_Create"


class FakeSource:
    def __init__(self, called=("g_next", "g_label", "g_none")):
        self.called = set(called)

    def text(self, file_, func):
        return SRC

    def active(self, func):
        return ALL - {FIXED}

    def called_by_cpython(self, func):
        return func in self.called

    def traced_files(self):
        return [("g.c", "g_new", [(line("Py_INCREF(label);"), "Py_INCREF")])]


def ev(op, at, func, api, seq):
    return Event(seq=seq, op=op, before=1, after=1, site=Site(0, "g.c", at, func, api))


def test_find_borrowed_return_needs_a_function_cpython_calls():
    b = ev("BORROW", line("PyObject *row = PyList_GET_ITEM(list, 0);"), "g_next",
           "PyList_GET_ITEM", 1)
    got = handout.find_borrowed_return(FakeSource(), [b], b)
    assert got is not None and got[0].line == line("return row;") and got[0].op == "RETURN"
    assert handout.find_borrowed_return(FakeSource(called=()), [b], b) is None
    # a later record of the borrower (an INCREF) closes the hole
    inc = ev("INCREF", line("return row;"), "g_next", "Py_INCREF", 2)
    assert handout.find_borrowed_return(FakeSource(), [b, inc], b) is None


def test_find_field_return_and_singleton_returns():
    held = ev("INCREF", line("Py_INCREF(label);"), "g_new", "Py_INCREF", 1)
    got = handout.find_field_return(FakeSource(), [held], held)
    assert got[0].line == line("return self->label;") and got[0].func == "g_label"
    # the source does not match the recorded site: no answer
    other = ev("DECREF", line("return self->label;"), "g_label", "Py_DECREF", 2)
    assert handout.find_field_return(FakeSource(), [held, other], held) is None
    rets = handout.find_singleton_returns(FakeSource(), "None")
    assert [(e.line, e.func) for e in rets] == [(line("return Py_None;", 0), "g_none")]
    assert handout.find_singleton_returns(None, "None") == []


DROPPED = """\
static PyObject *
each(PyObject *self, PyObject *args)
{
    PyObject *cb, *it, *item;
    while ((item = PyIter_Next(it)) != NULL) {
        PyObject *res = PyObject_CallOneArg(cb, item);
        Py_DECREF(item);
        if (res == NULL)
            return NULL;
#ifdef FIXED
        Py_DECREF(res);
#endif
        PyObject_CallNoArgs(cb);
        PyObject *kept = PyObject_CallNoArgs(cb);
        store(kept);
    }
    return PyLong_FromLong(0);
}
"""


def test_dropped_result():
    lines = DROPPED.split("\n")
    at = {t.strip(): i + 1 for i, t in enumerate(lines)}
    built = set(range(1, len(lines) + 1)) - {at["Py_DECREF(res);"]}
    res = at["PyObject *res = PyObject_CallOneArg(cb, item);"]
    assert handout.dropped_result(DROPPED, "each", res, "PyObject_CallOneArg", active=built)
    # the release compiled in: not dropped
    assert not handout.dropped_result(DROPPED, "each", res, "PyObject_CallOneArg",
                                      active=built | {at["Py_DECREF(res);"]})
    assert handout.dropped_result(DROPPED, "each", at["PyObject_CallNoArgs(cb);"],
                                  "PyObject_CallNoArgs", active=built)
    assert not handout.dropped_result(DROPPED, "each",
                                      at["PyObject *kept = PyObject_CallNoArgs(cb);"],
                                      "PyObject_CallNoArgs", active=built)
    assert not handout.dropped_result(DROPPED, "each", at["while ((item = PyIter_Next(it)) "
                                                         "!= NULL) {"], "PyIter_Next",
                                      active=built)
    assert not handout.dropped_result(DROPPED, "each", res, "Py_INCREF", active=built)
