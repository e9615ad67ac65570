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


# (id, events, state, singleton, use site, kind, culprit, origin, freed at)
TABLE = [
    ("decref-of-borrowed", ["BORROW f:10 PyTuple_GetItem", "DECREF f:11 2"], "live", None,
     None, "premature-free", "f.c:11 (f)", "f.c:10 (f)", None),
    ("steal-of-borrowed", ["BORROW f:10 PyTuple_GetItem", "STEAL f:11 PyList_SetItem"],
     "live", None, None, "premature-free", "f.c:11 (f)", "f.c:10 (f)", None),
    ("borrowed-release-frees-it", ["NEW g:1", "BORROW f:10 PyList_GetItem",
                                   "DEALLOC f:11 1", "FREE"], "freed", None, None,
     "premature-free", "f.c:11 (f)", "f.c:10 (f)", "f.c:11 (f)"),
    ("decref-after-steal", ["NEW f:1", "STEAL f:2 PyList_SetItem", "DEALLOC f:3 1"],
     "freed", None, None, "double-release", "f.c:3 (f)", "f.c:2 (f)", "f.c:3 (f)"),
    ("decref-twice", ["NEW f:1 2", "DECREF f:2 2", "DECREF f:3 1"], "live", None, None,
     "double-release", "f.c:3 (f)", "f.c:2 (f)", None),
    ("singleton-never-acquired", ["DECREF f:4 5"], "live", "None", None,
     "double-release", "f.c:4 (f)", None, None),
    ("release-without-evidence", ["DECREF f:4 5"], "live", None, None,
     "not-a-refcount-bug", None, None, None),
    ("reference-handed-over", ["NEW f:1", "DEALLOC g:3 1"], "freed", None, None, "unknown",
     None, None, "g.c:3 (g)"),
    ("released-twice-without-acquiring", ["NEW f:1 2", "DECREF g:2 2", "DEALLOC g:3 1"],
     "freed", None, None, "double-release", "g.c:3 (g)", "g.c:2 (g)", "g.c:3 (g)"),
    ("balanced-and-live", ["NEW f:1", "INCREF f:2", "DECREF f:3 2"], "live", None, None,
     "not-a-refcount-bug", None, None, None),
    ("balanced-not-an-object", ["NEW f:1", "INCREF f:2", "DECREF f:3 2"], "not an object",
     None, None, "unknown", None, None, None),
    ("freed-inside-cpython-owned", ["NEW f:1", "FREE"], "freed", None, None, "unknown",
     None, None, "inside CPython"),
    ("recorded-use-after-free", ["BORROW f:10 PyList_GetItem", "FREE", "INCREF f:12"],
     "live", None, None, "use-after-free", "f.c:12 (f)", "f.c:10 (f)", "inside CPython"),
    ("use-after-dealloc-then-free", ["NEW g:1", "BORROW f:10 PyList_GetItem",
                                     "DEALLOC g:6 1", "FREE", "DECREF f:12 1"], "live",
     None, None, "use-after-free", "f.c:12 (f)", "f.c:10 (f)", "g.c:6 (g)"),
    ("new-object-at-reused-address", ["NEW f:1", "DEALLOC f:2 1", "NEW g:3", "INCREF g:4",
                                      "DECREF g:5 2"], "live", None, None, "unknown", None,
     None, "f.c:2 (f)"),
    ("use-at-crash-after-free", ["BORROW f:10 PyList_GetItem", "FREE"], "freed", None,
     "f:12", "use-after-free", "f.c:12 (f)", "f.c:10 (f)", "inside CPython"),
    ("use-at-crash-origin-of-another-function", ["NEW g:1", "BORROW h:5 PyList_GetItem",
                                                  "DEALLOC g:6 1"], "freed", None, "f:12",
     "use-after-free", "f.c:12 (f)", "h.c:5 (h)", "g.c:6 (g)"),
    ("use-at-crash-freed-memory-no-end-recorded", ["BORROW f:10 PyDict_GetItem"], "freed",
     None, "f:12", "use-after-free", "f.c:12 (f)", "f.c:10 (f)", None),
    ("use-at-crash-object-live", ["BORROW f:10 PyDict_GetItem"], "live", None, "f:12",
     "not-a-refcount-bug", None, None, None),
    # the allocator hook's FREE after a traced owner's DEALLOC: the lifetime ends at the
    # DEALLOC, whose line says where the object died (before, the FREE was a lifetime of
    # its own and the origin and the freeing line were lost)
    ("dealloc-then-free", ["NEW g:1", "BORROW f:10 PyList_GetItem", "DEALLOC g:6 1", "FREE"],
     "freed", None, "f:12", "use-after-free", "f.c:12 (f)", "f.c:10 (f)", "g.c:6 (g)"),
    ("dealloc-then-free-all-owned", ["NEW f:1", "DEALLOC f:2 1", "FREE"], "freed", None,
     None, "unknown", None, None, "f.c:2 (f)"),
]


