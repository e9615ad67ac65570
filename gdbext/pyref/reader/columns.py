"""Byte-level columns of a run of ring slots (docs/ring-format.md, "Records"): the obj
field and the seq restored to 64 bits, at C speed (memoryview casts and map chains, no
Python-level call per slot). Shared by the decoder and its plausibility checks."""
from __future__ import annotations

import struct
import sys
from itertools import repeat
from operator import add, and_, sub

from pyref.reader.ringformat import restore_seq

M32 = 0xFFFFFFFF
LITTLE_HOST = sys.byteorder == "little"
IS_ONE = bytes([0, 1] + [0] * 254)          # translate table: slot kind 1 (decoded) -> 1


def restore_column(head_seq: int, s32: list) -> list:
    """restore_seq over a list at C speed (map chains, no Python-level call per item)."""
    if not s32:
        return []
    high, low = head_seq & ~M32, head_seq & M32
    if max(s32) <= low:                   # no record from before the last 2^32 wrap
        return s32 if not high else list(map(add, s32, repeat(high)))
    out = list(map(sub, repeat(head_seq), map(and_, map(sub, repeat(head_seq), s32),
                                              repeat(M32))))
    if head_seq < (1 << 32) and min(out) < 0:
        out = [restore_seq(head_seq, s) for s in s32]
    return out


def obj_column(data, rs):
    """The obj field of each record in `data`, as a list of ints."""
    if LITTLE_HOST:
        return memoryview(data).cast("Q")[0::rs // 8].tolist()
    return [v for v, in struct.iter_unpack("<Q%dx" % (rs - 8), data)]
