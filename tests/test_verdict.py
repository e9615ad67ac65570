"""verdict.analyze on hand-written events, without gdb."""
import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref import decode, verdict
from pyref.rules.events import Event


def ev(op, file=None, line=0, func=None, api=None, before=1, after=1):
    site = decode.Site(0, file, line, func, api) if file else None
    return Event(seq=0, op=op, before=before, after=after, site=site)


def test_dealloc_then_free_keeps_the_origin():
    """A traced owner's DEALLOC is followed by the allocator hook's FREE: the lifetime ends
    at the DEALLOC, so a use after it names the borrow and the line that freed it (before,
    the FREE made a lifetime of its own and the report said 'freed inside CPython')."""
    events = [ev("NEW", "g.c", 1, "g"), ev("BORROW", "a.c", 10, "f", "PyList_GetItem"),
              ev("DEALLOC", "g.c", 6, "g", before=1, after=0), ev("FREE")]
    use = Event(seq=-1, op="USE", before=0, after=0,
                site=decode.Site(0, "a.c", 12, "f", "crash"))
    for evs in (events, events[:-1]):
        v = verdict.analyze(evs, state="freed", use_site=use)
        assert v.kind == "use-after-free", v
        assert v.summary == ("a.c:12 (f) used the object after it was freed (g.c:6 (g)); the "
                             "pointer was borrowed from PyList_GetItem at a.c:10 (f)")
        assert v.origin is evs[1] and v.freed_at is evs[2]
