"""Damaged evidence on bytes: the plausibility checks of reader/decode.py (seq above the
header's counter or out of order in its thread's window, a head no counter allows,
descriptors aliasing one ring) and the Caveats of reader/evidence.py that every answer
carries (what is missing, the words "no leaks in the N records that could be read; M could
not", a verdict made unknown with what the intact records say). Synthetic rings from
tests/ringimage.py; no gdb."""
import random
import struct

import pytest

from ringimage import Writer, invariant

from pyref.reader import evidence, text
from pyref.reader.evidence import Caveats
from pyref.reader.ringformat import DECREF, INCREF, NEW


def _ring(n=6, capacity=16, objs=None):
    w = Writer(capacity=capacity)
    w.register(0)
    for k in range(n):
        w.record(0, (objs or [0x100 + 16 * k for k in range(n)])[k])
    return w


def _seq_slot(w, i, pos):
    return w.slot_off(i, pos) + 24


def test_clean_ring_is_complete():
    ring = invariant(_ring().decode())
    cv = Caveats.of_rings([ring])
    assert not cv and not cv.damaged and cv.to_json()["complete"]
    assert cv.none_found("leaks", ring.decoded) == "no leaks (6 records examined)"
    assert cv.for_object(0x100) is None


def test_seq_above_header_counter_rejected():
    """One flipped bit (seq + 2^30) in mid-window: rejected, counted and named, never
    sorted last as the newest record."""
    w = _ring()
    off = _seq_slot(w, 0, 2)
    s, = struct.unpack_from("<I", w.ring_buf(0), off)
    struct.pack_into("<I", w.ring_buf(0), off, s + (1 << 30))
    ring = invariant(w.decode())
    assert ring.rejected == 1 and ring.decoded == 5
    assert ring.rejections == {"seq above the header's counter": 1}
    assert all(r.seq < w.seq for r in ring.records)
    cv = Caveats.of_rings([ring])
    assert cv.damaged and "1 record rejected as implausible" in cv.reason()
    assert cv.for_object(0x120) is not None           # the rejected slot names its object
    assert cv.for_object(0x130) is None


def test_seq_out_of_order_rejected():
    w = _ring(n=8)
    struct.pack_into("<I", w.ring_buf(0), _seq_slot(w, 0, 4), 1)   # seq 4 -> 1
    ring = invariant(w.decode())
    assert ring.rejections == {"seq out of order in its thread's window": 1}
    assert [r.pos for r in ring.records] == [0, 1, 2, 3, 5, 6, 7]


def test_head_beyond_counter_rejected():
    w = _ring()
    w.threads[0]["head"] = (1 << 64) - 1
    w.flush()
    ring = invariant(w.decode())
    assert ring.written == 0 and ring.rejected_descriptors
    assert "head 18446744073709551615" in ring.rejected_descriptors[0]
    cv = Caveats.of_rings([ring])
    assert cv.damaged and "its records were not read" in cv.reason()


def test_aliased_descriptors_read_once():
    """Every descriptor pointing at thread 0's ring: decoded once, the others rejected
    (they would multiply every record and double a leak count)."""
    w = Writer(capacity=8, max_threads=16)
    w.register(0)
    for n in range(5):
        w.record(0, 0x100 + 16 * n)
    for i in range(1, 16):
        w.threads[i] = dict(w.threads[0])
    w.flush()
    ring = invariant(w.decode())
    assert ring.decoded == 5 and len(ring.records) == 5
    assert len(ring.rejected_descriptors) == 15
    assert ring.rejections == {"descriptor aliasing another's ring": 15}


def test_torn_mid_window_names_its_object():
    """A torn record (commit 0) in mid-window: its object's history is incomplete, and the
    answers say so (it could have cancelled a leak or changed a verdict)."""
    w = _ring(n=6)
    w.set_commit(0, 3, 0)
    ring = invariant(w.decode())
    assert ring.torn == 1
    cv = Caveats.of_rings([ring])
    assert cv.damaged and cv.missing == 1
    assert "torn" in cv.for_object(0x130)
    assert cv.for_object(0x100) is None
    assert cv.none_found("leaks", ring.decoded).startswith(
        "no leaks in the 5 records that could be read; 1 could not (1 torn record")


def test_oldest_torn_by_busy_writer_is_no_damage():
    """A busy writer overwriting the oldest slot of its full window: that old record was
    going anyway; a note, not damage."""
    w = _ring(n=10, capacity=8)
    w.threads[0]["busy"] = 1
    w.set_commit(0, 10, 0)                     # slot of position 2, the oldest
    w.flush()
    ring = invariant(w.decode())
    assert ring.torn == 1 and ring.torn_oldest == 1
    cv = Caveats.of_rings([ring])
    assert cv and not cv.damaged


def test_unreadable_ring_and_lost_records():
    w = _ring(n=4)
    del w.mem.regions[w.threads[0]["ring"]]
    w.threads[0]["lost"] = 600
    w.flush()
    ring = invariant(w.decode())
    cv = Caveats.of_rings([ring])
    kinds = [c["kind"] for c in cv.to_json()["caveats"]]
    assert kinds == ["unreadable", "lost"]
    assert cv.missing == 604
    assert cv.none_found("leaks", 0) .startswith(
        "no leaks in the 0 records that could be read; 604 could not")
    assert cv.for_object(0x12345) is not None   # anyone's records may be among them


def test_thread_table_cut():
    w = Writer(capacity=8, max_threads=128)
    w.register(0)
    w.record(0, 0x100)
    del w.mem.regions[w.addr]
    w.mem.map(w.addr, 4096)[:] = w.hdr[:4096]        # the table's tail is gone
    ring = invariant(w.decode())
    cv = Caveats.of_rings([ring])
    assert any("thread descriptors" in c.text for c in cv.items) and cv.damaged


