"""The Python line beside a ring record's C site, in GDB: the PYCTX record in force for it
(reader/pycontext.py) read as file.py:line through the interpreter's DWARF layouts
(inferior/pythreads.py code_line). Only rings written with PYREF_PYCONTEXT=1 have them;
for the others, HINT says how to get them. Cached per stop."""
from pyref.inferior import pythreads, target
from pyref.reader import pycontext

HINT = "Python lines not recorded: run the program with PYREF_PYCONTEXT=1 to see them"


def recorded(ringset):
    """True when a ring of the set records Python context."""
    return any(pycontext.recorded(r) for r in ringset.rings)


def hint(ringset):
    """HINT when no ring of the set records Python context (and one exists), else None."""
    return HINT if ringset.rings and not recorded(ringset) else None


def _contexts(ring):
    cache = target.stop_cache()
    key = ("pycontext", ring.addr)
    if key not in cache:
        cache[key] = pycontext.Contexts(ring)
    return cache[key]


def python_line(ringset, rec):
    """The pythreads.PyFrame of the Python code that was running when `rec` (a record of
    ringset) was written, or None (not recorded, no Python frame, code object gone)."""
    ring = ringset.ring_of(rec)
    if not pycontext.recorded(ring):
        return None
    ctx = _contexts(ring).of(rec)
    if ctx is None or not ctx[0]:
        return None
    key = ("pycontext.line", ctx)
    cache = target.stop_cache()
    if key not in cache:
        cache[key] = pythreads.code_line(*ctx)
    return cache[key]


def lines_by_seq(ringset, records):
    """{seq: PyFrame or None} of `records`: what a report keyed by sequence numbers (pyref
    why's ledger) looks its Python lines up in."""
    return {r.seq: python_line(ringset, r) for r in records}
