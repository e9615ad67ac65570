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
from itertools import accumulate, compress
from operator import mul

from pyref.reader import decode
from pyref.reader.columns import IS_ONE, LITTLE_HOST, M32, restore_column
from pyref.reader.ringformat import DEALLOC, restore_seq

_ZERO8 = bytes(8)

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


def _merge_key_at(ring, tw, keys, i, run, j):
    """Ring.merge_key of the record in slot j of run i of window tw (`keys`: the window's
    _window_keys), without its Record."""
    if keys is not None:
        return keys[i][j]
    return restore_seq(ring.header.seq, int.from_bytes(
        run.data[j * tw.rs + 24:j * tw.rs + 28], "little"))


def newest_traced_deallocs(ring):
    """The obj field of every decoded DEALLOC record with a site (written by traced code),
    newest first: `[r.obj for r in reversed(ring.records) if r.op_name == "DEALLOC" and
    r.site]` without a Record per slot (a DEALLOC is never an attached AUX). Found with
    bytes.find on each run's op bytes; the site field read for those slots only."""
    found = []
    head = ring.header.seq
    for w, tw in enumerate(ring._windows):
        rs = tw.rs
        keys = decode._window_keys(tw, head)
        for i, run in enumerate(tw.runs):
            ops, kind, data = run.ops, run.kind, run.data
            j = ops.find(DEALLOC)
            while j != -1:
                if kind[j] == 1 and data[j * rs + 8:j * rs + 16] != _ZERO8:
                    found.append((_merge_key_at(ring, tw, keys, i, run, j), w,
                                  run.pos0 + j,
                                  int.from_bytes(data[j * rs:j * rs + 8], "little")))
                j = ops.find(DEALLOC, j + 1)
    # Ring.records: windows, then positions, sorted stably by merge key; reversed
    found.sort(reverse=True)
    return [obj for _, _, _, obj in found]


def _listed_lanes(tw, run):
    """Lanes (one byte a slot) of the slots of a run that Ring.records lists: decoded,
    less the AUX records attached to a record before them (the lane test where the record
    is the slot before, decode._aux_parent for the others: chains, a run's first slot)."""
    n, rs = run.count, tw.rs
    keep = _lanes(run.kind.translate(IS_ONE))
    keep &= ~decode._attached_lanes(run, rs, keep)
    aux = _lanes(run.ops.translate(decode._IS_AUX)) & keep
    if aux:
        mask = aux.to_bytes(n, "little")
        j = mask.find(1)
        while j != -1:
            if decode._aux_parent(tw, run, j):
                keep &= ~(0xFF << 8 * j)
            j = mask.find(1, j + 1)
    return keep


def sites_in_order(ring):
    """The distinct nonzero site fields of the records Ring.records lists, in the order
    of their first record there (the merged order): what a walk of `ring.records` meets,
    without a Record per slot. Each run's first slot of each site is found at C speed (a
    dict built from the reversed column); merge keys are computed for those slots only."""
    head = ring.header.seq
    first = {}                                   # site -> (merge key, window, pos)
    for w, tw in enumerate(ring._windows):
        rs = tw.rs
        keys = decode._window_keys(tw, head)
        mine = {}
        for i, run in enumerate(tw.runs):
            n = run.count
            if not n:
                continue
            keep = _listed_lanes(tw, run)
            if not keep:
                continue
            col = decode._gather(run.data, 8, 8, rs, "Q")
            if keep == _lanes(b"\x01" * n):          # every slot listed
                at = dict(zip(col[::-1], range(n - 1, -1, -1)))
            else:
                mask = keep.to_bytes(n, "little")
                idx = list(compress(range(n), mask))
                at = dict(zip(reversed(list(compress(col, mask))), reversed(idx)))
            for site, j in at.items():
                if site and site not in mine:
                    mine[site] = (_merge_key_at(ring, tw, keys, i, run, j), w,
                                  run.pos0 + j)
        for site, where in mine.items():
            if site not in first or where < first[site]:
                first[site] = where
    return sorted(first, key=first.__getitem__)


__all__ = ["leak_columns", "following_sites", "newest_traced_deallocs", "sites_in_order",
           "IS_ONE"]
