"""Format 2 of the ring (docs/ring-format.md, "Origin records"): a BORROW or STEAL carries
its container, index and count in its own record (the origin word), with an AUX ORIGIN
after it only when they do not fit. Images are written by tests/ringimage.py's Writer from
the spec (Writer.origin), in both versions, and the reader must give the same Records for
the same history: format 1 images still decode (every other test of tests/unit writes
format 1), format 2 ones decode to format 1's shape. No gdb, no C."""
import os
import random
import struct

import pytest

import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.reader import decode, ringformat
from pyref.reader.ringformat import (AUX, AUX_CONTAINER, AUX_ORIGIN, BORROW, DECREF,
                                     IMMORTAL, INCREF, NEW, STEAL, origin_fields)
from ringimage import Mem, Writer, invariant
from ringimage import spec_origin_code as origin_code, spec_origin_word as origin_word

M64 = (1 << 64) - 1

# (count, index) -> the origin code ring.h's pyref_origin_code() gives: the same vectors
# are checked against the C function by tests/c/test_ring_origin.c, here against the
# spec's encoder in tests/ringimage.py, whose codes the reader's origin_fields decodes.
GOLDEN = [
    ((1, -1), 1 << 18),
    ((3, 5), 3 << 18 | 6),
    ((255, (1 << 18) - 2), 255 << 18 | (1 << 18) - 1),
    ((256, 254), 1 << 26 | 256 << 8 | 255),
    (((1 << 18) - 1, -1), 1 << 26 | ((1 << 18) - 1) << 8),
    ((256, 255), 0),                       # both too big for either layout
    ((1 << 18, 0), 0),
    ((0, 0), 0),                           # a dead object's count: the AUX holds it
    ((-3, 1), 0),
    ((5, -2), 0),                          # an index below -1
    ((5, 1 << 18), 0),                     # 255 < count? no: index too big for layout 0
]


@pytest.mark.parametrize("args, code", GOLDEN)
def test_origin_code_vectors(args, code):
    assert origin_code(*args) == code
    if code:
        word, delta = origin_word(0x7F0012345678, code)
        assert origin_fields(word, delta) == (0x7F0012345678,) + args


def test_origin_code_round_trips():
    rnd = random.Random(2)
    for _ in range(20000):
        count = rnd.choice([rnd.randrange(-5, 300), rnd.randrange(1 << 19)])
        index = rnd.choice([-1, rnd.randrange(300), rnd.randrange(1 << 19), -rnd.randrange(9)])
        container = rnd.randrange(1 << 45) << 3
        code = origin_code(count, index)
        assert code < 1 << 27
        word, delta = origin_word(container, code)
        got = origin_fields(word, delta)
        assert got[0] == container
        assert got[1:] == ((count, index) if code else (None, None))


def history(w, rnd, n=200):
    """A random history of every kind of record, the same calls for either version."""
    objs = [0x7F0000010000 + 0x40 * k for k in range(8)]
    for _ in range(n):
        x = rnd.random()
        obj = rnd.choice(objs)
        if x < 0.45:
            w.origin(0, obj, rnd.choice([BORROW, STEAL]),
                     rnd.choice([1, 2, 7, 255, 256, 70000, 1 << 18, 0, -2, 0xFFFFFFFF]),
                     rnd.choice([0, 0x7F0000200000, 0x7F0000200040, 0x7F0000200003, 1 << 52]),
                     rnd.choice([-1, 0, 3, 254, 255, 100000, 1 << 20, -4]),
                     flags=rnd.choice([0, 0, 0, IMMORTAL]))
        elif x < 0.5 and w.threads[0]["head"]:
            w.aux(0, 0x7F00C0DE0000, kind=0x10, value=rnd.randrange(100))   # a PYCTX
        elif x < 0.6:
            w.record(0, obj, op=NEW, refcnt=rnd.randrange(1, 4))
        else:
            w.record(0, obj, op=rnd.choice([INCREF, DECREF]), refcnt=rnd.randrange(1, 9))


