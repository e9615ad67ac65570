"""Tests of the ring decoder (gdbext/pyref/reader/decode.py) on ring images built with
`struct`, exactly as the format spec (docs/ring-format.md) lays them
out: tests/ringimage.py's writer follows the spec's write protocol into a synthetic address
space, and the decoder reads it back through a `read` callable, as it reads a live process
or a core. No gdb, no C."""
import random
import struct

import pytest

import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.reader import decode, plausibility
from pyref.reader.decode import build_index, decode_ring
from pyref.reader.ringformat import (AUX, BORROW, DEALLOC, DECREF, FREE, IMMORTAL, INCREF,
                                     NEW, SHARED, STEAL, restore_seq)
from pyref.rules.events import lifetimes
from ringimage import PAGE, Writer, invariant


# ---------------------------------------------------------------------------------------
# Windows, wrap-around, counters
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fill", [0, 4, 8, 9, 8000])
def test_wrap_around(fill):
    cap = 8
    w = Writer(capacity=cap)
    w.register(0)
    for n in range(fill):
        w.record(0, 0x1000 + 16 * n, refcnt=n + 1)
    ring = invariant(w.decode())
    assert ring.written == fill
    assert ring.overwritten == max(0, fill - cap)
    assert ring.decoded == min(fill, cap)
    assert (ring.torn, ring.unreadable, ring.lost, ring.in_flight) == (0, 0, 0, 0)
    want = list(range(max(0, fill - cap), fill))
    assert [r.pos for r in ring.records] == want
    assert [r.seq for r in ring.records] == want
    assert [r.obj for r in ring.records] == [0x1000 + 16 * n for n in want]
    assert [r.refcnt for r in ring.records] == [n + 1 for n in want]
    assert all(r.after == r.refcnt + 1 and r.op_name == "INCREF" for r in ring.records)
    assert ring.threads_seen == (1 if fill else 0)
    if fill:
        assert (ring.first_seq, ring.last_seq) == (want[0], want[-1])
        assert ring.errors == []
    else:
        assert ring.first_seq is None and ring.last_seq is None
        assert any("no thread has recorded" in e for e in ring.errors)


def test_record_fields():
    w = Writer()
    w.register(0)
    w.register(1)
    w.record(1, 0xAAA0, op=INCREF | SHARED, refcnt=3, site=0x4440)
    w.record(1, 0xAAA0, op=DECREF | IMMORTAL, refcnt=0xFFFFFFFF)
    w.record(1, 0xAAA0, op=DEALLOC, refcnt=1)
    r = w.decode().records
    assert [x.op_name for x in r] == ["INCREF", "DECREF", "DEALLOC"]
    a, b, c = r
    assert (a.obj, a.site, a.refcnt, a.after, a.delta, a.op, a.flags) == \
        (0xAAA0, 0x4440, 3, 4, 1, INCREF, SHARED)
    assert a.shared and not a.immortal
    assert (b.delta, b.after, b.immortal, b.flags) == (0, 0xFFFFFFFF, True, IMMORTAL)
    assert (c.refcnt, c.after, c.delta) == (1, 0, -1)
    assert all(x.tid == 2 and x.thread == 1 and x.aux == () for x in r)
    assert [x.seq32 for x in r] == [0, 1, 2]


def test_torn_and_corrupt_counted_as_torn():
    w = Writer(capacity=8)
    w.register(0)
    for n in range(8):
        w.record(0, 0x100 + n)
    w.set_commit(0, 2, 0)                                   # torn
    w.put(0, 3, 0x103, 0, 1, 3, 0, 0, 1)                    # op 0, seq nonzero: corrupt
    w.put(0, 4, 0x104, 0, 5, 4, DEALLOC, -1, 1)             # DEALLOC of refcnt 5
    w.put(0, 5, 0x105, 0, 5, 5, INCREF, 7, 1)               # INCREF by 7
    w.put(0, 6, 0, 0, 5, 6, DECREF, -1, 1)                  # DECREF of NULL
    ring = invariant(w.decode())
    assert (ring.decoded, ring.torn) == (3, 5)
    assert [r.pos for r in ring.records] == [0, 1, 7]
    assert ring.records_for(0x104) == []


