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