def shape(rec):
    return (rec.obj, rec.site, rec.refcnt, rec.delta, rec.op, rec.flags, rec.seq,
            tuple((a.obj, a.site, a.refcnt, a.op) for a in rec.aux))


@pytest.mark.parametrize("seed", range(6))
def test_both_versions_decode_to_the_same_records(seed):
    rings = {}
    for v in (1, 2):
        w = Writer(capacity=4096, version=v)
        w.register(0)
        history(w, random.Random(seed))
        rings[v] = invariant(w.decode())
        assert rings[v].torn == 0 and rings[v].rejected == 0, rings[v].rejections
    one, two = ([shape(r) for r in rings[v].records] for v in (1, 2))
    assert one == two
    # every slot accounted for: records, attached AUX slots, folded AUX ORIGINs
    assert rings[2].decoded == len(rings[2].records) + rings[2].folded + sum(
        1 for r in rings[2].records for a in r.aux if a.pos != r.pos)


def test_compact_origin_is_one_record():
    w = Writer(capacity=16, version=2)
    w.register(0)
    w.origin(0, 0x7F0000001000, BORROW, 3, 0x7F0000002000, 5)
    w.origin(0, 0x7F0000001000, STEAL, 100000, 0x7F0000002000, 100)
    w.origin(0, 0x7F0000001040, BORROW, 1, 0, -1)             # no container: no AUX
    ring = invariant(w.decode())
    assert (ring.written, ring.decoded, ring.folded) == (3, 3, 0)
    a, b, c = ring.records
    assert (a.op_name, a.refcnt, a.after, a.delta) == ("BORROW", 3, 3, 0)
    assert [(x.obj, x.site, x.refcnt, x.op_name, x.pos, x.seq) for x in a.aux] == \
        [(0x7F0000002000, AUX_CONTAINER, 5, "AUX", a.pos, a.seq)]
    assert (b.op_name, b.refcnt, [(x.obj, x.refcnt) for x in b.aux]) == \
        ("STEAL", 100000, [(0x7F0000002000, 100)])
    assert (c.refcnt, c.aux) == (1, ())
    assert ring.records_for(0x7F0000001000) == [a, b]
    assert ring.records_of({0x7F0000001040}) == {0x7F0000001040: [c]}
    assert ring.records_for(0x7F0000002000) == []             # the container: not a record


def test_origin_that_does_not_fit_takes_an_aux_origin():
    w = Writer(capacity=16, version=2)
    w.register(0)
    w.origin(0, 0x7F0000001000, BORROW, 0xFFFFFFFF, 0x7F0000002000, 7, flags=IMMORTAL)
    w.origin(0, 0x7F0000001040, STEAL, 0, 0x7F0000002003, -1)   # a container off 8 bytes
    w.record(0, 0x7F0000001000, op=INCREF | IMMORTAL, refcnt=0xFFFFFFFF)
    ring = invariant(w.decode())
    assert (ring.written, ring.decoded, ring.folded) == (6, 6, 2)
    a, b, c = ring.records
    assert (a.refcnt, a.immortal, [(x.obj, x.site, x.refcnt) for x in a.aux]) == \
        (0xFFFFFFFF, True, [(0x7F0000002000, AUX_CONTAINER, 7)])
    # the container that does not fit the word comes in its own AUX CONTAINER slot
    assert (b.refcnt, [(x.obj, x.site, x.refcnt, x.pos) for x in b.aux]) == \
        (0, [(0x7F0000002003, AUX_CONTAINER, -1, 4)])
    assert c.op_name == "INCREF"
    assert [r.obj for r in decode.tail(w.mem.read, ring.header, ring.threads[0], 6)] == \
        [r.obj for r in ring.records]
    assert decode.tail(w.mem.read, ring.header, ring.threads[0], 6) == ring.records


