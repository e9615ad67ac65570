"""Decoder of pyref ring sets (format versions 1 and 2, docs/ring-format.md): bytes in,
records out. The format itself (constants, header, thread table, Record, the origin word) is
reader/ringformat.py.

Nothing here knows about GDB. Every function that touches the target takes a
`read(addr, size) -> bytes-like` callable (pyref/errors.py: the reader contract); GDB
commands pass inferior/target.py's read, `corefile.Core.read` is one for a core file,
tests pass one over a dict.

Speed (bench/RESULTS.md): each thread ring is read in bulk (chunks of at most 1 MiB) and
classified with memoryview casts and C-level map/translate, never a record at a time through
Python. `decode_ring` keeps the raw bytes and counts; Record objects are built only when
`Ring.records` is first used, or only for one object by `Ring.records_for(obj)`, which
searches the raw bytes for the object's address, or for a set of objects by
`Ring.records_of(objs)`; `Ring.slot_columns()` gives whole-ring passes the raw fields as
columns instead.

Validity (format spec, "Reading"). A slot in a thread's window is
- torn: `commit == 0`;
- corrupt (counted as torn), when any of these cheap checks fails:
  * op (bits 0-5) is 0, i.e. outside 1..63;
  * INCREF: delta +1 without IMMORTAL, or delta 0 with IMMORTAL (what the shim writes);
  * DECREF: delta -1 without IMMORTAL, or delta 0 with IMMORTAL;
  * DEALLOC: delta -1, refcnt (before) == 1, IMMORTAL clear;
  * NEW, BORROW, STEAL, FREE, AUX, FORK, MARK: delta 0 (the spec's table); in format 2
    BORROW and STEAL any delta (it holds their origin code's low byte);
  * INCREF, DECREF, DEALLOC: obj != 0 (the shim records only non-NULL objects);
- torn too (format 2): a BORROW or STEAL whose origin code is 0 without the AUX ORIGIN
  record that must follow it (same thread, next position, same seq and tid): its count
  was never written whole (a write cut short);
- otherwise decoded. An op in 11..63 decodes as `op N` with any delta.

Format 2 origins (ringformat.origin_fields): a BORROW or STEAL decodes to the Record format
1 gives for it, `refcnt` the count, `delta` 0, and its container (when the call named one)
as an AUX CONTAINER record first in `aux` (obj the container, refcnt the index, `pos` the
origin's own: made by the reader, not a slot of the ring); the AUX ORIGIN that held a count
or index too big for the code is folded in and not in `aux`. Ring.slot_columns() and the
raw passes see the origin word in `refcnt` (only NEW's count is read there).
Then, across slots (counted in `Ring.rejected` by reason, not decoded: docs/reliability.md,
"Plausibility checks"): a seq above the header's counter, a seq out of order in its
thread's window (one writing thread only), the counter far above the newest record; a
descriptor whose head no counter allows or whose ring overlaps another's is not read
(`Ring.rejected_descriptors`). `Ring.suspects` holds the obj field of torn and rejected
slots: those objects' histories are incomplete (reader/evidence.py).

AUX records carry the seq of the record they belong to. An AUX is *attached* when the slots
before it (same thread, consecutive positions) are AUX records back to a decoded non-AUX
record with the same low 32 bits of seq and the same tid (registration serial): it then
appears in that record's `aux` tuple (empty for most records) and not in `Ring.records`.
An AUX that cannot be attached (its record was overwritten, torn or unreadable) stays in
`Ring.records` as a record of its own, op_name 'AUX'. Both kinds count as decoded.

Other notes go to `Ring.errors`, one line each, without failing the decode: an unreadable
(part of a) thread ring, an unreadable tail of the thread table, a descriptor with records
but no ring, a mask other than capacity-1, a `seqp` not pointing at the header's `seq` (a
stale or copied header), and why nothing decoded when nothing did.

In-flight records (spec, "Write protocol"): when a thread is `busy`, its ring is full, and
the slot of position `head` (the oldest position of the window) holds a record newer than
the one at `head - 1` (higher seq, or an AUX with the same seq), the writer stopped between
its commit and its `head` update. The window is then taken as positions
`[head - capacity + 1, head]` and that record decodes at position `head`. When the writer
was inside a pair (an origin and its AUX written as one sequence) with both committed, the
AUX sits in the slot after it, which the shifted window reads as its oldest position: it
decodes there unattached, fields intact (likewise in a ring one record short of full, whose
window starts at the slot the AUX took). (Shifting by two for it would also move the oldest
record and its AUX whenever racing threads make seqs go back: the same pattern.) Counters keep
`written == decoded + overwritten + torn + unreadable` either way.

Sequence numbers are restored with the spec's `H - ((H - s) mod 2^32)`, except where that is
negative (a record ahead of the header's `seq`, possible only when threads race on the
counter while `seq < 2^32`): then `H + ((s - H) mod 2^32)`.

Order (spec, "Order"): within a thread the ring position is the order, always; the threads'
records are merged by seq without ever reordering one thread's (Ring.merge_key): the shared
counter is relaxed, and without the GIL a thread's consecutive records can get equal or
decreasing seqs, which a plain sort by seq would swap (INCREF DECREF INCREF DECREF read as
INCREF INCREF DECREF DECREF, a false over-release).
"""
from __future__ import annotations

import gc
import struct
from bisect import bisect_left, bisect_right
from itertools import accumulate, chain, compress, islice, repeat
from operator import itemgetter, le, mul

from pyref.errors import READ_ERRORS, RingError
from pyref.reader.bulk import CHUNK, first_line, read_pieces
from pyref.reader.columns import IS_ONE as _IS_ONE, LITTLE_HOST as _LITTLE_HOST
from pyref.reader.columns import obj_column as _obj_column, restore_column as _restore_column
from pyref.reader.plausibility import (MAX_HEAD as _MAX_HEAD, implausible_descriptor as
                                       _implausible_descriptor, note_suspects as
                                       _note_suspects, reject_implausible as
                                       _reject_implausible, seq_slack)
from pyref.reader.ringformat import (AUX, AUX_CONTAINER, AUX_ORIGIN, BORROW, DEALLOC,
                                     DECREF, FREE, HEADER_FIXED, IMMORTAL, INCREF, MARK, NEW,
                                     OP_MASK, RECORD_SIZE, SHARED, STEAL, Header, Record,
                                     Thread, mark_label, origin_fields, parse_header,
                                     parse_threads, restore_seq)

