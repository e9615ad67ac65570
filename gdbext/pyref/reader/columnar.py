"""Compact columns of a decoded ring (decode.Ring) for whole-ring passes: the raw fields of
each readable run as memoryviews over gathered bytes and one op byte a slot, never a list
with an int object per record (Ring.slot_columns gives lists: 40 bytes a field a record,
most of `pyref leaks`' memory on a 4 M-record ring). Nothing here knows about GDB.

Built on the decoder's runs (decode._ThreadWindow, decode._Run) and its gather helpers, so
it reads whatever record layout decode.py reads.
"""
from __future__ import annotations

from array import array
from bisect import bisect_right
from itertools import accumulate
from operator import mul

from pyref.reader import decode
from pyref.reader.columns import IS_ONE, LITTLE_HOST, M32, restore_column

_KEEP_FF = bytes([0, 0xFF] + [0] * 254)      # translate: slot kind 1 (decoded) -> 0xFF
_NONZERO_FF = bytes([0] + [0xFF] * 255)


def _lanes(b) -> int:
    return int.from_bytes(b, "little")


def _seq_keys(ring, tw, i, run):
    """The merge key of each slot of run `i` of window `tw` (its restored seq, or where the
    thread's seqs go back its merge key) as a sequence of ints that never goes down (a
    torn slot takes the key before it): the commit words' strided memoryview itself
    while the header's counter is below 2^32 (restoring changes nothing then)."""
    keys = decode._window_keys(tw, ring.header.seq)
    if keys is not None:
        return keys[i]                   # decode's cached list (a running maximum)
    head = ring.header.seq
    col = memoryview(run.data).cast("I")[6::tw.rs // 4]
    if head > M32:
        col = restore_column(head, col.tolist())
    if run.kind.count(1) != run.count:
        col = array("q", accumulate(map(mul, col, map(bool, run.kind.translate(IS_ONE))),
                                    max))
    return col


def leak_columns(ring, select=None):
    """[(obj, site, refcnt, opbyte, seq)] one tuple per readable run of each thread window
    of `ring`, in thread then position order: Ring.slot_columns(select)'s fields, but for
    every slot of the run, each column a sequence of ints (memoryviews over the ring's
    bytes, no copy, or an array) and `opbyte` bytes in which the slots slot_columns
    leaves out (torn, corrupt, or whose op byte `select` maps to 0) have op byte 0. A
    pass that gives op 0 no effect (leaks' RAW_EFFECT) reads the same records as from
    slot_columns, in the same order. (On a big-endian host: slot_columns' lists.)"""
    if not LITTLE_HOST:
        return ring.slot_columns(select)
    out = []
    for tw in ring._windows:
        rs = tw.rs
        for i, run in enumerate(tw.runs):
            n, data = run.count, run.data
            if not n:
                continue
            opcol = data[28::rs]
            keep = _lanes(run.kind.translate(_KEEP_FF))
            if select is not None:
                keep &= _lanes(opcol.translate(select).translate(_NONZERO_FF))
            if not keep:
                continue
            ops = (_lanes(opcol) & keep).to_bytes(n, "little")
            u64 = memoryview(data).cast("Q")
            out.append((decode._obj_array(run, rs), u64[1::rs // 8],
                        memoryview(data).cast("q")[2::rs // 8], ops,
                        _seq_keys(ring, tw, i, run)))
    return out


def following_sites(ring, rec, n):
    """The site fields of the (at most `n`) decoded records the thread that wrote `rec`
    wrote after it in the same readable run (what a column of Ring.slot_columns() holds
    after it), or None when `rec`'s slot is not found in `ring`."""
    tw = ring._window_of.get(rec.thread)
    if tw is None:
        return None
    k = bisect_right(tw.starts, rec.pos) - 1
    if k < 0:
        return None
    run = tw.runs[k]
    idx = rec.pos - run.pos0
    if not 0 <= idx < run.count or run.kind[idx] != 1 or \
            decode._obj_array(run, tw.rs)[idx] != rec.obj:
        return None
    rs, out = tw.rs, []
    j = run.kind.find(1, idx + 1)
    while j != -1 and len(out) < n:
        out.append(int.from_bytes(run.data[j * rs + 8:j * rs + 16], "little"))
        j = run.kind.find(1, j + 1)
    return out


__all__ = ["leak_columns", "following_sites", "IS_ONE"]