def test_origin_cut_short_is_torn():
    """An origin with code 0 whose AUX ORIGIN is torn, or not there, has no count: torn,
    and its object a suspect; a format-1 BORROW with the same bytes is a record."""
    for version, torn in ((2, 3), (1, 1)):
        w = Writer(capacity=16, version=version)
        w.register(0)
        w.record(0, 0x7F0000001000, op=BORROW, refcnt=0x7F0000002000)   # code 0
        w.aux(0, 0, kind=AUX_ORIGIN, value=4)
        w.set_commit(0, 1, 0)                                         # the AUX torn
        w.record(0, 0x7F0000001040, op=STEAL, refcnt=0x7F0000002000)  # code 0, no AUX
        w.record(0, 0x7F0000001080, op=INCREF, refcnt=2)
        ring = invariant(w.decode())
        assert ring.torn == torn, version
        if version == 2:
            assert [r.op_name for r in ring.records] == ["INCREF"]
            assert {0x7F0000001000, 0x7F0000001040} <= ring.suspects


def test_aux_origin_of_another_seq_does_not_complete_an_origin():
    w = Writer(capacity=16, version=2)
    w.register(0)
    w.record(0, 0x7F0000001000, op=BORROW, refcnt=0)
    w.aux(0, 0, kind=AUX_ORIGIN, value=4)
    struct.pack_into("<I", w.ring_buf(0), 32 + 24, 5)            # the AUX's seq
    ring = invariant(w.decode())
    assert ring.torn == 1
    assert [(r.op_name, r.site) for r in ring.records] == [("AUX", AUX_ORIGIN)]


def test_harm_candidates_read_the_count_not_the_word():
    w = Writer(capacity=64, version=2)
    w.register(0)
    live, dead, big = 0x7F0000001000, 0x7F0000001040, 0x7F0000001080
    w.origin(0, live, BORROW, 3, 0x7F00000F0000, 2)               # sane: not a candidate
    w.origin(0, big, BORROW, 200000, 0x7F00000F0000, 1)            # sane too
    w.origin(0, dead, BORROW, 0, 0x7F00000F0000, 1)                # a dead object's count
    ring = invariant(w.decode())
    got = ring.harm_candidates()
    assert dead in got and live not in got and big not in got


def test_slot_columns_keep_the_origin_word():
    w = Writer(capacity=16, version=2)
    w.register(0)
    w.origin(0, 0x7F0000001000, STEAL, 3, 0x7F0000002000, 5)
    w.record(0, 0x7F0000001000, op=NEW, refcnt=1)
    (obj, site, refcnt, opbyte, seq), = w.decode().slot_columns()
    word, delta = origin_word(0x7F0000002000, origin_code(3, 5))
    assert refcnt == [word, 1] and opbyte == bytes([STEAL, NEW])


def test_version_is_in_the_header():
    w = Writer(version=2)
    assert w.decode().header.version == 2
    assert ringformat.VERSION == 2 and ringformat.VERSIONS == (1, 2)


def test_in_flight_origin_in_a_full_ring():
    """A compact origin written into a full ring, stopped after its commit and before
    head: decoded last, at position head (the in-flight rule with format 2's delta)."""
    w = Writer(capacity=4, version=2)
    w.register(0)
    for k in range(4):
        w.record(0, 0x7F0000001000 + 0x40 * k)
    t = w.threads[0]
    t["busy"] = 1
    w.origin(0, 0x7F0000009000, BORROW, 5, 0x7F0000002000, 300)
    t["head"] -= 1
    w.flush()
    ring = invariant(w.decode())
    assert ring.in_flight == 1
    last = ring.records[-1]
    assert (last.obj, last.pos, last.refcnt, [(a.obj, a.refcnt) for a in last.aux]) == \
        (0x7F0000009000, 4, 5, [(0x7F0000002000, 300)])


