"""verdict.analyze, all of `pyref why`'s reasoning, on hand-written events: a table of event
lists and what the object is now -> the verdict kind, the culprit, the origin and where
it was freed; one row per rule the verdict follows (gdbext/pyref/rules/verdict.py). No
gdb: the same Events the ring gives, written by hand."""
import pytest

import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.reader.sites import Site
from pyref.rules import verdict
from pyref.rules.events import Event

DELTA = {"INCREF": 1, "DECREF": -1, "DEALLOC": -1}


def ev(spec, seq=0):
    """An Event from 'OP func:line [api] [count]': 'BORROW f:10 PyList_GetItem', 'FREE'
    (the runtime's: no site), 'DECREF g:6 2' (count before), 'INCREF* f:3' (immortal)."""
    words = spec.split()
    op, immortal = words[0].rstrip("*"), words[0].endswith("*")
    site, api, before = None, None, 1
    for w in words[1:]:
        if ":" in w:
            func, line = w.split(":")
            site = Site(0, func + ".c", int(line), func)
        elif w.isdigit():
            before = int(w)
        else:
            api = w
    if site is not None:
        site = Site(0, site.file, site.line, site.func, api or op)
    after = before + (0 if immortal else DELTA.get(op, 0))
    return Event(seq=seq, op=op, before=before, after=after, site=site, immortal=immortal)


def events(*specs):
    return [ev(s, i) for i, s in enumerate(specs)]


def use(spec):
    """The use site: where traced code was at the crash (op USE)."""
    func, line = spec.split(":")
    return Event(seq=-1, op="USE", before=0, after=0,
                 site=Site(0, func + ".c", int(line), func, "crash"))


def where(e):
    return None if e is None else e.where()


POISON = "15987178197214944733"     # a count read from memory the debug allocator filled