def test_unknown_op_decodes():
    w = Writer()
    w.register(0)
    w.record(0, 0x100, op=20, delta=3)
    w.record(0, 0x100, op=63 | SHARED, delta=-9)
    ring = invariant(w.decode())
    assert [r.op_name for r in ring.records] == ["op 20", "op 63"]
    assert (ring.decoded, ring.torn) == (2, 0)
    assert ring.records[1].shared and ring.records[1].delta == -9


def test_in_flight_before_full_is_ignored():
    w = Writer(capacity=8)
    w.register(0)
    for n in range(3):
        w.record(0, 0x100 + n)
    w.threads[0]["busy"] = 1
    w.record(0, 0x999, advance=False)                      # committed, head not moved
    ring = invariant(w.decode())
    assert ring.in_flight == 1
    assert [r.obj for r in ring.records] == [0x100, 0x101, 0x102]
    assert ring.written == 3


def full_ring_in_flight():
    """A full ring of 8 whose writer committed a 12th record (0x999) and stopped before
    its head update: the record replaced the oldest one (position 3)."""
    w = Writer(capacity=8)
    w.register(0)
    for n in range(11):
        w.record(0, 0x100 + n)
    w.threads[0]["busy"] = 1
    w.record(0, 0x999, advance=False)
    return w


def test_in_flight_in_full_ring_decodes_last():
    ring = invariant(full_ring_in_flight().decode())
    assert ring.in_flight == 1
    assert [r.pos for r in ring.records] == list(range(4, 12))
    assert ring.records[-1].obj == 0x999 and ring.records[-1].seq == 11
    assert (ring.written, ring.decoded, ring.overwritten) == (11, 8, 3)
    assert ring.last_seq == 11 and ring.first_seq == 4


def test_in_flight_pair_in_full_ring():
    """An origin and its AUX written as one pair (ring.h pyref_record_pair), both committed,
    head not yet moved: the origin decodes last; the AUX, in the slot of the window's oldest
    position, decodes there unattached with its fields intact (decode.py's docstring)."""
    w = Writer(capacity=8)
    w.register(0)
    for n in range(11):
        w.record(0, 0x100 + n)
    w.threads[0]["busy"] = 1
    s = w.record(0, 0x999, op=BORROW, advance=False)      # slot of position 11
    w.put(0, 12, 0x777, 1, 4, s, AUX, 0, w.threads[0]["serial"])  # slot of position 4
    w.flush()
    ring = invariant(w.decode())
    assert ring.in_flight == 1
    assert sorted(r.pos for r in ring.records) == list(range(4, 12))
    # ring order, always: the AUX's slot is the window's oldest position, so it comes first
    aux, last = ring.records[0], ring.records[-1]
    assert (last.obj, last.op_name, last.seq, last.aux) == (0x999, "BORROW", 11, ())
    assert (aux.obj, aux.op_name, aux.refcnt, aux.seq, aux.pos) == (0x777, "AUX", 4, 11, 4)
    assert (ring.written, ring.decoded, ring.overwritten, ring.torn) == (11, 8, 3, 0)


def test_in_flight_pair_with_aux_torn():
    """The pair's origin committed, its AUX between steps 3 and 5: the origin decodes last,
    the AUX's slot (the window's oldest) is torn."""
    w = Writer(capacity=8)
    w.register(0)
    for n in range(11):
        w.record(0, 0x100 + n)
    w.threads[0]["busy"] = 1
    w.record(0, 0x999, op=BORROW, advance=False)
    w.set_commit(0, 12, 0)
    ring = invariant(w.decode())
    assert [r.pos for r in ring.records] == list(range(5, 12))
    assert ring.records[-1].obj == 0x999 and ring.records[-1].aux == ()
    assert (ring.torn, ring.decoded) == (1, 7)                 # position 4's slot


