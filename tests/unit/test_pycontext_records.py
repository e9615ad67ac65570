"""reader/pycontext.py on synthetic rings (tests/ringimage.py): the PYCTX record in force
for each record is the last one of its thread at or before it, attached to it or to an
earlier record, or unattached after its record was overwritten; none before the first
PYCTX, none on another thread's account."""
from pyref.reader import pycontext
from pyref.reader.ringformat import INCREF, DECREF
from ringimage import Writer, invariant

CODE_A, CODE_B = 0x7000, 0x8000


def test_context_in_force_per_thread():
    w = Writer(capacity=16)
    w.register(0)
    w.register(1)
    w.record(0, 0xA0)                                # before any PYCTX: none
    w.record(0, 0xA0, op=INCREF, refcnt=2)
    w.aux(0, CODE_A, kind=pycontext.AUX_PYCTX, value=10)   # for the record above, and on
    w.record(0, 0xA0, op=DECREF, refcnt=3)
    w.record(1, 0xB0)                                # thread 1: no PYCTX of its own
    w.record(0, 0xA0, op=INCREF, refcnt=2)
    w.aux(0, CODE_B, kind=pycontext.AUX_PYCTX, value=24)
    w.aux(0, 0xC0, kind=1, value=0)                  # another AUX kind: not a context
    w.record(0, 0xA0, op=DECREF, refcnt=3)
    w.record(0, 0xA0)
    w.aux(0, 0, kind=pycontext.AUX_PYCTX, value=-1)  # the thread left Python
    ring = invariant(w.decode())
    ctx = pycontext.Contexts(ring)
    assert len(ctx) == 3
    got = [(r.thread, r.op_name, ctx.of(r)) for r in ring.records]
    assert got == [(0, "INCREF", None), (0, "INCREF", (CODE_A, 10)), (0, "DECREF", (CODE_A, 10)),
                   (1, "INCREF", None), (0, "INCREF", (CODE_B, 24)),
                   (0, "DECREF", (CODE_B, 24)), (0, "INCREF", (0, -1))]


def test_unattached_context_after_the_ring_wrapped():
    """A PYCTX whose record was overwritten still gives the context of the records after
    it."""
    w = Writer(capacity=4)
    w.register(0)
    w.record(0, 0xA0)
    w.aux(0, CODE_A, kind=pycontext.AUX_PYCTX, value=6)
    for _ in range(3):                                  # the INCREF above is overwritten
        w.record(0, 0xA0, op=INCREF, refcnt=2)
    ring = invariant(w.decode())
    assert ring.overwritten == 1
    assert [r.op_name for r in ring.records] == ["AUX", "INCREF", "INCREF", "INCREF"]
    ctx = pycontext.Contexts(ring)
    assert [ctx.of(r) for r in ring.records[1:]] == [(CODE_A, 6)] * 3


def test_recorded_by_the_header_bit():
    w = Writer()
    w.register(0)
    w.record(0, 0xA0)
    assert not pycontext.recorded(w.decode())
    w.hdr[96:100] = (pycontext.HOOK_PYCTX | 1).to_bytes(4, "little")
    assert pycontext.recorded(w.decode())