# (id, events, state, singleton, use site, kind, culprit, origin, freed at)
TABLE = [
    # a release the per-function rules find odd, on a live object with a healthy count:
    # no harm, no culprit (a suspicion)
    ("decref-of-borrowed-no-harm", ["BORROW f:10 PyTuple_GetItem", "DECREF f:11 2"], "live",
     None, None, "not-a-refcount-bug", None, None, None),
    ("decref-twice-no-harm", ["NEW f:1 2", "DECREF f:2 2", "DECREF f:3 1"], "live", None,
     None, "not-a-refcount-bug", None, None, None),
    # the most common life of a field's reference: INCREF and store in tp_new, release in
    # tp_clear; and tp_clear of many objects sharing one value
    ("field-released-in-tp-clear", ["BORROW tp_new:5 PyArg_ParseTuple", "INCREF tp_new:7 3",
                                    "DECREF tp_clear:20 4", "INCREF tp_new:7 3",
                                    "DECREF tp_clear:20 4", "DECREF tp_clear:20 3"],
     "live", None, None, "not-a-refcount-bug", None, None, None),
    ("singleton-released-elsewhere", ["INCREF tp_new:8 3000", "DECREF tp_clear:21 3001",
                                      "DECREF tp_clear:21 3000"], "live", "None", None,
     "not-a-refcount-bug", None, None, None),
    # freed by the release of a borrowed pointer: the lender holds it still
    ("borrowed-release-frees-it", ["NEW g:1", "BORROW f:10 PyList_GetItem",
                                   "DEALLOC f:11 1", "FREE"], "freed", None, None,
     "premature-free", "f.c:11 (f)", "f.c:10 (f)", "f.c:11 (f)"),
    ("decref-after-steal", ["NEW f:1", "STEAL f:2 PyList_SetItem", "DEALLOC f:3 1"],
     "freed", None, None, "double-release", "f.c:3 (f)", "f.c:2 (f)", "f.c:3 (f)"),
    # freed, then used at the crash: the release past what traced code acquired
    ("released-past-acquisitions", ["BORROW n:3 PyArg_ParseTuple", "INCREF n:4 3",
                                    "DECREF c:10 2", "DEALLOC d:20 1", "FREE"], "freed",
     None, "x:30", "double-release", "d.c:20 (d)", "c.c:10 (c)", "d.c:20 (d)"),
    ("released-twice-same-function", ["NEW f:1 2", "DECREF f:2 2", "DEALLOC f:3 1", "FREE"],
     "freed", None, "x:9", "double-release", "f.c:3 (f)", "f.c:2 (f)", "f.c:3 (f)"),
    # premature release: the function that freed it used it afterwards
    ("premature-release", ["NEW f:1", "DEALLOC f:4 1", "FREE"], "freed", None, "f:6",
     "premature-free", "f.c:4 (f)", "f.c:1 (f)", "f.c:4 (f)"),
    # freed by other traced code, used by a function that held no reference: the use
    ("use-after-another-frees", ["DEALLOC g:6 1", "FREE"], "freed", None, "f:12",
     "use-after-free", "f.c:12 (f)", None, "g.c:6 (g)"),
    # balanced, freed, nothing used it after: no harm
    ("freed-and-not-used", ["NEW f:1", "DEALLOC f:2 1", "FREE"], "freed", None, None,
     "unknown", None, None, "f.c:2 (f)"),
    ("reference-handed-over", ["NEW f:1", "DEALLOC g:3 1"], "freed", None, None, "unknown",
     None, None, "g.c:3 (g)"),
    ("balanced-and-live", ["NEW f:1", "INCREF f:2", "DECREF f:3 2"], "live", None, None,
     "not-a-refcount-bug", None, None, None),
    ("balanced-not-an-object", ["NEW f:1", "INCREF f:2", "DECREF f:3 2"], "not an object",
     None, None, "unknown", None, None, None),
    # a recorded operation on dead memory after the free
    ("recorded-use-after-free", ["BORROW f:10 PyList_GetItem", "FREE", "INCREF f:12 " +
                                 POISON], "live", None, None, "use-after-free",
     "f.c:12 (f)", "f.c:10 (f)", "inside CPython"),
    ("recorded-release-after-free", ["NEW f:1", "STEAL f:2 PyList_SetItem", "FREE",
                                     "DECREF f:3 " + POISON], "live", None, None,
     "double-release", "f.c:3 (f)", "f.c:2 (f)", "inside CPython"),
    # the steal's call freed it (the shim records a steal when the call returns)
    ("steal-frees-then-release", ["NEW f:1", "FREE", "STEAL f:2 PyList_SetItem",
                                  "DECREF f:3 " + POISON], "live", None, None,
     "double-release", "f.c:3 (f)", "f.c:2 (f)", "inside CPython"),
    # a sane count at a reused address is another object, whoever records it
    ("reused-address-is-another-object", ["BORROW f:10 PyArg_ParseTuple", "FREE",
                                          "BORROW f:10 PyArg_ParseTuple", "INCREF f:11 2",
                                          "DECREF f:12 3"], "live", None, None,
     "not-a-refcount-bug", None, None, None),
    ("new-object-at-reused-address", ["NEW f:1", "DEALLOC f:2 1", "NEW g:3", "INCREF g:4",
                                      "DECREF g:5 2"], "live", None, None,
     "not-a-refcount-bug", None, None, None),
    ("use-at-crash-after-free", ["BORROW f:10 PyList_GetItem", "FREE"], "freed", None,
     "f:12", "use-after-free", "f.c:12 (f)", "f.c:10 (f)", "inside CPython"),
    ("use-at-crash-origin-of-another-function", ["NEW g:1", "BORROW h:5 PyList_GetItem",
                                                  "DEALLOC g:6 1"], "freed", None, "f:12",
     "use-after-free", "f.c:12 (f)", "h.c:5 (h)", "g.c:6 (g)"),
    ("use-at-crash-freed-memory-no-end-recorded", ["BORROW f:10 PyDict_GetItem"], "freed",
     None, "f:12", "use-after-free", "f.c:12 (f)", "f.c:10 (f)", None),
    ("use-at-crash-object-live", ["BORROW f:10 PyDict_GetItem"], "live", None, "f:12",
     "not-a-refcount-bug", None, None, None),
    ("dealloc-then-free", ["NEW g:1", "BORROW f:10 PyList_GetItem", "DEALLOC g:6 1", "FREE"],
     "freed", None, "f:12", "use-after-free", "f.c:12 (f)", "f.c:10 (f)", "g.c:6 (g)"),
    ("dealloc-then-free-all-owned", ["NEW f:1", "DEALLOC f:2 1", "FREE"], "freed", None,
     None, "unknown", None, None, "f.c:2 (f)"),
    # freed inside CPython while traced code still held the reference it took (a getter
    # returned the field without an INCREF): the missing release is not in the ring
    ("freed-inside-cpython-while-held", ["BORROW n:5 PyArg_ParseTuple", "INCREF n:6 2",
                                         "FREE"], "freed", None, "r:9", "premature-free",
     None, "n.c:6 (n)", "inside CPython"),
    # only borrowed, freed inside CPython, the crash outside traced code: the borrow
    ("borrowed-then-freed-by-cpython", ["BORROW f:21 PyList_GET_ITEM", "FREE"], "freed", None,
     None, None, None, None, None),
    # a count below zero
    ("negative-count", ["NEW f:1", "DECREF g:2 1", "DECREF g:3 0"], "live", None, None,
     "double-release", "g.c:3 (g)", "g.c:2 (g)", None),
    ("singleton-released-to-zero", ["DECREF f:4 1"], "live", "None", None, "double-release",
     "f.c:4 (f)", None, None),
]


