"""CPython's own evidence: what its checks say when they abort — a fatal error's function
and message (`Py_FatalError` and friends), `_PyObject_AssertFailed`'s object, expression
and message (debug builds: "gc_decref: refcount is too small", "_Py_NegativeRefcount:
object has negative ref count") — read from the crashed thread's frames
(inferior/diagnose.py reads them; no gdb here), and what they mean for the verdict.

CPython's word is harm enough: where it says "refcount", the verdict is never
`not-a-refcount-bug`.
- "refcount is too small" (the collector found more pointers to the object than its
  count): a holder without a reference. The culprit is the last STEAL by traced code
  (the reference went to the callee, the pointer stayed), else the last BORROW (a borrowed
  pointer stored without an INCREF).
- A negative count, or a singleton deallocated (`none_dealloc`: "deallocating None"): a
  release too many. For a singleton, the likely sites are the DECREFs of it by functions
  that never INCREF'd it; a `return Py_None;` without an INCREF leaves no record, and the
  verdict says so.
"""
from dataclasses import dataclass

from pyref.rules import handout
from pyref.rules.events import ACQUIRE, RELEASE, current_lifetime

# Functions whose arguments carry CPython's words, and which argument is which.
ASSERT_FAILED = "_PyObject_AssertFailed"      # (obj, expr, msg, file, line, function)
FATAL = ("_Py_FatalErrorFunc", "_Py_FatalErrorFormat", "fatal_error")   # (func, msg)
NEGATIVE = "_Py_NegativeRefcount"             # (filename, lineno, op)


@dataclass
class Evidence:
    """What CPython said: `kind` 'refcount-too-small', 'negative-refcount',
    'singleton-dealloc' or 'refcount' (another refcount assertion); `text` its words;
    `obj` the object it named (None when it named none); `where` its C function."""
    kind: str
    text: str
    obj: int = None
    where: str = ""


def classify(func, args):
    """Evidence from one frame: `func` the frame's function, `args` {name: value} of its
    arguments (strings already read, pointers as ints). None when the frame says nothing
    about references."""
    if func == ASSERT_FAILED:
        msg = args.get("msg") or ""
        expr = args.get("expr") or ""
        where = args.get("function") or ""
        text = "%s: %s%s" % (where or func, "Assertion \"%s\" failed: " % expr if expr
                             else "", msg)
        obj = args.get("obj") or None
        low = (msg + " " + expr).lower()
        if "refcount is too small" in low or "gc_get_refs" in low:
            return Evidence("refcount-too-small", text, obj, where)
        if "negative ref" in low or where == NEGATIVE:
            return Evidence("negative-refcount", text, obj, where)
        if "refcount" in low or "ref count" in low or "ob_refcnt" in low:
            return Evidence("refcount", text, obj, where)
        return None
    if func in FATAL:
        where = args.get("func") or ""
        msg = args.get("msg") or args.get("format") or ""
        text = "%s: %s" % (where, msg) if where else msg
        low = msg.lower()
        if where in ("none_dealloc", "notimplemented_dealloc") or \
                low.startswith("deallocating none") or "deallocating true" in low or \
                "deallocating false" in low:
            return Evidence("singleton-dealloc", text, None, where)
        if "refcount is too small" in low:
            return Evidence("refcount-too-small", text, None, where)
        if "negative ref" in low:
            return Evidence("negative-refcount", text, None, where)
        return None
    if func == NEGATIVE:
        return Evidence("negative-refcount", "%s: object has negative ref count" % func,
                        args.get("op") or None, func)
    return None


def strongest(found):
    """The one Evidence a verdict rests on, from the frames' (innermost first): one that
    names its object first, then by kind."""
    order = ("refcount-too-small", "negative-refcount", "singleton-dealloc", "refcount")
    found = [e for e in found if e is not None]
    if not found:
        return None
    return sorted(found, key=lambda e: (e.obj is None, order.index(e.kind)))[0]