@pytest.mark.parametrize("name, specs, state, singleton, use_at, kind, culprit, origin, "
                         "freed", TABLE, ids=[row[0] for row in TABLE])
def test_verdict(name, specs, state, singleton, use_at, kind, culprit, origin, freed):
    v = verdict.analyze(events(*specs), state=state, singleton=singleton,
                        use_site=use(use_at) if use_at else None)
    assert (v.kind, where(v.culprit), where(v.origin), where(v.freed_at)) == \
        (kind, culprit, origin, freed), v.summary
    assert v.summary
    if culprit is None:
        assert v.why == "" and (bool(v.missing) == (freed is not None or state == "freed"))
    else:
        assert v.why and not v.missing, v


def test_no_history():
    v = verdict.analyze([], state="freed")
    assert (v.kind, v.summary, v.culprit) == ("unknown", "no recorded history", None)
    assert v.missing == ["no transition of this object is in the ring (untraced code, or "
                         "the ring wrapped past it)"]


def test_the_summary_says_the_rule():
    v = verdict.analyze(events("BORROW f:10 PyTuple_GetItem", "DECREF f:11 2"))
    assert v.summary == ("DECREF at f.c:11 (f) released a borrowed reference (borrowed from "
                         "PyTuple_GetItem at f.c:10 (f)): a borrowed reference is not yours "
                         "to release")
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
    v = verdict.analyze(events("DECREF f:4 5"), singleton="None", target_minor=minor)
    assert v.version_note == note


def test_version_note_of_an_immortal_object():
    v = verdict.analyze(events("BORROW f:1 PyTuple_GetItem", "DECREF* f:2 3"),
                        target_minor=13)
    assert v.kind == "premature-free" and v.version_note.startswith("harmless here: ")
    v = verdict.analyze(events("NEW* f:1", "DECREF* f:2 3"), target_minor=13)
    assert v.culprit is None and v.version_note == ""      # nothing wrong: no note


def test_unowned_release_is_the_latest_lifetime_first():
    """In an address's history with several lifetimes, the verdict is about the last one
    that has a release without ownership."""
    v = verdict.analyze(events("BORROW a:1 PyTuple_GetItem", "DEALLOC a:2 1",
                               "NEW b:3", "STEAL b:4 PyList_SetItem", "DEALLOC b:5 1"),
                        state="freed")
    assert (v.kind, where(v.culprit), where(v.origin)) == \
        ("double-release", "b.c:5 (b)", "b.c:4 (b)")


@pytest.mark.parametrize("specs, notes", [
    (["NEW f:1 PyLong_FromLong", "INCREF f:2", "DECREF f:3 2", "DEALLOC f:4 1", "FREE"],
     ["f owns 1; PyLong_FromLong: DECREF the result when done", "f owns 2; a new reference "
      "made with Py_INCREF: the caller owns it", "f owns 1; releases one owned reference",
      "f owns 0; releases the last reference: the object is freed here",
      "the interpreter freed the object's memory"]),
    (["BORROW g:1 PyTuple_GetItem", "DECREF g:2 2"],
     ["g borrows; PyTuple_GetItem: do not DECREF; INCREF it if you keep it past a call "
      "that may run Python code", "g owned no reference to release; releases one owned "
      "reference"]),
])
def test_ledger_notes(specs, notes):
    assert [n for _, n in verdict.ledger(events(*specs))] == notes