@pytest.mark.parametrize("name, specs, state, singleton, use_at, kind, culprit, origin, "
                         "freed", [r for r in TABLE if r[5] is not None],
                         ids=[r[0] for r in TABLE if r[5] is not None])
def test_verdict(name, specs, state, singleton, use_at, kind, culprit, origin, freed):
    v = verdict.analyze(events(*specs), state=state, singleton=singleton,
                        use_site=use(use_at) if use_at else None)
    assert (v.kind, where(v.culprit), where(v.origin), where(v.freed_at)) == \
        (kind, culprit, origin, freed), v.summary
    assert v.summary
    if culprit is not None:
        assert v.why and v.harm and not v.missing, v


def test_borrowed_then_freed_inside_cpython_needs_the_crash():
    """Only borrowed, freed inside CPython: without a crash on the object nothing is
    wrong; with one, the borrow is where an INCREF keeps it alive."""
    specs = ("BORROW f:21 PyList_GET_ITEM", "FREE")
    v = verdict.analyze(events(*specs), state="freed")
    assert v.culprit is None and v.kind == "unknown"
    v = verdict.analyze(events(*specs), state="freed", crashed_on=True)
    assert (v.kind, where(v.culprit)) == ("use-after-free", "f.c:21 (f)")
    assert "INCREF it there" in v.why


def test_a_suspicion_without_harm_is_no_culprit():
    v = verdict.analyze(events("BORROW f:10 PyTuple_GetItem", "DECREF f:11 2"))
    assert v.culprit is None and v.suspect == [
        "DECREF at f.c:11 (f) released a borrowed reference (borrowed from PyTuple_GetItem "
        "at f.c:10 (f)): a borrowed reference is not yours to release"]
    assert "nothing shows that it did harm" in v.summary


def test_no_history():
    v = verdict.analyze([], state="freed")
    assert (v.kind, v.summary, v.culprit) == ("unknown", "no recorded history", None)
    assert v.missing == ["no transition of this object is in the ring (untraced code, or "
                         "the ring wrapped past it)"]


def test_the_summary_says_the_rule():
    v = verdict.analyze(events("BORROW f:10 PyTuple_GetItem", "DEALLOC f:11 1", "FREE"),
                        state="freed")
    assert v.summary == ("DEALLOC at f.c:11 (f) released a borrowed reference (borrowed "
                         "from PyTuple_GetItem at f.c:10 (f)): a borrowed reference is not "
                         "yours to release")
    assert v.harm == ("the object was freed f.c:11 (f) while the container it was borrowed "
                      "from still held it")
    v = verdict.analyze(events("NEW f:1", "DEALLOC f:4 1", "FREE"), state="freed",
                        use_site=use("f:6"))
    assert v.why == ("freed by the DEALLOC at f.c:4 (f), used at f.c:6 (f): move the DECREF "
                     "after the last use")
    v = verdict.analyze(events("NEW g:1", "BORROW f:10 PyList_GetItem", "DEALLOC g:6 1",
                               "FREE"), state="freed", use_site=use("f:12"))
    assert v.summary == ("f.c:12 (f) used the object after it was freed (g.c:6 (g)); the "
                         "pointer was borrowed from PyList_GetItem at f.c:10 (f)")