def _pair_images(k, cap=8):
    """Every image a thread stopped inside a pair write (ring.h pyref_record_pair) leaves,
    after k single records: the stores in program order (busy, seq, then per slot commit = 0,
    the three fields in any order, the commit; head; busy = 0). Yields (stores done, ring)."""
    import itertools
    for fo in itertools.permutations(("obj", "site", "refcnt")):  # the same in both slots
        prog = ["B1", "SQ", "C0o"] + ["o_" + f for f in fo] + ["C1o", "C0a"] + \
               ["a_" + f for f in fo] + ["C1a", "H", "B0"]
        for n in range(len(prog) + 1):
            done = set(prog[:n])
            w = Writer(capacity=cap)
            w.register(0)
            for i in range(k):
                w.record(0, 0x100 + i)
            serial = w.threads[0]["serial"]
            seq = w.seq
            new = {"o": dict(obj=0x999, site=0x5555, refcnt=3, op=BORROW, seq=seq),
                   "a": dict(obj=0x777, site=1, refcnt=4, op=AUX, seq=seq)}
            for tag, pos in (("o", k), ("a", k + 1)):
                off = w.slot_off(0, pos)
                buf = w.ring_buf(0)
                obj, site, refcnt, commit = struct.unpack_from("<QQqQ", buf, off)
                vals = dict(obj=obj, site=site, refcnt=refcnt)
                for f in vals:
                    if "%s_%s" % (tag, f) in done:
                        vals[f] = new[tag][f]
                if "C0" + tag in done:
                    commit = 0
                if "C1" + tag in done:
                    commit = new[tag]["seq"] | new[tag]["op"] << 32 | serial << 48
                struct.pack_into("<QQqQ", buf, off, vals["obj"], vals["site"], vals["refcnt"],
                                 commit)
            w.threads[0]["head"] = k + 2 * ("H" in done)
            w.threads[0]["busy"] = int("B1" in done and "B0" not in done)
            w.seq = seq + ("SQ" in done)
            w.flush()
            yield done, invariant(w.decode())


@pytest.mark.parametrize("k", [3, 6, 7, 8, 13, 14])
def test_pair_write_every_prefix(k):
    """A pair write stopped anywhere (not full, one short of full, full, wrapped): at most
    one torn slot; every decoded record has the fields its position was written with,
    except, in a full ring or one short of full with both records committed before head,
    the AUX shown unattached at the oldest position (documented); after head, the new
    window with the AUX attached."""
    cap = 8
    seen = set()
    for done, ring in _pair_images(k, cap):
        assert ring.torn <= 1 and ring.in_flight == int("B1" in done and "B0" not in done)
        for r in ring.records:
            for x in (r,) + r.aux:
                if x.obj == 0x999:
                    assert (x.pos, x.op_name, x.refcnt, x.site) == (k, "BORROW", 3, 0x5555)
                elif x.obj == 0x777:
                    assert (x.op_name, x.refcnt, x.site) == ("AUX", 4, 1)
                    if x not in r.aux:                     # unattached: only before head
                        assert "H" not in done and k + 1 >= cap, (sorted(done), x)
                        seen.add("unattached")
                else:
                    assert x.obj == 0x100 + x.pos and x.op_name == "INCREF", (sorted(done), x)
        if "H" in done:
            last = ring.records[-1]
            assert last.obj == 0x999 and [a.obj for a in last.aux] == [0x777]
            assert [r.pos for r in ring.records] == list(range(max(0, k + 2 - cap), k + 1))
        seen.add(ring.torn)
    assert (1 in seen) == (k + 1 >= cap)         # a slot is torn only when it held a record


def test_in_flight_torn_slot():
    w = Writer(capacity=8)
    w.register(0)
    for n in range(11):
        w.record(0, 0x100 + n)
    w.threads[0]["busy"] = 1
    w.flush()
    w.set_commit(0, 11, 0)                                 # between steps 3 and 5
    ring = invariant(w.decode())
    assert (ring.in_flight, ring.torn, ring.decoded) == (1, 1, 7)
    assert [r.pos for r in ring.records] == list(range(4, 11))


def test_busy_with_old_record_in_place():
    """Writer stopped before step 3: the oldest record is still whole and stays first."""
    w = Writer(capacity=8)
    w.register(0)
    for n in range(11):
        w.record(0, 0x100 + n)
    w.threads[0]["busy"] = 1
    w.flush()
    ring = invariant(w.decode())
    assert [r.pos for r in ring.records] == list(range(3, 11))
    assert ring.records[0].obj == 0x103