def apply(v, events, ev, singleton, source=None):
    """Fills the verdict `v` from CPython's Evidence `ev` about this object and its Events.
    True when it did (the verdict is decided), False when the evidence says nothing the
    ring can use."""
    life = current_lifetime(events)
    traced = [e for e in life if e.file is not None]
    v.harm = "CPython: " + ev.text
    if ev.kind == "refcount-too-small":
        steals = [e for e in traced if e.op == "STEAL"]
        borrows = [e for e in traced if e.op == "BORROW"]
        v.kind = "premature-free"
        pick = steals[-1] if steals else borrows[-1] if borrows else None
        if pick is None:
            v.summary = ("CPython found more pointers to the object than references "
                         "(%s); no steal or borrow of it by traced code is recorded" % ev.text)
            v.missing.append("the reference given away or never taken is not in the ring "
                             "(untraced code, an unwrapped call, or the ring wrapped)")
            return True
        v.culprit = v.origin = pick
        if pick.op == "STEAL":
            v.why = ("a holder without a reference: the reference was %s and the pointer "
                     "kept — INCREF it before the call (or use the call's non-stealing "
                     "form, such as PyModule_AddObjectRef) for the holder that stays" %
                     pick.how())
        else:
            v.why = ("a holder without a reference: the pointer was %s and stored without "
                     "an INCREF — take a reference (Py_NewRef) where it is stored" %
                     pick.how())
        v.summary = "%s (%s): %s at %s: %s" % (
            "CPython found more pointers to the object than references", ev.text,
            pick.op, pick.where(), v.why)
        return True
    if ev.kind in ("negative-refcount", "singleton-dealloc"):
        from pyref.rules.verdict import over_release, unowned_release
        v.kind = "double-release"
        found = unowned_release(life, singleton)
        culprit = found[0] if found else over_release(life)
        if culprit is not None:
            v.culprit = culprit
            v.origin = found[1] if found else None
            v.why = found[3] if found else ("released a reference more than traced code "
                                            "acquired")
            v.summary = "%s (%s): %s at %s %s" % (
                "a release too many", ev.text, culprit.op, culprit.where(), v.why)
            return True
        name = singleton or "the object"
        releases = [e for e in traced if e.op in RELEASE]
        acquired = [e for e in traced if e.op in ACQUIRE]
        v.summary = ("a release too many (%s): %s has had more releases than references. "
                     "%s" % (ev.text, name, "Traced code released it %d time%s and "
                             "acquired it %d; " % (len(releases), "" if len(releases) == 1
                                                   else "s", len(acquired))
                             if traced else "No traced record of it; "))
        rets = handout.find_singleton_returns(source, singleton) if singleton else []
        if rets:
            v.culprit = rets[0]
            v.why = ("returns %s without an INCREF: %s is called by CPython, which takes "
                     "what it returns as a new reference and releases it, so each call "
                     "takes one of %s's references (Py_RETURN_%s)" % (
                         "Py_" + singleton, rets[0].func, singleton, singleton.upper()))
            v.summary += "RETURN at %s %s" % (rets[0].where(), v.why)
            if len(rets) > 1:
                v.summary += "; the same return without an INCREF at %s" % ", ".join(
                    e.where() for e in rets[1:])
            v.missing.append("the return leaves no record: it was found in the source")
            return True
        if singleton:
            v.summary += ("the usual cause is a C function that returns %s without an "
                          "INCREF (`return %s;` instead of Py_RETURN_%s): such a return "
                          "leaves no record" % (singleton, "Py_" + singleton,
                                                singleton.upper()))
        else:
            v.summary += "the release that went too far is not in the ring"
        v.missing.append("the release or the borrowed return that took the count below "
                         "its references is not in the ring")
        return True
    if ev.kind == "refcount":
        v.kind = "unknown"
        v.summary = ("CPython's refcount check failed (%s); the ring does not show which "
                     "reference was lost" % ev.text)
        v.missing.append("which reference was wrongly released or taken")
        return True
    return False