def test_aux_kinds_are_distinct():
    assert len({AUX_CONTAINER, AUX_ORIGIN, ringformat.AUX_TEXT, 0x10, 0x11}) == 5
    assert AUX == 8


# ---------------------------------------------------------------------------------------
# Real images: the same history written by the format-1 and the format-2 C library
# ---------------------------------------------------------------------------------------
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def load_image(name):
    """(read, header address) of an image tests/c/progs/dump_ring.c wrote."""
    with open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    assert raw[:8] == b"PYREFIMG"
    mem, off, first = Mem(), 8, None
    while off < len(raw):
        addr, n = struct.unpack_from("<QQ", raw, off)
        mem.regions[addr] = bytearray(raw[off + 16:off + 16 + n])
        off += 16 + n
        first = addr if first is None else first
    return mem.read, first


def test_real_images_of_both_versions_decode_alike():
    rings = {}
    for v in (1, 2):
        read, addr = load_image("ring_v%d.img" % v)
        rings[v] = invariant(decode.decode_ring(read, addr))
        assert rings[v].header.version == v and rings[v].errors == []
        assert rings[v].torn == rings[v].rejected == 0

    def same(rec):                 # sites are static addresses of each build: left out
        return (rec.op_name, rec.obj, rec.refcnt, rec.delta, rec.immortal,
                tuple((a.obj, a.site, a.refcnt) for a in rec.aux if a.site != 0x12))
    one, two = ([same(r) for r in rings[v].records] for v in (1, 2))
    assert one == two
    assert one[:5] == [
        ("NEW", 0x7F0000001000, 1, 0, False, ()),
        ("BORROW", 0x7F0000001040, 3, 0, False, ((0x7F0000002000, AUX_CONTAINER, 2),)),
        ("INCREF", 0x7F0000001040, 3, 1, False, ()),
        ("STEAL", 0x7F0000001040, 4, 0, False, ((0x7F0000002040, AUX_CONTAINER, 0),)),
        ("BORROW", 0x7F0000001080, 0xFFFFFFFF, 0, True, ((0x7F0000002000, AUX_CONTAINER, -1),)),
    ]
    assert rings[2].marks()[0][2] == rings[1].marks()[0][2] == "test:start dump"
    # format 1: three AUX CONTAINER slots; format 2: one AUX ORIGIN (the immortal count)
    assert (rings[1].written, rings[2].written, rings[2].folded) == (11, 9, 1)


@pytest.mark.parametrize("seed", range(6))
def test_harm_candidates_keep_what_the_records_show(seed):
    """Format 2's harm_candidates (the origin word's count, or an AUX ORIGIN's) keep every
    object whose Records show harm, as format 1's do (test_decode._harm_oracle)."""
    from test_decode import _harm_oracle
    rnd = random.Random(seed)
    w = Writer(capacity=512, version=2)
    w.register(0)
    objs = [0x7F0000010000 + 0x40 * k for k in range(24)]
    for _ in range(400):
        obj, x = rnd.choice(objs), rnd.random()
        if x < 0.4:
            w.origin(0, obj, rnd.choice([BORROW, STEAL]),
                     rnd.choice([1, 3, 300, 0, -1, 1 << 41, 0xDDDDDDDD, 1 << 18]),
                     rnd.choice([0, 0x7F0000200000]), rnd.choice([-1, 2, 1000]),
                     flags=rnd.choice([0, 0, IMMORTAL]))
        elif x < 0.5:
            w.record(0, obj, op=ringformat.DEALLOC, refcnt=1)
        else:
            w.record(0, obj, op=rnd.choice([INCREF, DECREF, NEW]), refcnt=rnd.randrange(-1, 9))
    ring = invariant(w.decode())
    idx = decode.build_index(ring)
    want = {o for o, recs in idx.items() if _harm_oracle(recs)}
    assert want and want <= ring.harm_candidates(40)