def test_larger_record_size_is_strided():
    """A record_size above 32 (a later writer with extra fields) decodes its first 32
    bytes at the given stride."""
    w = Writer(capacity=8)
    w.fields["record_size"] = 64
    w.register(0, map_ring=False, ring=0x2000000)
    ring = w.mem.map(0x2000000, 8 * 64)
    for n in range(11):
        struct.pack_into("<QQqIBbH", ring, (n % 8) * 64, 0x100 + n, 0, 1, n, INCREF, 1, 1)
        ring[(n % 8) * 64 + 32:(n % 8) * 64 + 64] = b"\xAA" * 32
    w.threads[0]["head"] = 11
    w.seq = 11
    w.flush()
    r = invariant(w.decode())
    assert [x.obj for x in r.records] == [0x100 + n for n in range(3, 11)]
    assert r.records_for(0x105)[0].pos == 5
    assert decode._columns(bytes(ring), 64) == decode._columns_portable(bytes(ring), 64)


def test_lost_counters():
    w = Writer()
    w.register(0)
    w.register(1)
    w.threads[0]["lost"] = 3
    w.threads[1]["lost"] = 4
    w.fields["lost_nothread"] = 5
    w.flush()
    assert w.decode().lost == 12


# ---------------------------------------------------------------------------------------
# Sequence numbers
# ---------------------------------------------------------------------------------------
def test_seq_restored_across_2_32():
    start = (1 << 32) - 3
    w = Writer(capacity=8, seq=start)
    w.register(0)
    for n in range(6):
        w.record(0, 0x100 + n)
    ring = invariant(w.decode())
    assert [r.seq for r in ring.records] == [start + n for n in range(6)]
    assert [r.seq32 for r in ring.records] == [(start + n) & 0xFFFFFFFF for n in range(6)]
    assert (ring.first_seq, ring.last_seq) == (start, start + 5)


def test_seq_far_past_2_32():
    start = (7 << 32) + 0xFFFFFFF0
    w = Writer(capacity=64, seq=start)
    w.register(0)
    for n in range(40):
        w.record(0, 0x100)
    assert [r.seq for r in w.decode().records] == [start + n for n in range(40)]


def test_seq_ahead_of_header():
    """Racing threads can leave header.seq behind a record: never a negative seq."""
    w = Writer(seq=10)
    w.register(0)
    w.record(0, 0x100)
    w.record(0, 0x100)
    w.seq = 5
    w.flush()
    assert [r.seq for r in w.decode().records] == [10, 11]
    assert restore_seq(5, 11) == 11
    assert restore_seq(1 << 33, 5) == (1 << 33) + 5 - (1 << 32)


# ---------------------------------------------------------------------------------------
# Threads, AUX
# ---------------------------------------------------------------------------------------
def test_threads_merged_by_seq():
    w = Writer(capacity=64, max_threads=4)
    for i in range(3):
        w.register(i)
    rnd = random.Random(1)
    expect = []
    for n in range(100):
        i = rnd.randrange(3)
        s = w.record(i, 0x1000 + n)
        expect.append((s, i))
    ring = invariant(w.decode())
    assert [(r.seq, r.thread) for r in ring.records] == expect
    assert {r.thread: r.tid for r in ring.records} == {0: 1, 1: 2, 2: 3}
    assert ring.threads_seen == 3


def test_same_seq_ordered_by_thread_then_pos():
    w = Writer(capacity=8)
    w.register(0)
    w.register(1)
    for i in (1, 0):
        for _ in range(2):
            w.record(i, 0x100)
            w.seq -= 1                                     # racing writers share numbers
    w.seq += 1
    w.flush()
    ring = w.decode()
    assert [(r.seq, r.thread, r.pos) for r in ring.records] == \
        [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)]


def test_aux_attached_to_its_record():
    w = Writer(capacity=16)
    w.register(0)
    w.record(0, 0x100)
    w.record(0, 0x200, op=5)                               # BORROW
    w.aux(0, 0x300, kind=1, value=7)
    w.aux(0, 0x301, kind=2, value=8)
    w.record(0, 0x100, op=DECREF, refcnt=2)
    ring = invariant(w.decode())
    assert ring.decoded == 5
    assert [r.op_name for r in ring.records] == ["INCREF", "BORROW", "DECREF"]
    b = ring.records[1]
    assert [(a.obj, a.site, a.refcnt, a.op_name, a.seq, a.pos) for a in b.aux] == \
        [(0x300, 1, 7, "AUX", 1, 2), (0x301, 2, 8, "AUX", 1, 3)]
    assert ring.records_for(0x200) == [b]
    assert ring.records_for(0x300) == []                  # attached: reached through b.aux