def test_truncated_core_makes_any_verdict_unknown():
    cv = Caveats.of_rings([], truncation="the core file is truncated: 10 of 100 bytes")
    rep = {"verdict": "double-release", "summary": "released twice", "missing": []}
    evidence.apply_to_verdict(rep, cv, 0x100)
    assert rep["verdict"] == "unknown" and rep["verdict_if_complete"] == "double-release"
    assert "truncated" in rep["summary"] and "released twice" in rep["summary"]
    assert rep["caveats"]["truncated"] and not rep["caveats"]["complete"]
    rep = {"verdict": "not-a-refcount-bug", "summary": "", "missing": []}
    assert evidence.apply_to_verdict(rep, cv, None)["verdict"] == "unknown"


def test_intact_verdict_kept():
    ring = invariant(_ring().decode())
    rep = {"verdict": "double-release", "summary": "x", "missing": []}
    evidence.apply_to_verdict(rep, Caveats.of_rings([ring]), 0x100)
    assert rep["verdict"] == "double-release" and rep["caveats"]["complete"]


def test_unreadable_sites_counted():
    cv = Caveats()
    for a in (0x10, 0x20, 0x10):
        cv.site_unreadable(a)
    assert cv.lines() == ["caveat: 2 sites of records unreadable (their file:line unknown; "
                          "such records are not counted as traced code)"]


# Record fields no check can judge (any value is plausible): docs/reliability.md. A flip in
# the commit word's op can give another plausible op (INCREF -> INCREF|SHARED); one in a
# seq's low bits can keep the thread's order; the header's counter above bit 31 shifts
# every restored seq alike; a descriptor's head flipped down hides its newest records.
UNJUDGED = {"obj", "site", "refcnt", "tid", "op", "seq-low", "hdr-seq", "desc-head"}
_REC_FIELDS = ((0, "obj"), (8, "site"), (16, "refcnt"), (24, "seq"), (28, "op"),
               (29, "delta"), (30, "tid"))


def _flip(w, rnd):
    """Flips one random bit of the records or the header; returns the field's name."""
    if rnd.random() < 0.5:
        off = rnd.randrange(12 * 32)
        field = [n for o, n in _REC_FIELDS if o <= off % 32][-1]
        buf = w.ring_buf(0)
        if field == "seq":
            bit = rnd.randrange(8)
            field = "seq-low" if off % 32 == 24 else "seq"
            buf[off] ^= 1 << bit
            return field
    else:
        off = rnd.randrange(256 + 64)
        buf = w.hdr
        field = "hdr-seq" if off // 8 * 8 == 128 else "desc-head" if off // 8 == 33 else \
            "hdr" if off < 256 else "desc"
    buf[off] ^= 1 << rnd.randrange(8)
    return field


@pytest.mark.parametrize("seed", range(300))
def test_seeded_bit_flips_never_silent(seed):
    """One flipped bit anywhere in the records or the header (seeded): the header is
    refused (RingError), or the decode is unchanged, or the damage is caught (a caveat
    or a ring error), or the flip is in a field no check can judge (UNJUDGED)."""
    from pyref.errors import RingError
    rnd = random.Random(seed)
    w = Writer(capacity=16)
    w.register(0)
    for k in range(12):
        w.record(0, 0x100 + 16 * (k % 4), op=(NEW, INCREF, DECREF)[k % 3], refcnt=2)
    clean = [tuple(r) for r in w.decode().records]
    field = _flip(w, rnd)
    try:
        ring = invariant(w.decode())
    except RingError:
        assert field in ("hdr", "hdr-seq", "desc", "desc-head"), field
        return
    if [tuple(r) for r in ring.records] == clean:
        return
    caught = Caveats.of_rings([ring]).damaged or ring.errors
    assert caught or field in UNJUDGED, (field, ring.counters)


def test_escape_control_characters():
    assert text.escape("a\x1b[2Jb\tc\n\x9b\u202e") == "a\\x1b[2Jb\tc\n\\x9b\\u202e"
    assert text.escape_line("x\ny") == "x\\ny"


def test_racing_writers_seqs_not_rejected():
    """Two writers racing on the relaxed counter without the GIL: one thread's seqs go
    back (docs/reliability.md, Limits). Nothing is rejected for that."""
    w = Writer(capacity=16)
    w.register(0)
    w.register(1)
    for s in (10, 11, 3, 4, 12):
        w.put(0, w.threads[0]["head"], 0x100, 0x5000, 1, s, INCREF, 1, w.threads[0]["serial"])
        w.threads[0]["head"] += 1
    for s in (5, 6):
        w.put(1, w.threads[1]["head"], 0x200, 0x5000, 1, s, INCREF, 1, w.threads[1]["serial"])
        w.threads[1]["head"] += 1
    w.seq = 13
    w.flush()
    ring = invariant(w.decode())
    assert (ring.rejected, ring.decoded) == (0, 7)


@pytest.mark.parametrize("e,op", [
    ("(((PyObject*)x)->ob_refcnt = 77, x)", "="), ("x += 1", "+="), ("p++", "++"),
    ("--n", "--"), ("a <<= 2", "<<="), ("*p = 0", "="),
    ("x == 1 ? a : b", None), ("a <= b", None), ("a != b", None), ("op", None),
    ('strcmp(s, "a=b")', None), ("'='", None), ("(PyObject *)$rdi", None), ("x - -1", None),
])
def test_expressions_that_write_refused(e, op):
    from pyref.reader import expr
    assert expr.side_effect(e) == op
    assert (expr.refuse_side_effects(e) is None) == (op is None)