@pytest.mark.parametrize("minor, note", [
    (12, "harmless here: the object is immortal on 3.12, so its count never reaches zero; "
         "on 3.11 and earlier the same code crashes"),
    (11, "a real bug on 3.11; 3.12+ makes None immortal and would hide it"),
    (None, "")])
def test_version_note_of_a_singleton(minor, note):
    v = verdict.analyze(events("DECREF f:4 1"), singleton="None", target_minor=minor)
    assert v.version_note == note


def test_version_note_of_an_immortal_object():
    # an immortal object is never freed: a borrowed release is a suspicion, no culprit
    v = verdict.analyze(events("BORROW f:1 PyTuple_GetItem", "DECREF* f:2 3"),
                        target_minor=13)
    assert v.culprit is None and v.suspect and v.version_note == ""
    v = verdict.analyze(events("NEW* f:1", "DECREF* f:2 3"), target_minor=13)
    assert v.culprit is None and v.version_note == ""      # nothing wrong: no note


def test_unowned_release_is_the_latest_lifetime_first():
    """In an address's history with several lifetimes, the verdict is about the last one
    that shows harm."""
    v = verdict.analyze(events("BORROW a:1 PyTuple_GetItem", "DEALLOC a:2 1",
                               "NEW b:3", "STEAL b:4 PyList_SetItem", "DEALLOC b:5 1"),
                        state="freed")
    assert (v.kind, where(v.culprit), where(v.origin)) == \
        ("double-release", "b.c:5 (b)", "b.c:4 (b)")


@pytest.mark.parametrize("specs, notes", [
    (["NEW f:1 PyLong_FromLong", "INCREF f:2", "DECREF f:3 2", "DEALLOC f:4 1", "FREE"],
     ["program holds 1; PyLong_FromLong: DECREF the result when done", "program holds 2; "
      "a new reference made with Py_INCREF: the caller owns it", "program holds 1; "
      "releases one owned reference", "program holds 0; releases the last reference: the "
      "object is freed here", "the interpreter freed the object's memory"]),
    (["BORROW g:1 PyTuple_GetItem", "DECREF g:2 2"],
     ["g borrows; PyTuple_GetItem: do not DECREF; INCREF it if you keep it past a call "
      "that may run Python code", "program holds -1 (released one it was not seen to "
      "acquire); releases one owned reference"]),
    # ownership follows the object: acquired in one function, released in another
    (["INCREF tp_new:1 3", "DECREF tp_clear:2 4"],
     ["program holds 1; a new reference made with Py_INCREF: the caller owns it",
      "program holds 0; releases one owned reference"]),
])
def test_ledger_notes(specs, notes):
    assert [n for _, n in verdict.ledger(events(*specs))] == notes


def test_a_borrowed_pointer_kept_and_used_elsewhere_names_no_line():
    """Borrowed in tp_new, used after its free by a method that got it from the struct:
    the store that kept it (an assignment) is the bug and has no record."""
    v = verdict.analyze(events("BORROW handler_new:22 PyArg_ParseTupleAndKeywords",
                               "FREE"), state="freed", use_site=use("handler_call:55"))
    assert (v.kind, v.culprit, where(v.origin)) == \
        ("use-after-free", None, "handler_new.c:22 (handler_new)")
    assert "kept, without an INCREF" in v.summary and v.missing