def test_aux_orphan_stays_in_records():
    w = Writer(capacity=4)
    w.register(0)
    w.record(0, 0x100, op=5)
    w.aux(0, 0x300)
    w.aux(0, 0x301)
    w.record(0, 0x400)
    w.record(0, 0x500)                                     # overwrites the BORROW
    ring = invariant(w.decode())
    assert [r.op_name for r in ring.records] == ["AUX", "AUX", "INCREF", "INCREF"]
    assert [r.obj for r in ring.records] == [0x300, 0x301, 0x400, 0x500]
    assert ring.records_for(0x301)[0].op_name == "AUX"


def test_aux_with_wrong_seq_is_orphan():
    w = Writer()
    w.register(0)
    w.record(0, 0x100)
    w.aux(0, 0x300)
    struct.pack_into("<I", w.ring_buf(0), 32 + 24, 5)    # under the counter's slack
    ring = invariant(w.decode())
    assert [r.op_name for r in ring.records] == ["INCREF", "AUX"]
    assert ring.records[0].aux == ()


def test_aux_of_another_registration_is_orphan():
    w = Writer()
    w.register(0)
    w.record(0, 0x100)
    w.aux(0, 0x300)
    struct.pack_into("<H", w.ring_buf(0), 32 + 30, 77)    # the AUX's tid
    ring = invariant(w.decode())
    assert [r.op_name for r in ring.records] == ["INCREF", "AUX"]


def test_aux_across_the_wrap_point():
    w = Writer(capacity=4)
    w.register(0)
    for _ in range(3):
        w.record(0, 0x100)
    w.record(0, 0x200, op=5)                               # pos 3, last slot
    w.aux(0, 0x300)                                        # pos 4, slot 0
    ring = invariant(w.decode())
    assert ring.records[-1].obj == 0x200
    assert [a.pos for a in ring.records[-1].aux] == [4]


# ---------------------------------------------------------------------------------------
# Unreadable memory
# ---------------------------------------------------------------------------------------
def test_unreadable_thread_ring():
    w = Writer(capacity=4096)
    w.register(0)
    w.register(3, map_ring=False, ring=0x7F0000000000)
    for n in range(5000):
        w.record(0 if n % 2 else 3, 0x100 + n)
    ring = invariant(w.decode())
    assert ring.unreadable == 2500
    assert ring.decoded == 2500
    assert any(e == "thread 3: ring at 0x7f0000000000 unreadable (core truncated?), 2500 "
               "records lost" for e in ring.errors), ring.errors


def test_partly_unreadable_ring():
    """A core cut inside a ring: the readable prefix decodes, the rest is counted."""
    w = Writer(capacity=1 << 16)
    w.register(0)
    for n in range((1 << 16) + 100):
        w.record(0, 0x100 + n % 50)
    base = w.threads[0]["ring"]
    full = w.mem.regions.pop(base)
    keep = 5 * PAGE + 1000                                  # not page-aligned, like a cut file
    w.mem.regions[base] = full[:keep]
    ring = invariant(decode_ring(w.mem.read, w.addr, chunk=64 * 1024))
    readable = keep // PAGE * PAGE // 32
    assert ring.decoded == readable
    assert ring.unreadable == (1 << 16) - readable
    assert any("unreadable" in e and "of 65536 records" in e for e in ring.errors)
    # slot s holds position (1<<16) + s for s < 100, else s
    assert sorted(r.pos for r in ring.records) == \
        [p for p in range(100, (1 << 16) + 100) if (p & 0xFFFF) < readable]


def test_thread_table_partly_unreadable():
    w = Writer(max_threads=100)
    w.register(0)
    w.record(0, 0x100)
    del w.mem.regions[w.addr]
    w.mem.regions[w.addr] = w.hdr[:PAGE]                    # descriptors 60.. cut off
    ring = invariant(w.decode())
    assert ring.decoded == 1
    assert any("descriptor 60" in e for e in ring.errors), ring.errors