_REC = struct.Struct("<QQqIBbH")           # obj site refcnt seq op delta tid
_SEQ_TID = struct.Struct("<I2xH")           # commit word: seq and tid

# ---------------------------------------------------------------------------------------
# Slot validity
# ---------------------------------------------------------------------------------------
_new_tuple = tuple.__new__
_seq_of = itemgetter(7)


def _plausible(opb: int, d: int) -> bool:
    op, imm = opb & OP_MASK, opb & IMMORTAL
    if op == 0:
        return False
    if op == INCREF:
        return d == 0 if imm else d == 1
    if op == DECREF:
        return d == 0 if imm else d == -1
    if op == DEALLOC:
        return d == -1 and not imm
    if op <= MARK:
        return d == 0
    return True


def _plausible2(opb: int, d: int) -> bool:
    """_plausible for format 2: a BORROW's or STEAL's delta byte is part of its origin."""
    return opb & OP_MASK in (BORROW, STEAL) or _plausible(opb, d)


# (op byte | delta byte << 8) -> 1 if the pair passes the checks that need no other field,
# by format version.
_VALID_OF = {v: bytes(1 if f(i & 0xFF, ((i >> 8) ^ 0x80) - 0x80) else 0 for i in range(65536))
             for v, f in ((1, _plausible), (2, _plausible2))}
_VALID = _VALID_OF[1]
_MASK_OP = bytes(i & OP_MASK for i in range(256))
_MASK_FLAGS = bytes(i & (SHARED | IMMORTAL) for i in range(256))
_IS_DEALLOC = bytes(1 if i == DEALLOC else 0 for i in range(256))
_ONE_EQ = (1).__eq__
_ZERO8 = bytes(8)