def test_a_singleton_released_more_than_acquired_when_the_ring_is_complete():
    """decref_none on 3.12: None is immortal, nothing breaks, but traced code released it
    ten times and never acquired it; with every record since recording began in the
    ring, that is a culprit, harmless only on 3.12+. Acquired elsewhere and released in
    tp_clear is not."""
    specs = ["DECREF* f:44 5"] * 3
    v = verdict.analyze(events(*specs), singleton="None", target_minor=12, complete=True)
    assert (v.kind, where(v.culprit)) == ("double-release", "f.c:44 (f)")
    assert v.version_note.startswith("harmless here")
    assert verdict.analyze(events(*specs), singleton="None").culprit is None
    fields = ["INCREF tp_new:8 300", "DECREF tp_clear:21 301"]
    assert verdict.analyze(events(*fields), singleton="None", complete=True).culprit is None


class OneFileSource:
    """The traced source as rules/handout.py asks for it: one file for every function."""

    def __init__(self, text, called=()):
        self.text_, self.called = text, set(called)

    def text(self, file_, func):
        return self.text_

    def active(self, func):
        return set(range(1, self.text_.count("\n") + 2))

    def called_by_cpython(self, func):
        return func in self.called

    def traced_files(self):
        return [("f.c", "f", [])]


def numbered(*lines):
    """Source text whose line n is lines[n-1]."""
    return "\n".join(lines) + "\n"


BORROWED_RETURN = numbered(
    "static PyObject *", "f(PyObject *list)", "{",
    "    PyObject *row = PyList_GET_ITEM(list, 0);", "    return row;", "}")


def test_a_borrowed_return_from_the_source_where_the_ring_has_the_hole():
    """Borrowed, freed inside CPython, crashed on: the source's `return row;` in a function
    CPython calls is the culprit; without source, or for a function CPython does not
    call, the borrow stays the answer."""
    evs = [Event(seq=1, op="BORROW", before=1, after=1,
                 site=Site(0, "f.c", 4, "f", "PyList_GET_ITEM")), ev("FREE", 2)]
    v = verdict.analyze(evs, state="freed", crashed_on=True,
                        source=OneFileSource(BORROWED_RETURN, called=("f",)))
    assert (v.kind, where(v.culprit), v.culprit.op) == ("premature-free", "f.c:5 (f)",
                                                        "RETURN")
    assert "without an INCREF" in v.why
    for src in (None, OneFileSource(BORROWED_RETURN)):
        v = verdict.analyze(evs, state="freed", crashed_on=True, source=src)
        assert (v.kind, where(v.culprit)) == ("use-after-free", "f.c:4 (f)")


def test_a_returned_field_and_a_stored_borrow_from_the_source():
    text = numbered(
        "static PyObject *", "g_new(PyObject *a)", "{", "    G *self = alloc();",
        "    Py_INCREF(a);", "    self->label = a;", "    self->cb = a;",
        "    return (PyObject *)self;", "}",
        "static PyObject *", "g_label(G *self, void *c)", "{", "    return self->label;", "}",
        "static PyObject *", "g_call(G *self)", "{", "    return call(self->cb);", "}")
    src = OneFileSource(text, called=("g_label",))
    held = [Event(seq=1, op="INCREF", before=1, after=2,
                  site=Site(0, "f.c", 5, "g_new", "Py_INCREF")), ev("FREE", 2)]
    v = verdict.analyze(held, state="freed", crashed_on=True, source=src)
    assert (v.kind, where(v.culprit)) == ("premature-free", "f.c:13 (g_label)")
    v = verdict.analyze(held, state="freed", crashed_on=True, source=None)
    assert v.culprit is None and v.kind == "premature-free"
    text2 = text.replace("    Py_INCREF(a);", "    x = PyArg(a, &a);")
    borrowed = [Event(seq=1, op="BORROW", before=1, after=1,
                      site=Site(0, "f.c", 5, "g_new", "PyArg")), ev("FREE", 2)]
    use_at = Event(seq=-1, op="USE", before=0, after=0,
                   site=Site(0, "f.c", 18, "g_call", "crash"))
    v = verdict.analyze(borrowed, state="freed", use_site=use_at,
                        source=OneFileSource(text2))
    assert (v.kind, where(v.culprit), v.culprit.op) == ("use-after-free", "f.c:7 (g_new)",
                                                        "STORE")
