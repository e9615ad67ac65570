"""Plausibility checks of a decoded ring beyond each slot's own fields (docs/reliability.md,
"Plausibility checks"): a seq above what the counter allows, a seq out of order in a
one-writer window, a descriptor whose head no counter allows or whose ring aliases
another's. Rejected slots are marked not decoded and counted by reason; torn and
rejected slots name their objects as suspects (reader/evidence.py)."""
from __future__ import annotations

import struct
from bisect import bisect_right
from itertools import compress, islice, repeat
from operator import add, le

from pyref.reader.columns import IS_ONE, LITTLE_HOST, M32, obj_column, restore_column
from pyref.reader.ringformat import AUX


MAX_SUSPECTS = 4096


def seq_slack(h) -> int:
    """How far a reader may see records ahead of the header's counter, or the counter
    ahead of the newest record: writers take their seq from the counter before writing, so
    only the writes in flight in each thread slot when the process stopped (at most a
    record and its AUX each) can be out of step."""
    return 2 * h.max_threads + 2


def _reject(ring, run, i, reason):
    run.kind[i] = 0
    ring.rejected += 1
    ring.rejections[reason] = ring.rejections.get(reason, 0) + 1


def reject_implausible(ring, runs, rs):
    """Plausibility of the decoded records of one thread's window, beyond each slot's own
    fields: a seq above the header's counter (every writer takes its seq from it before
    writing), and a seq out of order with both neighbours in the window (one thread takes
    its seqs in the order it writes its slots; an AUX repeats its record's). Such slots are
    marked 0 (not decoded), counted in ring.rejected by reason. The in-order case, the
    usual one, costs two C-level passes."""
    h = ring.header
    # One writer's seqs are exact. Several writers race on the relaxed counter without the
    # GIL (docs/reliability.md, "Limits": back by up to 1.7 million measured), so their
    # seqs only bound each other loosely: no order check, and a seq is implausible only
    # beyond both twice the counter and the counter plus every record written (where a
    # flipped high bit lands): the counter can fall back by more than its own value.
    exact = ring.writers <= 1
    limit = h.seq + seq_slack(h) if exact else \
        max(2 * h.seq, h.seq + ring.total_written) + seq_slack(h)
    if not exact:
        # Restored seqs never exceed the counter, except while it is below 2^32 a record
        # ahead of it, whose seq is then its low 32 bits (restore_column): only such a
        # slot can be above the limit, found without an int per slot.
        for run in runs:
            if run.count and h.seq < 1 << 32 and _u32_above(run.data, 24, rs, limit):
                s32 = [struct.unpack_from("<I", run.data, k * rs + 24)[0]
                       for k in range(run.count)]
                for k in range(run.count):
                    if run.kind[k] and s32[k] > limit:
                        _reject(ring, run, k, "seq above the header's counter")
        return
    seqs, parts = [], []            # parts: (run, slot indexes kept, offset in seqs)
    for run in runs:
        if not run.count:
            continue
        s32 = memoryview(run.data).cast("I")[6::rs // 4].tolist() if LITTLE_HOST else \
            [struct.unpack_from("<I", run.data, k * rs + 24)[0] for k in range(run.count)]
        low = h.seq & M32
        top = max(s32)
        if top <= low:               # no 2^32 wrap in the run: order and bound of s32 hold
            col = s32 if h.seq == low else list(map(add, s32, repeat(h.seq - low)))
            top += h.seq - low
        else:
            col = restore_column(h.seq, s32)
            top = max(col)
        if top > limit:
            for k in range(run.count):
                if run.kind[k] and col[k] > limit:
                    _reject(ring, run, k, "seq above the header's counter")
        idx = range(run.count)
        if run.kind.count(0):
            keep = run.kind.translate(IS_ONE)
            idx, col = list(compress(idx, keep)), list(compress(col, keep))
        parts.append((run, idx, len(seqs)))
        seqs.extend(col)
    if exact and len(seqs) > 2 and not all(map(le, seqs, islice(seqs, 1, None))):
        bad = [i for i in range(len(seqs))
               if (i and seqs[i - 1] > seqs[i] and (i + 1 == len(seqs) or
                                                    seqs[i + 1] >= seqs[i - 1])) or
               (i + 1 < len(seqs) and seqs[i] > seqs[i + 1] and (
                   i == 0 or seqs[i - 1] <= seqs[i + 1]))]
        offsets = [p[2] for p in parts]
        for i in bad:
            run, idx, off = parts[bisect_right(offsets, i) - 1]
            k = idx[i - off]
            if i == 0 and run.ops[k] == AUX and seqs[0] == seqs[-1]:
                continue     # an in-flight pair's AUX in the oldest slot (module docstring)
            _reject(ring, run, k, "seq out of order in its thread's window")


_GT = [bytes(1 if b > t else 0 for b in range(256)) for t in range(256)]
_EQ = [bytes(1 if b == t else 0 for b in range(256)) for t in range(256)]


def _u32_above(data, off, rs, limit) -> bool:
    """Whether the little-endian uint32 field at `off` of some record in `data` is above
    `limit`: compared byte by byte from the most significant, each lane of a big int one
    record (translate and bit operations, no int per record)."""
    if limit >= M32:
        return False
    if limit < 0:
        return bool(data)
    ints = int.from_bytes
    above = 0
    for k in range(4):                  # least significant byte first
        col = data[off + k::rs]
        t = limit >> (8 * k) & 0xFF
        gt = ints(col.translate(_GT[t]), "little")
        if k == 0:
            above = gt
        else:
            above = gt | ints(col.translate(_EQ[t]), "little") & above
    return above != 0


def note_suspects(ring, t, run, base, rs):
    """Records the obj field of a run's torn or corrupt slots in ring.suspects (a torn
    slot lost its commit word, not its object: that object's history is incomplete). The
    oldest slot of a busy thread's full window is the one its writer was overwriting when
    the process stopped: counted in ring.torn_oldest, not a suspect (its old record was
    about to go, like an overwritten one)."""
    objs = memoryview(run.data).cast("Q")[0::rs // 8] if LITTLE_HOST else \
        obj_column(run.data, rs)
    i = run.kind.find(0)
    while i != -1 and len(ring.suspects) < MAX_SUSPECTS:
        if run.pos0 + i == base and t.busy == 1 and t.head >= ring.header.capacity:
            ring.torn_oldest += 1
        elif objs[i]:
            ring.suspects.add(objs[i])
        i = run.kind.find(0, i + 1)


MAX_HEAD = 1 << 56         # no writer gets near: centuries of records at 1 ns each


def implausible_descriptor(h, t, spans, exact=True):
    """(reason, text) when descriptor `t` cannot be what a writer left (a head no counter
    allows, a ring overlapping one already read), else None; an accepted ring is added to
    `spans`. Every record takes a seq from the header's counter and at most one AUX shares
    it, so with one writer (`exact`) head <= 2 x (seq + slack). Racing writers push the
    counter back below what they wrote, so with several only an absurd head is refused."""
    if t.head > MAX_HEAD or exact and t.head > 2 * (h.seq + seq_slack(h)):
        return ("descriptor head above the header's counter",
                "head %d, but the header's counter is %d" % (t.head, h.seq))
    size = h.capacity * h.record_size
    if t.ring % 8 or t.ring + size > 1 << 64:
        return ("descriptor ring address impossible", "ring address %#x" % t.ring)
    for start, end, i in spans:
        if t.ring < end and start < t.ring + size:
            return ("descriptor aliasing another's ring",
                    "its ring at %#x overlaps thread %d's at %#x" % (t.ring, i, start))
    if t.head:
        spans.append((t.ring, t.ring + size, t.index))
    return None