def test_never_silently_empty():
    w = Writer()
    w.fields["flags"] = 1
    w.flush()
    ring = w.decode()
    assert ring.records == []
    assert "recording disabled (PYREF=off)" in ring.errors
    w2 = Writer()
    w2.register(0)
    w2.record(0, 0x100)
    w2.set_commit(0, 0, 0)
    ring2 = invariant(w2.decode())
    assert any("nothing decoded: 1 written, 1 torn" in e for e in ring2.errors)


def test_odd_descriptors_noted():
    w = Writer()
    w.register(0)
    w.record(0, 0x100)
    w.threads[0]["seqp"] = 0x1234
    w.threads[1] = dict(ring=0, head=5, mask=0, seqp=0, lost=0, busy=0, state=2, os_tid=0,
                        serial=0)
    w.flush()
    ring = invariant(w.decode())
    assert any("seqp 0x1234" in e for e in ring.errors)
    assert any("thread 1: head 5 but no ring" in e for e in ring.errors)
    assert ring.written == 1


# ---------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------
def random_ring(seed, cap=64, nthreads=3, n=500):
    rnd = random.Random(seed)
    w = Writer(capacity=cap, max_threads=nthreads + 1, seq=rnd.choice([0, (1 << 32) - 100]))
    for i in range(nthreads):
        w.register(i)
    objs = [0x10000 + 16 * k for k in range(20)]
    for _ in range(n):
        i = rnd.randrange(nthreads)
        x = rnd.random()
        obj = rnd.choice(objs)
        if x < 0.1 and w.threads[i]["head"]:
            w.aux(i, rnd.choice(objs), value=rnd.randrange(100))
        elif x < 0.2:
            w.record(i, obj, op=DEALLOC, refcnt=1)
        else:
            w.record(i, obj, op=rnd.choice([INCREF, DECREF, 5]), refcnt=rnd.randrange(1, 9))
    for i in range(nthreads):                              # some torn / corrupt slots
        for _ in range(3):
            struct.pack_into("<Q", w.ring_buf(i), rnd.randrange(cap) * 32 + 24,
                             rnd.choice([0, 1 << 32 | 5]))
    return w, objs


@pytest.mark.parametrize("seed", range(5))
def test_records_for_agrees_with_full_decode(seed):
    w, objs = random_ring(seed)
    ring = invariant(w.decode())
    idx = build_index(ring)
    total = 0
    for obj in objs + [0xDEAD]:
        fast = ring.records_for(obj)
        assert fast == [r for r in ring.records if r.obj == obj]
        assert fast == idx.get(obj, [])
        total += len(fast)
    assert total == len(ring.records)
    attached = sum(len(r.aux) for r in ring.records)
    assert len(ring.records) + attached == ring.decoded
    keys = [(r.seq, r.thread, r.pos) for r in ring.records]
    assert keys == sorted(keys)


@pytest.mark.parametrize("seed", range(3))
def test_records_of_and_slot_columns_agree_with_full_decode(seed, monkeypatch):
    w, objs = random_ring(seed)
    ring = invariant(w.decode())
    some = set(objs[::2]) | {0xDEAD}
    assert ring.records_of(some) == {o: ring.records_for(o) for o in some
                                     if ring.records_for(o)}
    # the columns hold every decoded slot, attached AUX records included
    cols = ring.slot_columns()
    monkeypatch.setattr(decode, "_LITTLE_HOST", False)     # the struct path agrees
    assert ring.slot_columns() == cols
    assert ring.records_of(some) == {o: ring.records_for(o) for o in some
                                     if ring.records_for(o)}
    monkeypatch.undo()
    flat = [(o, s, r, b & 63, q) for c in cols for o, s, r, b, q in zip(*c)]
    recs = ring.records
    want = [(r.obj, r.site, r.refcnt, r.op, r.seq) for x in recs for r in (x,) + x.aux]
    assert sorted(flat) == sorted(want) and len(flat) == ring.decoded


def _expected_tail(ring, t, n):
    """What decode.tail must give for thread `t` (not busy): the full decode's records of
    that thread in the window's last n positions, an AUX whose record lies before them
    unattached."""
    first = t.head - n
    out = []
    for r in ring.records:
        if r.thread != t.index:
            continue
        if r.pos >= first:
            out.append(r)
        else:
            out += [a for a in r.aux if a.pos >= first]
    return sorted(out, key=lambda r: r.seq)


