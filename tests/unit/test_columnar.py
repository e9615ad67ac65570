"""reader/columnar.py, the compact columns `pyref leaks` reads a ring through: the same
records and answers as decode.Ring.slot_columns()'s lists, on random rings (several
threads, wrapped rings, torn and corrupt slots, AUX records, seqs across a 2^32 wrap)."""
import random
import struct

import pytest

import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.reader import columnar
from pyref.reader.ringformat import AUX, DEALLOC, DECREF, FREE, IMMORTAL, INCREF, NEW, STEAL
from pyref.rules import leaks
from ringimage import Writer, invariant

SITES = [0x5000, 0x5040, 0x5080, 0]


# (weight, op, count): what the random rings are made of (count None: 1 to 4)
MIX = [(8, AUX, None), (7, DEALLOC, 1), (5, FREE, 0), (7, NEW, 1), (3, NEW, 2),
       (20, INCREF, None), (20, DECREF, None), (10, STEAL, None), (3, INCREF | IMMORTAL, 1),
       (2, DECREF | IMMORTAL, 1)]


def random_ring(seed, cap=64, nthreads=3, n=600):
    """A ring of `nthreads` wrapped thread rings of 8 addresses' records (MIX), some of
    its slots torn or corrupt, its counter at 0, 1000 or just below 2^32."""
    rnd = random.Random(seed)
    w = Writer(capacity=cap, max_threads=nthreads + 1,
               seq=rnd.choice([0, 1000, (1 << 32) - 300]))
    threads = [w.register(i) for i in range(nthreads)]
    objs = [0x10000 + 16 * k for k in range(8)]
    drawn = rnd.choices(MIX, weights=[m[0] for m in MIX], k=n)
    for (_, op, count), t in zip(drawn, rnd.choices(threads, k=n)):
        count = rnd.randrange(1, 5) if count is None else count
        if op == AUX:
            if w.threads[t]["head"]:
                w.aux(t, rnd.choice(objs), value=count)
        else:
            w.record(t, rnd.choice(objs), op=op, refcnt=count, site=rnd.choice(SITES))
    for t in threads:
        for slot in rnd.sample(range(cap), 3):
            struct.pack_into("<Q", w.ring_buf(t), slot * 32 + 24,
                             rnd.choice([0, 1 << 32 | 5, 0xFFFFFFFF]))
    return w


def ok(site):
    return site in (0x5000, 0x5080)              # 0x5040 does not resolve


@pytest.mark.parametrize("seed", range(12))
def test_leak_columns_give_slot_columns_answers(seed):
    ring = invariant(random_ring(seed).decode())
    lists = ring.slot_columns(leaks.RAW_EFFECT)
    compact = columnar.leak_columns(ring, leaks.RAW_EFFECT)
    assert len(compact) == len(lists) > 1
    for (o, s, r, opb, q), (lo, ls, lr, lopb, lq) in zip(compact, lists):
        keep = [i for i, b in enumerate(opb) if b]
        assert [o[i] for i in keep] == lo and [s[i] for i in keep] == ls
        assert [r[i] for i in keep] == lr and bytes(opb[i] for i in keep) == lopb
        assert [q[i] for i in keep] == lq
        assert list(q) == sorted(q)              # torn slots too: never goes down
    want = leaks.unbalanced_counts(lists, ok)
    assert leaks.unbalanced_counts(compact, ok) == want
    assert leaks.unbalanced_counts(ring.slot_columns(), ok) == want


@pytest.mark.parametrize("seed", range(6))
def test_following_sites(seed):
    """The sites a thread wrote after a record: what its slot_columns() run holds after
    it (decoded slots, AUX records included), bounded."""
    ring = invariant(random_ring(seed).decode())
    for rec in ring.records[::7]:
        got = columnar.following_sites(ring, rec, 5)
        for o, s, _, _, q in ring.slot_columns():
            hits = [i for i in range(len(o)) if o[i] == rec.obj and q[i] == rec.seq]
            if hits:
                assert got == s[hits[0] + 1:hits[0] + 6]
                break
        else:
            assert got is None


@pytest.mark.parametrize("seed", range(12))
def test_newest_traced_deallocs(seed):
    """The DEALLOCs traced code wrote, newest first: what reversed(Ring.records) gives,
    without a Record per slot (seqs across a 2^32 wrap, torn slots, several threads)."""
    ring = invariant(random_ring(seed).decode())
    got = columnar.newest_traced_deallocs(ring)
    want = [r.obj for r in reversed(ring.records) if r.op_name == "DEALLOC" and r.site]
    assert got == want and want


def test_newest_traced_deallocs_where_a_threads_seqs_go_back():
    """Without the GIL one thread's seqs can go back: the DEALLOCs come in the merged
    order all the same (each thread's by position under its merge key, the running
    maximum of its seqs; ties by thread, then position), reversed."""
    w = Writer(capacity=16)
    w.register(0)
    w.register(1)
    for seq, obj in ((40, 0x7000), (38, 0x7010), (36, 0x7020)):
        w.seq = seq
        w.record(0, obj, op=NEW, refcnt=1)
        w.record(0, obj, op=DEALLOC, refcnt=1)
    for seq, obj, site in ((35, 0x7100, 0x5000), (39, 0x7110, 0), (41, 0x7120, 0x5000),
                           (40, 0x7130, 0x5000)):
        w.seq = seq
        w.record(1, obj, op=DEALLOC, refcnt=1, site=site)
    w.flush()
    got = columnar.newest_traced_deallocs(invariant(w.decode()))
    ring = invariant(w.decode())
    want = [r.obj for r in reversed(ring.records) if r.op_name == "DEALLOC" and r.site]
    assert got == want == [0x7130, 0x7120, 0x7020, 0x7010, 0x7000, 0x7100]
    w.seq = 42
    w.record(1, 0x7200, op=NEW, refcnt=1, site=0x5040)
    w.record(0, 0x7210, op=NEW, refcnt=1, site=0x5080)
    w.flush()
    got = columnar.sites_in_order(invariant(w.decode()))
    ring = invariant(w.decode())
    assert got == list(dict.fromkeys(r.site for r in ring.records if r.site)) == [
        0x5000, 0x5040, 0x5080]


@pytest.mark.parametrize("seed", range(12))
def test_sites_in_order(seed):
    """The distinct sites of Ring.records in the order a walk of it meets them (AUX
    records attached or not, torn slots, several threads), without the walk."""
    w = random_ring(seed)
    got = columnar.sites_in_order(invariant(w.decode()))    # before any Record is built
    ring = invariant(w.decode())
    want = list(dict.fromkeys(r.site for r in ring.records if r.site))
    assert got == want and len(want) > 1
    # site 1 is an unattached AUX record's kind: listed by Ring.records (not on every seed)
    assert (1 in want) == (seed not in (9, 10, 11))
    assert columnar.sites_in_order(ring) == want             # after (AUX kind 2 marked)
