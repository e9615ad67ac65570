"""The Python context of each ring record: with PYREF_PYCONTEXT=1 the shim writes a PYCTX
AUX record (the innermost Python frame's code object and instruction offset) attached to
a record whenever that context changed on its thread (docs/ring-format.md, "Python
context"). A PYCTX gives the context of its record and of every later record of the same
thread up to the next PYCTX; an unattached one (its record overwritten) of the records
after it. This module finds, for any record of a decoded ring, the PYCTX in force; the
code object becomes `file.py:line` through reader/pyframes.py (gdb-free: any reader).
"""
from __future__ import annotations

from bisect import bisect_right

AUX_PYCTX = 0x10   # AUX kind: obj = code object (0: no Python frame), refcnt = byte offset
HOOK_PYCTX = 0x4   # header `hooks` bit: PYCTX records are written


def recorded(ring) -> bool:
    """True when the ring's writer records PYCTX (PYREF_PYCONTEXT=1)."""
    return bool(ring.header.hooks & HOOK_PYCTX)


class Contexts:
    """The PYCTX records of one decoded ring (decode.Ring), per thread in position order.
    Built from the full decode once; `of(record)` is then a bisection."""

    def __init__(self, ring):
        per_thread = {}
        for r in ring.records:
            if r.op_name == "AUX":
                if r.site == AUX_PYCTX:           # unattached: for the records after it
                    per_thread.setdefault(r.thread, []).append((r.pos, r.obj, r.refcnt))
                continue
            for a in r.aux:
                if a.site == AUX_PYCTX:           # attached: its record's, and later ones
                    per_thread.setdefault(r.thread, []).append((r.pos, a.obj, a.refcnt))
        self._keys, self._values = {}, {}
        for thread, entries in per_thread.items():
            entries.sort()
            self._keys[thread] = [pos for pos, _, _ in entries]
            self._values[thread] = [(code, offset) for _, code, offset in entries]

    def of(self, record):
        """(code object address, byte offset) of the Python frame that was running when
        `record` was written; (0, offset) when its thread had no Python frame; None when
        no PYCTX of its thread precedes it in the ring (a C thread, or the ring wrapped
        past it)."""
        keys = self._keys.get(record.thread)
        if not keys:
            return None
        i = bisect_right(keys, record.pos) - 1
        return self._values[record.thread][i] if i >= 0 else None

    def __len__(self):
        return sum(len(k) for k in self._keys.values())