@pytest.mark.parametrize("seed", range(5))
def test_tail_is_the_decoders_newest_records(seed):
    """decode.tail (what `pyref watch` reads per change) gives what the full decode gives
    for the thread's newest positions: same validity checks (torn and corrupt slots left
    out), same records, AUX attached."""
    w, _ = random_ring(seed)
    ring = invariant(w.decode())
    for t in ring.threads[:3]:
        for n in (1, 5, 32, 64, 1000):
            got = decode.tail(w.mem.read, ring.header, t, n)
            assert got == _expected_tail(ring, t, min(n, 64)), (t.index, n)


def test_tail_follows_the_in_flight_rule():
    w = full_ring_in_flight()
    ring = w.decode()
    t = ring.threads[0]
    got = decode.tail(w.mem.read, ring.header, t, 3)
    assert [(r.pos, r.obj) for r in got] == [(9, 0x109), (10, 0x10A), (11, 0x999)]
    assert got == ring.records[-3:]
    w.threads[0]["busy"] = 0                               # not busy: the window ends at 10
    w.flush()
    ring = w.decode()
    assert [r.pos for r in decode.tail(w.mem.read, ring.header, ring.threads[0], 2)] == \
        [9, 10]


def test_tail_of_an_empty_or_unregistered_thread():
    w = Writer(capacity=8)
    w.register(0)
    ring = w.decode()
    assert decode.tail(w.mem.read, ring.header, ring.threads[0], 5) == []
    assert decode.tail(w.mem.read, ring.header, ring.threads[1], 5) == []


def test_portable_columns_match_fast_path():
    w, _ = random_ring(7)
    for buf in (w.ring_buf(0), w.ring_buf(1)):
        assert decode._columns(bytes(buf), 32) == decode._columns_portable(bytes(buf), 32)


def test_lifetimes_split_on_dealloc_and_free():
    w = Writer(capacity=32)
    w.register(0)
    w.record(0, 0x100, refcnt=1)
    w.record(0, 0x100, op=DECREF, refcnt=2)
    w.record(0, 0x100, op=DEALLOC, refcnt=1)
    w.record(0, 0x100, op=FREE, refcnt=0x7777)             # same lifetime as the DEALLOC
    w.record(0, 0x100, refcnt=1)                           # address reused
    w.record(0, 0x100, op=FREE, refcnt=0x7777)
    w.record(0, 0x100, op=INCREF, refcnt=1)
    lives = lifetimes(w.decode().records_for(0x100))
    assert [[r.op_name for r in life] for life in lives] == [
        ["INCREF", "DECREF", "DEALLOC", "FREE"], ["INCREF", "FREE"], ["INCREF"]]
    assert lifetimes([]) == []


def test_a_thread_whose_seqs_go_back_keeps_its_ring_order():
    """Without the GIL the relaxed shared seq counter races: one thread's INCREF DECREF
    INCREF DECREF can get decreasing seqs. Within a thread the ring position is the order,
    always: records, records_for, records_of and slot_columns keep it, another thread's
    records merge around it, and the leak pass finds the pairs balanced."""
    from pyref.rules import leaks
    w = Writer(capacity=16)
    w.register(0)
    w.register(1)
    x, y = 0x7000, 0x7100
    for seq, op, refcnt in ((40, INCREF, 1), (38, DECREF, 2), (36, INCREF, 1),
                            (34, DECREF, 2)):
        w.seq = seq
        w.record(0, x, op=op, refcnt=refcnt)
    for seq, op, refcnt in ((35, INCREF, 1), (37, DECREF, 2), (39, INCREF, 1),
                            (41, DECREF, 2)):
        w.seq = seq
        w.record(1, y, op=op, refcnt=refcnt)
    w.seq = 42
    w.flush()
    ring = invariant(w.decode())
    pairs = ["INCREF", "DECREF", "INCREF", "DECREF"]
    assert [r.op_name for r in ring.records_for(x)] == pairs
    assert [r.seq for r in ring.records_for(x)] == [40, 38, 36, 34]
    assert [r.op_name for r in ring.records_for(y)] == pairs
    for t in (0, 1):
        pos = [r.pos for r in ring.records if r.thread == t]
        assert pos == sorted(pos) and len(pos) == 4
    # thread 0's records go after its first (seq 40), thread 1's by their own seqs
    assert [(r.obj, r.seq) for r in ring.records] == [
        (y, 35), (y, 37), (y, 39), (x, 40), (x, 38), (x, 36), (x, 34), (y, 41)]
    assert ring.records_of({x, y}) == {x: ring.records_for(x), y: ring.records_for(y)}
    assert build_index(ring)[x] == ring.records_for(x)
    assert not leaks.unbalanced(ring.slot_columns(), lambda site: True)


