"""The reference-count macros and the singletons of CPython's C API, for `pyref explain`:
what each does with references, the caller's rule, and how that differs between Python
versions (3.12 made None, True, False, NotImplemented, Ellipsis and the small ints immortal,
PEP 683, so the same missing INCREF crashes on 3.11 and is silent on 3.12+).

refcounts.dat, which rules/capi.py is generated from, lists some of these with "no
reference changes hands" (it describes arguments, not what a macro does to them), and
the singletons not at all: these entries take precedence over it.

Pure data: no gdb. `get(name)` returns a `Macro`:
  kind      "macro", "function" (an exported function doing what a macro does) or
            "singleton" (a macro naming a statically allocated object)
  form      how it is written: "Py_CLEAR(op)"
  expands   what the headers make of it, per version where they differ
  rule      the caller's rule, one line
  versions  ((versions, what is different there), ...)
  recorded  what pyref's shim writes for it
  see       related names
"""
import collections

Macro = collections.namedtuple("Macro", "name kind form expands rule versions recorded see")

IMMORTAL = "3.12+"   # the versions whose singletons are immortal (PEP 683)
MORTAL = "<=3.11"

_SINGLETON_RULE = ("a borrowed reference to the %s singleton: Py_INCREF it (%s) before you "
                   "return it or store it where a reference is owned; never Py_DECREF a "
                   "reference you did not take")
_SINGLETON_MORTAL = ("%s is an ordinary object: a `return %s;` without Py_INCREF takes one "
                     "reference from it each time it runs, until its count reaches 0 and "
                     "the interpreter aborts%s")
_SINGLETON_IMMORTAL = ("%s is immortal: Py_INCREF and Py_DECREF leave its count alone, so a "
                       "missing INCREF is harmless on 3.12+, and the same code crashes on "
                       "3.11 and earlier")


def _singleton(name, what, returner=None, crash=""):
    how = "Py_NewRef(%s)" % name + (", " + returner if returner else "")
    return Macro(name, "singleton", name, "the address of the statically allocated %s object"
                 % what, _SINGLETON_RULE % (what, how),
                 ((MORTAL, _SINGLETON_MORTAL % (what, name, crash)),
                  (IMMORTAL, _SINGLETON_IMMORTAL % what)),
                 "nothing by itself: the Py_INCREF/Py_DECREF of it are recorded",
                 ((returner,) if returner else ()) + ("Py_NewRef",))


def _returner(name, what, singleton):
    return Macro(
        name, "macro", name,
        "return Py_NewRef(%s) (<=3.11); return %s (3.12+: %s is immortal)"
        % (singleton, singleton, what),
        "returns a new reference to %s, as a function returning PyObject * must: `return "
        "%s;` without Py_INCREF is the classic over-release" % (what, singleton),
        ((MORTAL, "each return takes a reference to %s that the caller will release: "
                  "without this macro's INCREF the count drops by one per call" % what),
         (IMMORTAL, "%s is immortal: the macro no longer INCREFs, and a bare `return %s;` "
                    "is harmless on 3.12+ but crashes on 3.11 and earlier"
                    % (what, singleton))),
        "INCREF at your line through Py_NewRef (<=3.11); nothing on 3.12+", (singleton,))