def _columns(data, rs: int):
    """Field columns of the records in `data` (a multiple of rs bytes): lists obj, site,
    refcnt, delta, seq32, tid and bytes op (masked), flags."""
    if _LITTLE_HOST:
        mv = memoryview(data)
        q = rs // 8
        u64 = mv.cast("Q")
        opcol = mv[28::rs].tobytes()
        return (u64[0::q].tolist(), u64[1::q].tolist(), mv.cast("q")[2::q].tolist(),
                mv.cast("b")[29::rs].tolist(), opcol.translate(_MASK_OP),
                opcol.translate(_MASK_FLAGS), mv.cast("I")[6::rs // 4].tolist(),
                mv.cast("H")[15::rs // 2].tolist())
    return _columns_portable(data, rs)


def _columns_portable(data, rs: int):
    """_columns for any host byte order (struct, slower)."""
    fmt = struct.Struct("<QQqIBbH%dx" % (rs - RECORD_SIZE))
    rows = list(fmt.iter_unpack(data)) if data else []
    if not rows:
        return [], [], [], [], b"", b"", [], []
    obj, site, refcnt, s32, opb, delta, tid = map(list, zip(*rows))
    opcol = bytes(opb)
    return (obj, site, refcnt, delta, opcol.translate(_MASK_OP),
            opcol.translate(_MASK_FLAGS), s32, tid)


class _Run:
    """Consecutive readable positions of one thread's window: `data` holds `count` raw
    records for positions pos0.., `kind` one byte each: 0 torn/corrupt, 1 record,
    2 AUX attached to an earlier record."""
    __slots__ = ("pos0", "count", "data", "kind", "ops", "objs", "att")

    def __init__(self, pos0, data, rs):
        self.pos0 = pos0
        self.data = data
        self.count = len(data) // rs
        self.objs = None         # _obj_array: not built yet
        self.att = None          # _attached_mask: not built yet


class _ThreadWindow:
    """What decode_ring keeps of one thread: its runs and the AUX attachments."""
    __slots__ = ("index", "runs", "starts", "aux", "parents", "rs", "attached", "keys", "v2")

    def __init__(self, index, runs, rs, v2=False):
        self.v2 = v2             # format 2: BORROW/STEAL carry their origin word
        self.index = index
        self.runs = runs
        self.starts = [r.pos0 for r in runs]
        self.aux = {}            # parent position -> [AUX positions]
        self.parents = []        # sorted(aux)
        self.rs = rs
        self.attached = False    # _attach_aux has run (only the full decode needs it)
        self.keys = None         # _window_keys: not computed yet

    def locate(self, pos):
        """(run, index) of a position, or (None, 0) if not in a readable run."""
        i = bisect_right(self.starts, pos) - 1
        if i >= 0:
            run = self.runs[i]
            if pos < run.pos0 + run.count:
                return run, pos - run.pos0
        return None, 0


def _want_delta(b: int, v2: bool = False):
    """(delta byte the op byte `b` requires, any delta valid, no delta valid): the checks
    of _plausible (_plausible2 when `v2`) as three byte tables, so that a whole run is
    checked with translate and big-int bit operations (C speed, no Python call per slot)."""
    op, imm = b & OP_MASK, b & IMMORTAL
    if v2 and op in (BORROW, STEAL):
        return 0, 0xFF, 0
    if op == 0 or (op == DEALLOC and imm):
        return 0, 0, 0xFF
    if op == INCREF:
        return (0 if imm else 1), 0, 0
    if op in (DECREF, DEALLOC):
        return (0 if imm else 0xFF), 0, 0
    if op <= MARK:
        return 0, 0, 0
    return 0, 0xFF, 0


_DELTA_TABLES = {v: tuple(bytes(t) for t in zip(*(_want_delta(b, v == 2) for b in range(256))))
                 for v in (1, 2)}
_ZERO_IS_ONE = bytes([1] + [0] * 255)
_NONZERO_FF = bytes([0] + [0xFF] * 255)
_ZERO_FF = bytes([0xFF] + [0] * 255)
_DEALLOC_FF = bytes(0xFF if i == DEALLOC else 0 for i in range(256))
_REFOP_FF = bytes(0xFF if i in (INCREF, DECREF, DEALLOC) else 0 for i in range(256))


def _field_or(data, off, size, rs):
    """The OR of the bytes of an unsigned little-endian field of each record, as an int
    whose byte k is slot k's: zero exactly where the field is 0."""
    acc = 0
    for k in range(off, off + size):
        acc |= int.from_bytes(data[k::rs], "little")
    return acc


def _classify(run: _Run, rs: int, v2: bool = False):
    """Sets run.kind and run.ops: the validity checks of the module docstring, as
    strided byte slices, translate and big-int bit operations over the whole run (one
    byte per slot; byte-wise, so the host's byte order does not matter). `v2`: the
    format-2 tables (a BORROW's or STEAL's delta byte is free); _check_origins follows."""
    data, n = run.data, run.count
    opcol = data[28::rs]
    ops = opcol.translate(_MASK_OP)
    ints = int.from_bytes
    want, anyt, never = _DELTA_TABLES[2 if v2 else 1]
    anyd = ints(opcol.translate(anyt), "little")
    bad = ((ints(opcol.translate(want), "little") ^ ints(data[29::rs], "little"))
           | anyd) ^ anyd
    bad |= ints(opcol.translate(never), "little")
    if DEALLOC in ops:
        # DEALLOC must have refcnt (before) 1: its low byte 1, the other seven 0.
        ref = ints(data[16::rs], "little") ^ ints(bytes([1]) * n, "little")
        ref |= _field_or(data, 17, 7, rs)
        bad |= ints(ref.to_bytes(n, "little").translate(_NONZERO_FF), "little") & \
            ints(ops.translate(_DEALLOC_FF), "little")
    # INCREF, DECREF, DEALLOC of a NULL object.
    null = _field_or(data, 0, 8, rs).to_bytes(n, "little").translate(_ZERO_FF)
    bad |= ints(null, "little") & ints(ops.translate(_REFOP_FF), "little")
    run.kind = bytearray(bad.to_bytes(n, "little").translate(_ZERO_IS_ONE))
    run.ops = ops


_ORIGIN_OPS = bytes(1 if i in (BORROW, STEAL) else 0 for i in range(256))   # masked op
_LOW3_ZERO = bytes(1 if not i & 7 else 0 for i in range(256))


def _code_zero_lanes(run, rs):
    """Lanes (one byte a slot, 1 set) of the decoded format-2 BORROW/STEAL slots of a run
    whose origin code is 0 (bytes 22-23 of the origin word, its low 3 bits and the delta
    byte all zero): those whose count and index an AUX ORIGIN holds."""
    data = run.data
    lanes = _lanes(run.ops.translate(_ORIGIN_OPS)) & _lanes(run.kind.translate(_IS_ONE))
    if lanes:
        lanes &= _lanes(data[22::rs].translate(_ZERO_IS_ONE)) & \
            _lanes(data[23::rs].translate(_ZERO_IS_ONE)) & \
            _lanes(data[16::rs].translate(_LOW3_ZERO)) & \
            _lanes(data[29::rs].translate(_ZERO_IS_ONE))
    return lanes


def _check_origins(tw):
    """Format 2: marks torn (kind 0) each decoded BORROW/STEAL with origin code 0 whose next
    position is not a decoded AUX ORIGIN with the same seq and tid (the pair write was cut
    short: the count was never written whole). Returns (marked torn, kept): the kept ones'
    AUX ORIGIN is folded into their Record (_as_origin). (0, 0) for format 1."""
    torn = kept = 0
    if not tw.v2:
        return torn, kept
    rs = tw.rs
    for run in tw.runs:
        n = run.count
        lanes = _code_zero_lanes(run, rs) if n else 0
        for i in compress(range(n), lanes.to_bytes(n, "little")) if lanes else ():
            r, j = (run, i + 1) if i + 1 < n else tw.locate(run.pos0 + i + 1)
            if r is None or r.kind[j] != 1 or r.ops[j] != AUX or \
                    struct.unpack_from("<Q", r.data, j * rs + 8)[0] != AUX_ORIGIN or \
                    _SEQ_TID.unpack_from(r.data, j * rs + 24) != \
                    _SEQ_TID.unpack_from(run.data, i * rs + 24):
                run.kind[i] = 0
                torn += 1
            else:
                kept += 1
    return torn, kept


def _as_origin(rec):
    """A format-2 BORROW/STEAL Record in format 1's shape (module docstring): the count in
    `refcnt`, delta 0, the container as an AUX CONTAINER first in `aux`, the AUX ORIGIN
    folded in. Its AUX ORIGIN is attached (_check_origins made sure) when the code is 0."""
    container, count, index = origin_fields(rec[2], rec[3])
    aux = rec[11]
    if count is None:
        o = next((a for a in aux if a[1] == AUX_ORIGIN), None)
        if o is None:            # not reached: _check_origins marks such a slot torn
            return rec
        count, index = o[2], o[0] - (1 << 64) if o[0] >> 63 else o[0]
        k = aux.index(o)
        aux = aux[:k] + aux[k + 1:]
    if container and not any(a[1] == AUX_CONTAINER for a in aux):
        aux = (_new_tuple(Record, (container, AUX_CONTAINER, index, 0, AUX, 0, rec[6],
                                   rec[7], rec[8], rec[9], rec[10], ())),) + aux
    return _new_tuple(Record, rec[:2] + (count, 0) + rec[4:11] + (aux,))


def _seq32_at(run, idx, rs):
    return struct.unpack_from("<I", run.data, idx * rs + 24)[0]


def _attach_aux(tw: _ThreadWindow):
    """Marks attachable AUX records (kind 2) and records them in tw.aux. AUX records are
    met in position order, so each looks back one slot only: a preceding attached AUX
    with the same seq hands over its parent (linear even for a ring full of AUX)."""
    rs = tw.rs
    parent_of = {}               # attached AUX position -> its record's position
    for run in tw.runs:
        ops, kind = run.ops, run.kind
        i = ops.find(AUX)
        while i != -1:
            if kind[i] == 1:
                pos = run.pos0 + i
                prun, pi = (run, i - 1) if i else tw.locate(pos - 1)
                parent = None
                if prun is not None and prun.kind[pi] != 0 and \
                        _SEQ_TID.unpack_from(prun.data, pi * rs + 24) == \
                        _SEQ_TID.unpack_from(run.data, i * rs + 24):
                    if prun.ops[pi] != AUX:
                        parent = pos - 1 if prun.kind[pi] == 1 else None
                    else:
                        parent = parent_of.get(pos - 1)
                if parent is not None:
                    kind[i] = 2
                    parent_of[pos] = parent
                    tw.aux.setdefault(parent, []).append(pos)
            i = ops.find(AUX, i + 1)
    tw.parents = sorted(tw.aux)


_MAX_AUX_CHAIN = 64


def _aux_parent(tw, run, idx):
    """True when the AUX record at (run, idx) is attached: the slots before it, back to a
    non-AUX record, are decoded and share its seq and tid (the rule _attach_aux applies to
    the whole ring, here for one slot)."""
    rs = tw.rs
    key = _SEQ_TID.unpack_from(run.data, idx * rs + 24)
    pos = run.pos0 + idx - 1
    for _ in range(_MAX_AUX_CHAIN):
        r, i = tw.locate(pos)
        if r is None or r.kind[i] == 0 or _SEQ_TID.unpack_from(r.data, i * rs + 24) != key:
            return False
        if r.ops[i] != AUX:
            return True
        pos -= 1
    return False


def _record_with_local_aux(tw, run, idx, head_seq):
    """The Record in one slot with its AUX records found by looking at the slots after it:
    what _record_at gives after _attach_aux, without the pass over the whole ring."""
    if tw.attached:
        return _record_at(tw, run, idx, head_seq)
    rs = tw.rs
    if idx + 1 < run.count and run.ops[idx + 1] != AUX:
        return _record_at(tw, run, idx, head_seq)      # no AUX follows (the usual case)
    key = _SEQ_TID.unpack_from(run.data, idx * rs + 24)
    aux = []
    if run.ops[idx] != AUX:
        pos = run.pos0 + idx + 1
        while len(aux) < _MAX_AUX_CHAIN:
            r, i = tw.locate(pos)
            if r is None or r.kind[i] == 0 or r.ops[i] != AUX or \
                    _SEQ_TID.unpack_from(r.data, i * rs + 24) != key:
                break
            aux.append(_record_at(tw, r, i, head_seq))
            pos += 1
    return _record_at(tw, run, idx, head_seq, tuple(aux))


def _slot_record(tw, run, k, head_seq):
    """The Record in slot k when records_for returns it (a decoded record that is not an
    AUX record attached to the record before it), else None."""
    if run.kind[k] == 1 and not (run.ops[k] == AUX and _aux_parent(tw, run, k)):
        return _record_with_local_aux(tw, run, k, head_seq)
    return None


def _seq_column(run, rs):
    """The low 32 bits of each slot's seq (its commit word), as a list of ints."""
    if _LITTLE_HOST:
        return memoryview(run.data).cast("I")[6::rs // 4].tolist()
    return [v for v, in struct.iter_unpack("<24xI%dx" % (rs - 28), run.data)]


def _window_keys(tw, head_seq):
    """The merge key of every slot of `tw`, one list per run: the highest seq of the
    thread's decoded records up to that slot; None when the thread's seqs never go back
    (the key is then the record's own seq). Computed once per window, at C speed."""
    if tw.keys is None and _rising_low(tw):
        nonempty = [r for r in tw.runs if r.count]
        first, last = nonempty[0], nonempty[-1]
        lo, hi = _seq32_at(first, 0, tw.rs), _seq32_at(last, last.count - 1, tw.rs)
        if restore_seq(head_seq, hi) - restore_seq(head_seq, lo) == hi - lo:
            tw.keys = False
    if tw.keys is None:
        raw = [_seq_column(run, tw.rs) for run in tw.runs]
        # The low 32 bits rising over the decoded slots, and no 2^32 epoch step between
        # the first and the last once restored (restore_seq adds a multiple of 2^32,
        # stepping once at most): the seqs rise, no need to restore them all.
        low = list(compress(chain.from_iterable(raw),
                            chain.from_iterable(run.kind for run in tw.runs)))
        rising = not low or (all(map(le, low, islice(low, 1, None))) and
                             restore_seq(head_seq, low[-1]) - restore_seq(head_seq, low[0])
                             == low[-1] - low[0])
        per_run = None if rising else [
            list(map(mul, _restore_column(head_seq, col), map(bool, run.kind)))
            for run, col in zip(tw.runs, raw)]
        decoded = () if per_run is None else [
            q for run, col in zip(tw.runs, per_run) for q in compress(col, run.kind)]
        if per_run is None or all(map(le, decoded, islice(decoded, 1, None))):
            tw.keys = False
        else:
            flat = list(accumulate((q for col in per_run for q in col), max))
            tw.keys, i = [], 0
            for col in per_run:
                tw.keys.append(flat[i:i + len(col)])
                i += len(col)
    return tw.keys or None


def _obj_array(run, rs):
    """The obj field of each slot of a run as a sequence of ints (a contiguous uint64
    memoryview on a little-endian host, gathered from eight strided byte slices: no int
    object kept per slot), built once per run."""
    if run.objs is None:
        if _LITTLE_HOST:
            col = bytearray(8 * run.count)
            for k in range(8):
                col[k::8] = run.data[k::rs]
            run.objs = memoryview(col).cast("Q")
        else:
            run.objs = _obj_column(run.data, rs)
    return run.objs


def _gather(data, off, size, rs, code):
    """The field of `size` bytes at `off` of each record of `data`, as a contiguous
    memoryview of format `code` (host order: little-endian hosts only), gathered with
    strided byte-slice copies."""
    n = len(data) // rs
    col = bytearray(size * n)
    for k in range(size):
        col[k::size] = data[off + k::rs]
    return memoryview(col).cast(code)


def _lanes(b: bytes) -> int:
    return int.from_bytes(b, "little")


def _op_table(pred):
    return bytes(1 if pred(i) else 0 for i in range(256))


_END_OPS = _op_table(lambda op: op in (DEALLOC, FREE))
_DEALLOC_OPS = _op_table(lambda op: op == DEALLOC)
_LENT_OPS = _op_table(lambda op: op in (BORROW, STEAL))
_USE_OPS = _op_table(lambda op: op not in (NEW, FREE, STEAL))
_UNKNOWN_OPS = _op_table(lambda op: op > MARK)
_MORTAL = _op_table(lambda b: not b & IMMORTAL)
_NEGATIVE = _op_table(lambda b: b >= 0x80)
_NONZERO_1 = bytes([0] + [1] * 255)


_IS_AUX = _op_table(lambda op: op == AUX)


def _attached_lanes(run, rs, keep):
    """Lanes (one byte a slot, 1 set) of the AUX slots of a run that are surely attached:
    the slot before, in the same run, is a decoded non-AUX record with the same seq and
    tid (the rule of _attach_aux; an AUX after an AUX is not counted here)."""
    n, data = run.count, run.data
    aux = _lanes(run.ops.translate(_IS_AUX)) & keep
    if not aux:
        return 0
    full = (1 << 8 * n) - 1
    differ = 0
    for j in (24, 25, 26, 27, 30, 31):          # the commit word: seq32 and tid
        c = _lanes(data[j::rs])
        differ |= c ^ (c << 8 & full)
    same = _lanes(differ.to_bytes(n, "little").translate(_ZERO_IS_ONE)) & ~1
    prev_record = (_lanes(run.kind.translate(_NONZERO_1)) &
                   ~_lanes(run.ops.translate(_IS_AUX))) << 8 & full
    return aux & same & prev_record


def _attached_mask(run, rs):
    """_attached_lanes of a run's decoded slots as bytes (1: surely attached), once."""
    if run.att is None:
        keep = _lanes(run.kind.translate(_IS_ONE))
        run.att = _attached_lanes(run, rs, keep).to_bytes(run.count, "little")
    return run.att


def _rising_low(tw) -> bool:
    """True when every slot of the window is decoded and the low 32 bits of their seqs
    never go down, tested without an int per slot: each seq in a 5-byte lane with bit 32
    set, minus the previous slot's (no borrow crosses a lane), keeps bit 32 exactly where
    it did not go down. False when it goes down or a slot is not decoded (the caller then
    looks closely)."""
    runs, rs = [r for r in tw.runs if r.count], tw.rs
    if not runs or any(r.kind.count(1) != r.count for r in runs):
        return False
    n = sum(r.count for r in runs)
    lanes = bytearray(5 * n)
    for k in range(4):
        lanes[k::5] = b"".join(r.data[24 + k::rs] for r in runs)
    prev = int.from_bytes(lanes, "little") << 40 & ((1 << 40 * n) - 1)
    lanes[4::5] = b"\x01" * n
    diff = (int.from_bytes(lanes, "little") - prev).to_bytes(5 * n, "little")
    return diff[4::5].count(1) == n


def _record_at(tw, run, idx, head_seq, aux=None):
    """The Record in one slot (kind must be nonzero), with its attached AUX records (or
    `aux`, when given), a format-2 origin in format 1's shape (_as_origin)."""
    obj, site, refcnt, s32, opb, delta, tid = _REC.unpack_from(run.data, idx * tw.rs)
    pos = run.pos0 + idx
    if aux is None:
        aux = ()
        if pos in tw.aux:
            aux = tuple(_record_at(tw, *tw.locate(p), head_seq) for p in tw.aux[pos])
    rec = _new_tuple(Record, (obj, site, refcnt, delta, opb & OP_MASK,
                              opb & (SHARED | IMMORTAL), s32, restore_seq(head_seq, s32),
                              tid, tw.index, pos, aux))
    if tw.v2 and opb & OP_MASK in (BORROW, STEAL):
        return _as_origin(rec)
    return rec


def _run_records(tw, run, head_seq):
    """The decoded non-attached records of one run, in position order, built column-wise."""
    obj, site, refcnt, delta, ops, flags, s32, tid = _columns(run.data, tw.rs)
    seq = _restore_column(head_seq, s32)
    recs = list(map(_new_tuple, repeat(Record),
                    zip(obj, site, refcnt, delta, ops, flags, s32, seq, tid,
                        repeat(tw.index), range(run.pos0, run.pos0 + run.count),
                        repeat(()))))
    if tw.parents:
        lo = bisect_left(tw.parents, run.pos0)
        hi = bisect_left(tw.parents, run.pos0 + run.count)
        for parent in tw.parents[lo:hi]:
            k = parent - run.pos0
            recs[k] = recs[k]._replace(aux=tuple(
                _record_at(tw, *tw.locate(p), head_seq) for p in tw.aux[parent]))
    if tw.v2:
        origins = _lanes(ops.translate(_ORIGIN_OPS)) & _lanes(run.kind.translate(_IS_ONE))
        if origins:
            for k in compress(range(run.count), origins.to_bytes(run.count, "little")):
                recs[k] = _as_origin(recs[k])
    if run.kind.count(1) == run.count:           # the usual case: nothing to leave out
        return recs
    return list(compress(recs, run.kind.translate(_IS_ONE)))


class _NoGC:
    """Pauses the cyclic GC while a million small objects are built: otherwise its
    generation-0 collections triple the decode time (measured)."""

    def __enter__(self):
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was:
            gc.enable()


# ---------------------------------------------------------------------------------------
# The ring set
# ---------------------------------------------------------------------------------------
class Ring:
    """One decoded ring set. Counters follow the spec ("Reading"), plus `unreadable`
    (window slots that could not be read) so that always
    written == decoded + overwritten + torn + unreadable. The decoded slots are the
    records, the AUX records attached to them, and (format 2) the `folded` AUX ORIGIN
    records whose count and index their origin's Record carries.

    `threads[i]` is descriptor i (all that could be read, used or not; Record.thread
    indexes it); `threads_seen` counts those with a ring and at least one record written.
    `first_seq`/`last_seq` are the lowest/highest seq of decoded records, taken at the
    ends of each thread's window (exact under the GIL; free-threaded races can put a few
    records out of order), or None. `errors` are one-line notes on anything that made the
    decode incomplete or looks wrong."""

    def __init__(self, addr, header, threads):
        self.addr = addr
        self.header = header
        self.threads = threads
        self.written = self.overwritten = self.torn = self.decoded = 0
        self.lost = self.in_flight = self.unreadable = self.threads_seen = 0
        self.torn_oldest = 0     # torn slots that a busy writer was overwriting (oldest)
        self.rejected = 0        # decodable slots failing the plausibility checks
        self.folded = 0          # format 2: AUX ORIGIN slots folded into their origin
        self.rejections = {}     # reason -> count (slots and descriptors)
        self.rejected_descriptors = []   # one line each
        self.writers = 0         # descriptors with a ring and records
        self.total_written = 0   # records written and dropped in all threads (seq bound)
        self.suspects = set()    # obj fields of the other torn slots
        self.first_seq = self.last_seq = None
        self.errors = []
        self._windows = []
        self._window_of = {}     # thread index -> its window
        self._records = None

    @property
    def counters(self) -> dict:
        return {k: getattr(self, k) for k in (
            "written", "decoded", "overwritten", "torn", "unreadable", "lost", "in_flight",
            "threads_seen", "first_seq", "last_seq")}

    @property
    def records(self) -> list:
        """All decoded records (attached AUX records excluded), each thread's in its
        ring's order, threads merged by seq (merge_order). Built on first use and
        cached: do not modify the list."""
        if self._records is None:
            with _NoGC():
                out = []
                for tw in self._windows:          # thread order, then position order
                    if not tw.attached:
                        _attach_aux(tw)
                        tw.attached = True
                    for run in tw.runs:
                        out.extend(_run_records(tw, run, self.header.seq))
                if any(_window_keys(tw, self.header.seq) for tw in self._windows):
                    out.sort(key=self.merge_key)  # stable, and keys rise in each thread
                else:
                    out.sort(key=_seq_of)        # stable: ties stay in (thread, pos) order
            self._records = out
        return self._records

    def records_for(self, obj: int) -> list:
        """The records of one object address, as `[r for r in records if r.obj == obj]`
        would give them, found by searching the raw ring bytes (no full decode)."""
        needle = (obj & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
        out = []
        seq = self.header.seq
        for tw in self._windows:
            rs = tw.rs
            for run in tw.runs:
                data = run.data
                i = data.find(needle)
                while i != -1:
                    if i % rs:                   # inside a record: go to the next one
                        i = data.find(needle, i - i % rs + rs)
                        continue
                    rec = _slot_record(tw, run, i // rs, seq)
                    if rec is not None:
                        out.append(rec)
                    i = data.find(needle, i + rs)
        out.sort(key=self.merge_key)
        return out

    def records_of(self, objs) -> dict:
        """{obj: records_for(obj)} for the addresses of the set `objs` that have records,
        in one pass over the raw bytes (set membership tested at C speed): for many
        objects, where records_for would search the whole ring once per object."""
        found = {}
        seq = self.header.seq
        contains = objs.__contains__
        for tw in self._windows if objs else ():
            rs = tw.rs
            for run in tw.runs:
                n = run.count
                hit = _lanes(bytes(map(contains, _obj_array(run, rs))))
                if not hit:
                    continue
                # Decoded slots of the objects, less the AUX records surely attached to
                # the record before them (lane masks: no Python step per such slot).
                hit &= _lanes(run.kind.translate(_IS_ONE)) & \
                    ~_lanes(_attached_mask(run, rs))
                for k in compress(range(n), hit.to_bytes(n, "little")):
                    rec = _slot_record(tw, run, k, seq)
                    if rec is not None:
                        found.setdefault(rec.obj, []).append(rec)
        for recs in found.values():
            recs.sort(key=self.merge_key)
        return found

    def harm_candidates(self, sane_bits: int = 40) -> set:
        """A superset of the objects whose records can show harm (a count below zero, a
        use after a lifetime ended, a borrow or steal in a lifetime a DEALLOC ended), found
        without a Record per slot, from order-free tests on the decoded slots (an AUX
        record is left out only where it is surely attached to the record before it):
        - a mortal record whose count can go below zero: before <= 0, or an unknown op;
        - a DEALLOC or FREE of the object, and a record of an op other than NEW, FREE or
          STEAL whose count before is outside (0, 2^sane_bits);
        - a DEALLOC of the object (whether a BORROW or STEAL was in its lifetime is for
          the close test: DEALLOCs are few, borrows many).
        `sane_bits` is a multiple of 8 (the count's bytes above it are tested)."""
        neg, ends, used, deallocs = set(), set(), set(), set()
        hi_byte = 16 + sane_bits // 8
        for tw in self._windows:
            rs = tw.rs
            for run in tw.runs:
                n, data, ops = run.count, run.data, run.ops
                if not n or not run.kind.count(1):
                    continue
                objs = _obj_array(run, rs)
                keep = _lanes(run.kind.translate(_IS_ONE))
                keep ^= _attached_lanes(run, rs, keep)
                opcol = data[28::rs]

                def at(lanes, into):
                    lanes &= keep
                    if not lanes:
                        return
                    mask = lanes.to_bytes(n, "little")
                    if mask.count(1) * 8 < n:       # few: find them
                        i = mask.find(1)
                        while i != -1:
                            into.add(objs[i])
                            i = mask.find(1, i + 1)
                    else:
                        into.update(compress(objs, mask))
                zero = _lanes(_field_or(data, 16, 8, rs).to_bytes(n, "little")
                              .translate(_ZERO_IS_ONE))
                nonpos = _lanes(data[23::rs].translate(_NEGATIVE)) | zero
                mortal = _lanes(opcol.translate(_MORTAL))
                big = _lanes(_field_or(data, hi_byte, 24 - hi_byte, rs)
                             .to_bytes(n, "little").translate(_NONZERO_1)) \
                    if hi_byte < 24 else 0
                unsure = 0
                if tw.v2:
                    # a format-2 origin's refcnt is its origin word: a count in the code is
                    # 1..2^18 (sane); one the AUX ORIGIN holds is not looked at here, so
                    # such a record counts as both (a superset)
                    origin = _lanes(ops.translate(_ORIGIN_OPS))
                    nonpos &= ~origin
                    big &= ~origin
                    unsure = _code_zero_lanes(run, rs)
                at((nonpos | unsure) & mortal | _lanes(ops.translate(_UNKNOWN_OPS)), neg)
                at(_lanes(ops.translate(_DEALLOC_OPS)), deallocs)
                at((big | nonpos | unsure) & _lanes(ops.translate(_USE_OPS)), used)
                end = _lanes(ops.translate(_END_OPS))
                if used and end & keep:
                    at(end, ends)
        return neg | (ends & used) | deallocs

    def merge_key(self, rec):
        """The key that orders `rec` among all records (sort by it, stably, records in
        thread then position order): its seq, or where its thread's seqs went back, the
        highest seq of that thread up to it, so that no thread's records are reordered."""
        tw = self._window_of.get(rec.thread)
        keys = _window_keys(tw, self.header.seq) if tw is not None else None
        if keys is None:
            return rec.seq
        i = bisect_right(tw.starts, rec.pos) - 1
        return keys[i][rec.pos - tw.starts[i]]

    def marks(self) -> list:
        """The MARK records (pyref_mark) as [(seq, thread, label, whole)] in ring order,
        found by searching the op bytes (no full decode); `whole` is False for a label cut
        short (ringformat.mark_label)."""
        out = []
        seq = self.header.seq
        for tw in self._windows:
            for run in tw.runs:
                i = run.ops.find(MARK)
                while i != -1:
                    if run.kind[i] == 1:
                        rec = _record_with_local_aux(tw, run, i, seq)
                        out.append((rec.seq, rec.thread, rec.pos) + mark_label(rec))
                    i = run.ops.find(MARK, i + 1)
        out.sort()
        return [(s, t, label, whole) for s, t, _, label, whole in out]

    def slot_columns(self, select=None):
        """The decoded records as columns, for passes over the whole ring that must not
        build a Record per slot: [(obj, site, refcnt, opbyte, seq)], one tuple per
        readable run of each thread window, in thread then position order (so seq rises
        within a thread). obj, site, refcnt, seq are lists of ints (seq restored, or the
        thread's merge key where its seqs go back); opbyte is the raw op byte of each
        record (flags included) as bytes. Torn and corrupt slots are left out; AUX
        records are not (their op says what they are); a format-2 BORROW's or STEAL's
        refcnt is its raw origin word (module docstring). `select`, a 256-byte table, keeps
        only the slots whose op byte maps to nonzero (the others are never gathered)."""
        out = []
        for tw in self._windows:
            rs = tw.rs
            keys = _window_keys(tw, self.header.seq)
            for i, run in enumerate(tw.runs):
                n, data = run.count, run.data
                keep = run.kind.translate(_IS_ONE)
                opcol = data[28::rs]
                if select is not None:
                    keep = (_lanes(keep) & _lanes(opcol.translate(select)
                                                  .translate(_NONZERO_1))) \
                        .to_bytes(n, "little")
                every = keep.count(1) == n
                if _LITTLE_HOST:
                    cols = [_obj_array(run, rs), _gather(data, 8, 8, rs, "Q"),
                            _gather(data, 16, 8, rs, "q")]
                    s32 = _gather(data, 24, 4, rs, "I")
                else:
                    fmt = struct.Struct("<QQqI%dx" % (rs - 28))
                    rows = list(fmt.iter_unpack(data)) if n else []
                    cols = [list(c) for c in zip(*rows)] if rows else [[], [], [], []]
                    s32 = cols.pop()
                if every:
                    cols = [c if isinstance(c, list) else c.tolist() for c in cols]
                    cols.append(opcol)
                else:
                    # the kept positions once, then only those items of each column
                    idx = list(compress(range(n), keep))
                    cols = [list(map(c.__getitem__, idx)) for c in cols]
                    cols.append(bytes(compress(opcol, keep)))
                    s32 = list(map(s32.__getitem__, idx))
                if keys is not None:   # the thread's seqs go back: its merge keys
                    col = keys[i]
                    cols.append(col if every else list(map(col.__getitem__, idx)))
                else:
                    cols.append(_restore_column(self.header.seq, s32 if isinstance(
                        s32, list) else s32.tolist()))
                out.append(tuple(cols))
        return out

    def __repr__(self):
        return "<Ring %#x: %d written, %d decoded, %d overwritten, %d torn, %d unreadable>" % (
            self.addr, self.written, self.decoded, self.overwritten, self.torn,
            self.unreadable)


def _decode_thread(ring, read, t, chunk):
    h = ring.header
    cap, rs, mask = h.capacity, h.record_size, h.capacity - 1
    head = t.head
    n = min(head, cap)
    ring.written += head
    ring.overwritten += head - n
    if n == 0:
        return
    ring.threads_seen += 1
    pieces = read_pieces(read, t.ring, n * rs, rs, chunk)
    got = sum(len(p) for _, p in pieces) // rs
    if got < n:
        ring.unreadable += n - got
        if got == 0:
            ring.errors.append("thread %d: ring at %#x unreadable (core truncated?), %d "
                               "records lost" % (t.index, t.ring, n))
        else:
            ring.errors.append("thread %d: %d of %d records of the ring at %#x unreadable "
                               "(core truncated?)" % (t.index, n - got, n, t.ring))
    if not pieces:
        return

    def commit_at(slot):
        for off, p in pieces:
            k = slot * rs - off
            if 0 <= k < len(p):
                return struct.unpack_from("<IBb", p, k + 24)
        return None

    base = head - n + _in_flight(h, t, commit_at)   # position of the window's first slot
    r0 = base & mask
    runs = []
    for off, p in pieces:
        s0, cnt = off // rs, len(p) // rs
        if s0 < r0 < s0 + cnt:                   # the window wraps inside this piece
            cut = (r0 - s0) * rs
            parts = ((s0, p[:cut]), (r0, p[cut:]))
        else:
            parts = ((s0, p),)
        for slot, d in parts:
            runs.append(_Run(base + ((slot - r0) & mask), d, rs))
    runs.sort(key=lambda r: r.pos0)
    v2 = h.version >= 2
    tw = _ThreadWindow(t.index, runs, rs, v2)
    for run in runs:
        _classify(run, rs, v2)
    torn = [run.kind.count(0) for run in runs]
    _reject_implausible(ring, runs, rs)
    if v2:               # after the plausibility checks, which may reject an AUX ORIGIN
        before = [run.kind.count(0) for run in runs]
        cut, kept = _check_origins(tw)
        ring.folded += kept
        if cut:          # the origins cut short count as torn
            torn = [t + run.kind.count(0) - b for run, t, b in zip(runs, torn, before)]
    first = last = None
    for run, bad in zip(runs, torn):
        kind = run.kind
        ring.torn += bad
        ring.decoded += run.count - kind.count(0)
        if kind.count(0):
            _note_suspects(ring, t, run, base, rs)
        if kind.count(0) == run.count:
            continue
        if first is None:
            first = (run, run.count - len(kind.lstrip(b"\0")))
        last = (run, len(kind.rstrip(b"\0")) - 1)
    if first is not None:
        lo = restore_seq(h.seq, _seq32_at(first[0], first[1], rs))
        hi = restore_seq(h.seq, _seq32_at(last[0], last[1], rs))
        lo, hi = min(lo, hi), max(lo, hi)
        ring.first_seq = lo if ring.first_seq is None else min(ring.first_seq, lo)
        ring.last_seq = hi if ring.last_seq is None else max(ring.last_seq, hi)
    ring._windows.append(tw)
    ring._window_of[tw.index] = tw


def _in_flight(h, t, commit_at) -> int:
    """1 when the slot at position `head` of thread `t` holds an in-flight record (module
    docstring): the window then ends at `head`, else 0. `commit_at(slot)` gives a slot's
    (seq32, op byte, delta) or None when unreadable."""
    cap, mask, head = h.capacity, h.capacity - 1, t.head
    if t.busy != 1 or not head >= cap >= 2:
        return 0
    newest, oldest = commit_at((head - 1) & mask), commit_at(head & mask)
    valid = _VALID_OF[2 if h.version >= 2 else 1]
    if newest and oldest and valid[newest[1] | (newest[2] & 0xFF) << 8] and \
            valid[oldest[1] | (oldest[2] & 0xFF) << 8]:
        s_new, s_old = restore_seq(h.seq, newest[0]), restore_seq(h.seq, oldest[0])
        if s_old > s_new or (s_old == s_new and oldest[1] & OP_MASK == AUX):
            return 1
    return 0


def tail(read, header: Header, thread: Thread, n: int) -> list:
    """The newest `n` records of one thread's ring, oldest first: the last `n` positions of
    the window decode_ring reads for that thread (same in-flight rule, same validity
    checks, AUX records attached to a record among them), without reading the rest of the
    ring (a watch looks at every change; a whole 64K-record ring costs ~30 ms to decode,
    this ~0.1 ms). An AUX whose record is older than those `n` stays unattached. Errors
    of `read` propagate."""
    h, t = header, thread
    cap, rs, mask = h.capacity, h.record_size, h.capacity - 1
    k = min(t.head, cap)
    if k == 0 or n <= 0 or not t.ring:
        return []

    def commit_at(slot):
        return struct.unpack("<IBb", bytes(read(t.ring + slot * rs + 24, 6)))

    m = min(n, k)
    first = t.head - m + _in_flight(h, t, commit_at)
    runs = []
    pos = first
    while pos < first + m:
        slot = pos & mask
        cnt = min(first + m - pos, cap - slot)
        runs.append(_Run(pos, bytes(read(t.ring + slot * rs, cnt * rs)), rs))
        pos += cnt
    v2 = h.version >= 2
    tw = _ThreadWindow(t.index, runs, rs, v2)
    for run in runs:
        _classify(run, rs, v2)
    _check_origins(tw)
    _attach_aux(tw)
    tw.attached = True
    out = []
    for run in runs:
        out.extend(_run_records(tw, run, h.seq))
    out.sort(key=_seq_of)
    return out


def decode_ring(read, addr: int, chunk: int = CHUNK) -> Ring:
    """Reads and decodes the ring set whose header is at `addr`. Raises RingError if the
    header is unreadable or invalid; anything wrong further on (unreadable thread rings,
    odd descriptors) is counted and described in Ring.errors."""
    try:
        first = bytes(read(addr, HEADER_FIXED))
    except READ_ERRORS as e:
        raise RingError("header at %#x unreadable: %s" % (addr, first_line(e))) from None
    header = parse_header(first, addr)
    table = b""
    for off, p in read_pieces(read, addr, header.header_size, 1, chunk):
        if off != len(table):
            break
        table += p
    if len(table) < HEADER_FIXED:
        table = first
    threads = parse_threads(table, header, partial=True)
    ring = Ring(addr, header, threads)
    if len(threads) < header.max_threads:
        ring.errors.append("thread table at %#x unreadable from descriptor %d: %d of %d "
                           "descriptors not read" % (addr, len(threads),
                                                     header.max_threads - len(threads),
                                                     header.max_threads))
    ring.lost = header.lost_nothread
    ring.writers = sum(1 for t in threads if t.ring and t.head)
    # Every seq was taken from the counter by one increment of one written (or dropped)
    # record, so no seq exceeds the records written in all: the bound that holds when
    # racing writers pushed the counter back (heads above _MAX_HEAD are corrupt, and
    # refused below).
    ring.total_written = sum(min(t.head, _MAX_HEAD) + min(t.lost, _MAX_HEAD)
                             for t in threads if t.ring)
    bad_seqp = []
    spans = []           # [(start, end, index)] of the thread rings accepted so far
    for t in threads:
        ring.lost += t.lost
        if t.busy == 1:
            ring.in_flight += 1
        if not t.ring:
            if t.head:
                ring.errors.append("thread %d: head %d but no ring (corrupt descriptor); "
                                   "ignored" % (t.index, t.head))
            continue
        why = _implausible_descriptor(header, t, spans, ring.writers <= 1)
        if why:
            ring.rejections[why[0]] = ring.rejections.get(why[0], 0) + 1
            ring.rejected_descriptors.append("thread %d: %s; its records were not read"
                                             % (t.index, why[1]))
            continue
        if t.mask != header.capacity - 1:
            ring.errors.append("thread %d: mask %#x is not capacity-1 (%#x); using the "
                               "header's capacity" % (t.index, t.mask, header.capacity - 1))
        if t.seqp != header.seq_addr:
            bad_seqp.append(t)
        _decode_thread(ring, read, t, chunk)
    gap = header.seq - 1 - ring.last_seq if ring.last_seq is not None else 0
    if ring.writers == 1 and not ring.rejected_descriptors and \
            gap > ring.torn + ring.unreadable + ring.rejected + seq_slack(header):
        why = "header's counter far above its newest record"
        ring.rejections[why] = ring.rejections.get(why, 0) + 1
        ring.errors.append("the header's counter is %d but the newest record has seq %d: "
                           "records are missing, or the counter is damaged" % (
                               header.seq, ring.last_seq))
    if bad_seqp:
        ring.errors.append("thread%s %s: seqp %#x does not point at this header's seq (%#x): "
                           "a stale or copied header?" % (
                               "s" if len(bad_seqp) > 1 else "",
                               ", ".join(str(t.index) for t in bad_seqp[:8]) +
                               (", ..." if len(bad_seqp) > 8 else ""),
                               bad_seqp[0].seqp, header.seq_addr))
    if ring.decoded == 0:
        if header.disabled:
            ring.errors.append("recording disabled (PYREF=off)")
        if ring.written == 0:
            ring.errors.append("no thread has recorded anything (threads_registered %d, "
                               "lost %d)" % (header.threads_registered, ring.lost))
        else:
            ring.errors.append("nothing decoded: %d written, %d torn, %d unreadable"
                               % (ring.written, ring.torn, ring.unreadable))
    return ring


# ---------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------
def build_index(ring: Ring) -> dict:
    """{obj: [Record, ...]} over Ring.records (attached AUX records are reached through
    their record's `aux`), each list in ring order."""
    index = {}
    with _NoGC():
        for r in ring.records:
            lst = index.get(r[0])
            if lst is None:
                index[r[0]] = [r]
            else:
                lst.append(r)
    return index