def test_a_plain_sort_by_seq_would_have_reordered_it():
    """The same thread's records sorted by seq, as the merge did before: DECREF INCREF
    DECREF INCREF, a release before its acquisition and an acquisition never released
    (what made GIL-less runs report double releases and leaks): the case is not vacuous.
    A second writer is there because one writer's seqs are exact (a single writer whose seq
    goes back is a damaged record, rejected by the plausibility check)."""
    w = Writer(capacity=16)
    w.register(0)
    w.register(1)
    for seq, op, refcnt in ((40, INCREF, 1), (38, DECREF, 2), (36, INCREF, 1),
                            (34, DECREF, 2)):
        w.seq = seq
        w.record(0, 0x7000, op=op, refcnt=refcnt)
    w.seq = 35
    w.record(1, 0x7100, op=INCREF, refcnt=1)
    w.seq = 41
    w.flush()
    recs = invariant(w.decode()).records_for(0x7000)
    assert [r.op_name for r in sorted(recs, key=lambda r: r.seq)] == [
        "DECREF", "INCREF", "DECREF", "INCREF"]
    assert [r.op_name for r in recs] == ["INCREF", "DECREF", "INCREF", "DECREF"]


def _harm_oracle(recs):
    """What harm_candidates must keep, from the Records one by one (the tests of
    inferior/diagnose._may_show_harm, order-free): a mortal count below zero, a DEALLOC,
    a use of a count outside (0, 2^40) in an object that ended once."""
    ended = any(r.op in (DEALLOC, FREE) for r in recs)
    return any(not r.flags & IMMORTAL and r.refcnt + r.delta < 0 for r in recs) or \
        any(r.op == DEALLOC for r in recs) or \
        (ended and any(r.op not in (NEW, FREE, STEAL) and not 0 < r.refcnt < 1 << 40
                       for r in recs))


@pytest.mark.parametrize("seed", range(5))
def test_column_passes_agree_with_records(seed):
    w, objs = random_ring(seed)
    ring = invariant(w.decode())
    idx = build_index(ring)
    want = {o for o, recs in idx.items() if _harm_oracle(recs)}
    assert want <= ring.harm_candidates(40)
    # select: the same columns as filtering all of them by op byte
    table = bytes(1 if b & 0x3F in (INCREF, NEW) else 0 for b in range(256))
    for got, full in zip(ring.slot_columns(table), ring.slot_columns()):
        keep = [table[b] for b in full[3]]
        assert got[0] == [v for v, k in zip(full[0], keep) if k]
        assert got[3] == bytes(v for v, k in zip(full[3], keep) if k)
        assert got[4] == [v for v, k in zip(full[4], keep) if k]


def test_lane_tests_agree_with_ints():
    rnd = random.Random(7)
    for _ in range(200):
        vals = [rnd.choice([0, 1, 255, 256, 1 << 24, rnd.getrandbits(32)])
                for _ in range(rnd.randint(1, 30))]
        data = b"".join(bytes(24) + struct.pack("<I", v) + bytes(4) for v in vals)
        limit = rnd.choice(vals + [rnd.getrandbits(32), 0, -1, 1 << 32])
        assert plausibility._u32_above(data, 24, 32, limit) == any(v > limit for v in vals)
        run = decode._Run(0, data, 32)
        run.kind = bytearray([1] * len(vals))
        tw = decode._ThreadWindow(0, [run], 32)
        assert decode._rising_low(tw) == all(a <= b for a, b in zip(vals, vals[1:]))