_MACROS = [
    Macro("Py_INCREF", "macro", "Py_INCREF(op)", "op->ob_refcnt++ (an inline function)",
          "takes a new reference: you own it and must release it (Py_DECREF) when done",
          ((IMMORTAL, "does nothing to an immortal object (None, True, False, the small "
                      "ints, statically allocated strings)"),),
          "INCREF", ("Py_NewRef", "Py_XINCREF", "Py_DECREF")),
    Macro("Py_XINCREF", "macro", "Py_XINCREF(op)", "if (op != NULL) Py_INCREF(op)",
          "as Py_INCREF, and does nothing for NULL", (), "INCREF", ("Py_INCREF",)),
    Macro("Py_DECREF", "macro", "Py_DECREF(op)",
          "if (--op->ob_refcnt == 0) _Py_Dealloc(op) (an inline function)",
          "releases one reference you own; never one you borrowed or gave away (stolen); the "
          "object may be freed here and must not be used after",
          ((MORTAL, "a DECREF of a singleton you did not INCREF (None, True) drives its "
                    "count to 0 and aborts the interpreter"),
           (IMMORTAL, "does nothing to an immortal object: the same over-release is silent "
                      "on 3.12+ and crashes on 3.11 (pyref's verdict names it on both: the "
                      "shim records the DECREF)")),
          "DECREF, or DEALLOC when it releases the last reference",
          ("Py_XDECREF", "Py_CLEAR", "Py_SETREF")),
    Macro("Py_XDECREF", "macro", "Py_XDECREF(op)", "if (op != NULL) Py_DECREF(op)",
          "as Py_DECREF, and does nothing for NULL", (), "DECREF or DEALLOC",
          ("Py_DECREF", "Py_CLEAR")),
    Macro("Py_NewRef", "macro", "Py_NewRef(op)", "Py_INCREF(op), then op (3.10+)",
          "Py_INCREF, then returns the object: you own the result", (), "INCREF",
          ("Py_INCREF", "Py_XNewRef")),
    Macro("Py_XNewRef", "macro", "Py_XNewRef(op)", "Py_XINCREF(op), then op (3.10+)",
          "as Py_NewRef, and returns NULL for NULL", (), "INCREF", ("Py_NewRef",)),
    Macro("Py_IncRef", "function", "Py_IncRef(op)", "Py_XINCREF(op), as an exported "
          "function (for the stable ABI and other languages)",
          "as Py_XINCREF: you own the new reference", (),
          "nothing: a call into the interpreter, not a macro the shim sees",
          ("Py_XINCREF",)),
    Macro("Py_DecRef", "function", "Py_DecRef(op)", "Py_XDECREF(op), as an exported "
          "function (for the stable ABI and other languages)",
          "as Py_XDECREF: releases a reference you own", (),
          "nothing: a call into the interpreter, not a macro the shim sees",
          ("Py_XDECREF",)),
    Macro("Py_CLEAR", "macro", "Py_CLEAR(op)",
          "tmp = op; if (tmp != NULL) { op = NULL; Py_DECREF(tmp); }",
          "releases the reference the variable owns and sets it to NULL first, so that code "
          "the release runs (a __del__, a weakref callback) sees NULL, not a dangling "
          "pointer; the variable must own its reference", (),
          "DECREF or DEALLOC at your line (through Py_DECREF)", ("Py_XDECREF", "Py_SETREF")),
    Macro("Py_SETREF", "macro", "Py_SETREF(dst, src)",
          "tmp = dst; dst = src; Py_DECREF(tmp) (not in the limited API)",
          "stores SRC, a reference you own that DST then owns, and releases DST's old value "
          "after the store (so code the release runs sees the new value); DST must own a "
          "reference and must not be NULL (Py_XSETREF when it may be)", (),
          "DECREF or DEALLOC of the old value at your line", ("Py_XSETREF", "Py_CLEAR")),
    Macro("Py_XSETREF", "macro", "Py_XSETREF(dst, src)",
          "tmp = dst; dst = src; Py_XDECREF(tmp) (not in the limited API)",
          "as Py_SETREF, and the old value may be NULL", (),
          "DECREF or DEALLOC of the old value at your line", ("Py_SETREF",)),
    _returner("Py_RETURN_NONE", "None", "Py_None"),
    _returner("Py_RETURN_TRUE", "True", "Py_True"),
    _returner("Py_RETURN_FALSE", "False", "Py_False"),
    _returner("Py_RETURN_NOTIMPLEMENTED", "NotImplemented", "Py_NotImplemented"),
    Macro("Py_RETURN_RICHCOMPARE", "macro", "Py_RETURN_RICHCOMPARE(a, b, op)",
          "compares a and b with the rich comparison op, then Py_RETURN_TRUE or "
          "Py_RETURN_FALSE",
          "returns a new reference to True or False, as a tp_richcompare must", (),
          "as Py_RETURN_TRUE / Py_RETURN_FALSE", ("Py_RETURN_TRUE", "Py_RETURN_FALSE")),
    _singleton("Py_None", "None", "Py_RETURN_NONE", crash=' ("deallocating None")'),
    _singleton("Py_True", "True", "Py_RETURN_TRUE"),
    _singleton("Py_False", "False", "Py_RETURN_FALSE"),
    _singleton("Py_NotImplemented", "NotImplemented", "Py_RETURN_NOTIMPLEMENTED"),
    _singleton("Py_Ellipsis", "Ellipsis"),
]
_TABLE = {m.name: m for m in _MACROS}


def get(name):
    """The Macro named `name`, or None."""
    return _TABLE.get(name)


def names():
    """Every name this module describes, sorted."""
    return sorted(_TABLE)
