"""CPython objects as pyref sees them in a target's memory: header, type, reference count,
state (live / freed / not an object, with the reason), size, and the values of the builtin
kinds (ints, strs, dict and set items) that the bounded repr (inferior/objrepr.py) and the
owners search read.

Nothing here knows an offset by heart: every struct layout (PyObject, PyTypeObject,
PyLongObject, the dict key table, the str state bitfield...) is read from the DWARF of the
loaded interpreter (inferior/layout.py), once per objfile generation, and the differences
between 3.10 to 3.15 and 3.13t are recognised by which members exist (`long_value`,
`ob_refcnt_split`, `ob_refcnt_full`, `ob_ref_local`, `dk_log2_size`, PyDictValues.capacity),
never by a version number. Constants that are not layout (tp_flags bits, the debug
allocator's fill bytes, lv_tag's sign bits) are CPython's ABI and named below.

Each object is read with at most a few bulk reads: its header, its type object (cached per
stop), then its fixed part (tp_basicsize bytes) and one read for its variable part. The
target is never trusted: every count is capped. A freed or corrupted object is a finding,
never an exception.

The count is decoded per layout.Layouts.count_model: one 64-bit word (3.10, 3.11), a 64-bit
word whose low half says immortal (3.12, 3.13), the 32-bit ob_refcnt with ob_overflow and
ob_flags beside it (3.14+), local + shared >> 2 (3.13t).
"""
import struct

from pyref.errors import NoDebugInfoError, PyrefError
from pyref.inferior import layout, target
from pyref.inferior.layout import (TPFLAGS_BYTES_SUBCLASS, TPFLAGS_DICT_SUBCLASS,
                                   TPFLAGS_LIST_SUBCLASS, TPFLAGS_LONG_SUBCLASS,
                                   TPFLAGS_TUPLE_SUBCLASS, TPFLAGS_TYPE_SUBCLASS,
                                   TPFLAGS_UNICODE_SUBCLASS, field_bits, field_int, need)
from pyref.inferior.target import MemoryReadError
from pyref.reader import sites

# ---------------------------------------------------------------------------------------
# CPython ABI constants (Include/cpython/pymem.h, Objects/obmalloc.c): not layout
# ---------------------------------------------------------------------------------------
DEAD_BYTE = 0xDD       # PYMEM_DEADBYTE: the debug allocator fills freed memory with it
CLEAN_BYTE = 0xCD      # PYMEM_CLEANBYTE: ... fresh, never initialised memory
FORBIDDEN_BYTE = 0xFD  # PYMEM_FORBIDDENBYTE: ... the guard bytes around each block
PYMALLOC_POOL_BITS = 14  # pools are at most 16 KiB (3.10+, 64-bit)

LIVE, FREED, NOT_OBJECT = "live", "freed", "not an object"

# The interpreter's static singletons: symbol -> the name Python gives them.
SINGLETON_SYMBOLS = {"_Py_NoneStruct": "None", "_Py_TrueStruct": "True",
                     "_Py_FalseStruct": "False", "_Py_EllipsisObject": "Ellipsis",
                     "_Py_NotImplementedStruct": "NotImplemented"}

# Bounds on what we read from a target we do not trust.
MAX_REPR = 1024        # characters of one repr
MAX_ITEMS = 10         # elements shown per container
MAX_DEPTH = 6          # nesting levels shown
MAX_SCAN = 4096        # hash-table slots examined to find MAX_ITEMS live entries
MAX_INT_DIGITS = 100   # 30-bit digits of an int printed in decimal (~900 decimal digits)
MAX_NAME = 200         # bytes of a tp_name
MAX_BODY = 4096        # bytes of an object's fixed part read at once

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")


class _Bytes:
    """An object's bytes read at once, with reads past them going to the target."""

    __slots__ = ("addr", "data")

    def __init__(self, addr, data):
        self.addr, self.data = addr, data

    def u64(self, off):
        if off + 8 <= len(self.data):
            return _U64.unpack_from(self.data, off)[0]
        return target.read_u64(self.addr + off)

    def i64(self, off):
        if off + 8 <= len(self.data):
            return _I64.unpack_from(self.data, off)[0]
        return target.read_i64(self.addr + off)

    def field(self, f, signed=False):
        if f.offset + f.size <= len(self.data):
            return field_int(self.data, f, signed)
        return int.from_bytes(target.read(self.addr + f.offset, f.size), "little",
                              signed=signed)

    def bits(self, f):
        end = (f.bitpos + f.bitsize + 7) // 8
        data = self.data if end <= len(self.data) else target.read(self.addr, end)
        return field_bits(data, f)


# ---------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------
class TypeInfo:
    """A type object as read from the target. `valid` is False (with `reason`) when the
    address does not hold a type: unreadable, or its own type is not a type."""

    __slots__ = ("addr", "valid", "reason", "name", "basicsize", "itemsize", "flags", "base",
                 "metatype")

    def __init__(self, addr):
        self.addr = addr
        self.valid, self.reason = False, ""
        self.name, self.basicsize, self.itemsize, self.flags = "?", 0, 0, 0
        self.base = self.metatype = 0


def type_info(addr):
    """TypeInfo of the type object at `addr`, cached per stop. Never raises on bad memory."""
    cache = target.stop_cache()
    key = ("objects.type", addr)
    t = cache.get(key)
    if t is None:
        t = cache[key] = _read_type(addr)
    return t


def _read_type(addr):
    lay = layout.layouts()
    t = TypeInfo(addr)
    if addr == 0:
        t.reason = "ob_type is NULL"
        return t
    data = target.try_read(addr, lay.type_size)
    if data is None:
        t.reason = "ob_type 0x%x is unreadable" % addr
        return t
    raw = _Bytes(addr, data)
    t.metatype = raw.u64(lay.ob_type)
    t.flags = raw.u64(lay.tp_flags)
    t.basicsize = raw.i64(lay.tp_basicsize)
    t.itemsize = raw.i64(lay.tp_itemsize)
    t.base = raw.u64(lay.tp_base)
    if t.metatype == addr:
        meta_flags = t.flags
    else:
        meta = target.try_read(t.metatype + lay.tp_flags, 8) if t.metatype else None
        if meta is None:
            t.reason = "ob_type 0x%x is not a type: its own type 0x%x is unreadable" % (
                addr, t.metatype)
            return t
        meta_flags = _U64.unpack(meta)[0]
    if not meta_flags & TPFLAGS_TYPE_SUBCLASS:
        t.reason = ("ob_type 0x%x is not a type: its own type 0x%x lacks "
                    "Py_TPFLAGS_TYPE_SUBCLASS" % (addr, t.metatype))
        return t
    if not 0 < t.basicsize < 1 << 24 or not 0 <= t.itemsize < 1 << 16:
        t.reason = "ob_type 0x%x is not a type: tp_basicsize %d, tp_itemsize %d" % (
            addr, t.basicsize, t.itemsize)
        return t
    t.name = sites.read_cstring(target.read, raw.u64(lay.tp_name), MAX_NAME) or "?"
    t.valid = True
    return t


# Exact types recognised by identity (walking tp_base for subclasses), by symbol name.
_TYPE_SYMBOLS = (("PyFloat_Type", "float"), ("PySet_Type", "set"),
                 ("PyFrozenSet_Type", "frozenset"), ("PyModule_Type", "module"),
                 ("PyFunction_Type", "function"))
_FLAG_KINDS = ((TPFLAGS_TYPE_SUBCLASS, "type"), (TPFLAGS_LONG_SUBCLASS, "int"),
               (TPFLAGS_LIST_SUBCLASS, "list"), (TPFLAGS_TUPLE_SUBCLASS, "tuple"),
               (TPFLAGS_BYTES_SUBCLASS, "bytes"), (TPFLAGS_UNICODE_SUBCLASS, "str"),
               (TPFLAGS_DICT_SUBCLASS, "dict"))


def _kind_of(addr, t):
    """Which repr applies to the object at `addr` of (valid) type `t`."""
    for sym, kind in (("_Py_NoneStruct", "none"), ("_Py_TrueStruct", "true"),
                      ("_Py_FalseStruct", "false")):
        if addr == target.symbol_address(sym):
            return kind
    for flag, kind in _FLAG_KINDS:
        if t.flags & flag:
            return kind
    known = {}
    for sym, kind in _TYPE_SYMBOLS:
        a = target.symbol_address(sym)
        if a is not None:
            known[a] = kind
    cur = t
    for _ in range(8):  # a subclass of a builtin: look a few bases up
        if cur.addr in known:
            return known[cur.addr]
        if not cur.base:
            break
        cur = type_info(cur.base)
        if not cur.valid:
            break
    return "object"


# ---------------------------------------------------------------------------------------
# Reference counts
# ---------------------------------------------------------------------------------------
class RefCount:
    """What Py_REFCNT() would say, plus how it is stored. `total` is the count (for 3.13t
    local + shared >> 2, on 3.14+ the 32-bit ob_refcnt); `immortal` per the interpreter's
    _Py_IsImmortal; `flags` the ob_flags word (3.14+, 3.13t), else None; `raw` the
    header's first word (the whole ob_refcnt_full on 3.14+)."""

    __slots__ = ("total", "immortal", "raw", "local", "shared", "shared_flags", "tid", "note",
                 "flags", "overflow")

    def __init__(self, total, immortal, raw, local=None, shared=None, shared_flags=None,
                 tid=None, flags=None, overflow=None):
        self.total, self.immortal, self.raw = total, immortal, raw
        self.local, self.shared, self.shared_flags, self.tid = local, shared, shared_flags, tid
        self.flags, self.overflow = flags, overflow
        self.note = None  # set when the word holds something else (fill bytes, a link)

    _FLAG_NAMES = {0: "", 1: "maybe-weakref", 2: "queued", 3: "merged"}

    @property
    def static(self):
        """True when ob_flags says statically allocated (3.14+, 3.13t)."""
        return bool(self.flags is not None and
                    self.flags & layout.STATICALLY_ALLOCATED_FLAG)

    def _ob_flags(self):
        if self.flags is None:
            return ""
        names = [n for bit, n in ((layout.IMMORTAL_FLAGS, "immortal"),
                                  (layout.STATICALLY_ALLOCATED_FLAG, "static"))
                 if self.flags & bit]
        return "; ob_flags 0x%x%s" % (self.flags, " (%s)" % ", ".join(names) if names else "")

    def __str__(self):
        if self.note:
            return "? (0x%x: %s)" % (self.raw & ((1 << 64) - 1), self.note)
        if self.local is not None:  # 3.13t
            if self.immortal:
                return "immortal (ob_ref_local 0x%x%s)" % (self.local, self._ob_flags())
            flags = self._FLAG_NAMES.get(self.shared_flags, "")
            return "%d (local %d + shared %d%s; owner thread 0x%x)" % (
                self.total, self.local, self.shared, ", " + flags if flags else "", self.tid)
        if self.immortal:
            if self.flags is not None:  # 3.14+: the 32-bit count, then ob_flags
                return "immortal (ob_refcnt 0x%x%s)" % (self.total, self._ob_flags())
            return "immortal (ob_refcnt 0x%x)" % (self.raw & ((1 << 64) - 1))
        if self.overflow:
            return "%d (ob_overflow %d)" % (self.total, self.overflow)
        return "%d" % self.total


def refcount_of(lay, head):
    """The RefCount of an object header's bytes `head`, by the rules of lay.count_model."""
    model = lay.count_model
    if model == layout.COUNT_FREE_THREADED:
        tid = _U64.unpack_from(head, lay.ob_tid)[0]
        local = struct.unpack_from("<I", head, lay.ob_ref_local)[0]
        shared = _I64.unpack_from(head, lay.ob_ref_shared)[0]
        flags = struct.unpack_from("<H", head, lay.ob_flags)[0] \
            if lay.ob_flags is not None else None
        shift = layout.REF_SHARED_SHIFT
        if local == layout.IMMORTAL_REFCNT_LOCAL:
            return RefCount(local, True, local, local, shared >> shift,
                            shared & ((1 << shift) - 1), tid, flags)
        return RefCount(local + (shared >> shift), False, local, local, shared >> shift,
                        shared & ((1 << shift) - 1), tid, flags)
    if model == layout.COUNT_NARROW:
        full = _I64.unpack_from(head, lay.ob_refcnt_full)[0]
        count = struct.unpack_from("<I", head, lay.ob_refcnt)[0]
        flags = struct.unpack_from("<H", head, lay.ob_flags)[0]
        overflow = struct.unpack_from("<H", head, lay.ob_overflow)[0]
        # _Py_IsImmortal: the 32-bit count, as int32, is negative. Py_DECREF's debug check
        # calls a count just below 2**32 (or a negative whole word) a negative refcount:
        # an over-release that wrapped, unless ob_flags marks it immortal.
        wrapped = full < 0 or (count > (1 << 32) - layout.NEGATIVE_WINDOW and
                               not flags & layout.IMMORTAL_FLAGS)
        if wrapped:
            return RefCount(count - (1 << 32) if count >= 1 << 31 else full, False, full,
                            flags=flags, overflow=overflow)
        return RefCount(count, count >= 1 << 31, full, flags=flags, overflow=overflow)
    raw = _I64.unpack_from(head, lay.ob_refcnt)[0]
    # 3.12+: _Py_IsImmortal is "low 32 bits, as int32, < 0". A count that is negative as a
    # whole word is an over-release, not immortality: say so rather than hide it.
    immortal = model == layout.COUNT_SPLIT and raw >= 0 and \
        (raw & 0xFFFFFFFF) >= 0x80000000
    return RefCount(raw, immortal, raw)


# ---------------------------------------------------------------------------------------
# One object: state, type, size
# ---------------------------------------------------------------------------------------
class ObjectInfo:
    """Everything `pyref show` prints about one address. `state` is LIVE, FREED or
    NOT_OBJECT with `reason`; `type` is a TypeInfo (also for a freed object whose stale
    header still names a valid type), or None; `kind` picks the repr."""

    __slots__ = ("addr", "state", "reason", "refcount", "type_addr", "type", "kind", "body",
                 "size", "size_parts", "stale")

    def __init__(self, addr):
        self.addr = addr
        self.state, self.reason = NOT_OBJECT, ""
        self.refcount = self.type = self.body = self.size = self.size_parts = None
        self.type_addr = 0
        self.kind = "object"
        self.stale = False


def _filled(word, byte):
    return word == int.from_bytes(bytes([byte]) * 8, "little")


def inspect(addr):
    """ObjectInfo for the object at `addr`. Raises MemoryReadError when the object's header
    itself is unreadable (the caller decides whether that is an error); everything else
    (freed, corrupt, not an object) is reported in the result."""
    lay = layout.layouts()
    info = ObjectInfo(addr)
    if addr == 0:
        info.reason = "NULL pointer"
        return info
    head = target.read(addr, lay.header_size)
    if addr & 7:
        info.reason = "misaligned address (objects are 8-byte aligned)"
        return info
    info.type_addr = type_addr = _U64.unpack_from(head, lay.ob_type)[0]
    info.refcount = rc = refcount_of(lay, head)
    # The count's word (ob_tid on 3.13t): what a free block's link or a fill overwrites.
    first = rc.raw & ((1 << 64) - 1) if not lay.free_threaded else \
        _U64.unpack_from(head, lay.ob_tid)[0]

    for byte, state, reason in (
            (DEAD_BYTE, FREED, "header filled with 0xDD: freed through the debug allocator"),
            (CLEAN_BYTE, NOT_OBJECT,
             "header filled with 0xCD: allocated by the debug allocator, never set"),
            (FORBIDDEN_BYTE, NOT_OBJECT,
             "header filled with 0xFD: the debug allocator's guard bytes")):
        if _filled(first, byte) or _filled(type_addr, byte):
            info.state, info.reason = state, reason
            if _filled(first, byte):
                rc.note, rc.immortal = "fill bytes", False
            return info

    # A pointer into the object's own pymalloc pool where the count should be is the
    # free-list link pymalloc writes into a freed block (checked before immortality: its
    # low half may look like an immortal count).
    if not lay.free_threaded and first >= 1 << 16 and not first & 7 and \
            first >> PYMALLOC_POOL_BITS == addr >> PYMALLOC_POOL_BITS:
        info.state = FREED
        info.reason = "ob_refcnt holds a pointer into the same pymalloc pool: a free block"
        rc.note, rc.immortal = "a free-list link", False
    elif not rc.immortal:
        if rc.total == 0:
            info.state = FREED
            info.reason = "reference count is 0: deallocated (or on a free list)"
        elif rc.total < 0:
            info.state = FREED
            info.reason = ("reference count is negative: decremented after it reached 0 "
                           "(use after free)")

    t = type_info(type_addr)
    if info.state == FREED:
        if t.valid:
            info.type, info.stale = t, True
        return info
    if not t.valid:
        info.reason = t.reason
        return info
    info.state, info.type = LIVE, t
    info.kind = _kind_of(addr, t)
    info.body = _Bytes(addr, target.try_read(addr, min(t.basicsize, MAX_BODY)) or head)
    _size(lay, info)
    return info


def _size(lay, info):
    t = info.type
    n = 0
    if t.itemsize:
        try:
            if info.kind in ("int", "true", "false") and _long_tagged():
                n = long_digits(info)[1]
            elif lay.ob_size is not None:
                n = abs(info.body.i64(lay.ob_size))
        except (MemoryReadError, NoDebugInfoError):
            n = 0
    info.size = t.basicsize + t.itemsize * n
    info.size_parts = (t.basicsize, t.itemsize, n)


# ---------------------------------------------------------------------------------------
# Values of the builtin kinds (each: a few bulk reads, bounded)
# ---------------------------------------------------------------------------------------
def _long_tagged():
    return "long_value.lv_tag" in need("PyLongObject", "struct _longobject")


def long_digits(info):
    """(sign, ndigits, digits_offset, digit_size) of an int."""
    lo = need("PyLongObject", "struct _longobject")
    if "long_value.lv_tag" in lo:  # 3.12+: lv_tag = ndigits << 3 | sign bits
        tag = info.body.u64(lo.offset("long_value.lv_tag"))
        f = lo.field("long_value.ob_digit")
        return 1 - (tag & 3), tag >> 3, f.offset, f.elem_size
    size = info.body.i64(layout.layouts().ob_size)
    f = lo.field("ob_digit")
    return (size > 0) - (size < 0), abs(size), f.offset, f.elem_size


def int_value(info):
    """The int's value, or None when it has more than MAX_INT_DIGITS digits."""
    sign, ndigits, off, dsize = long_digits(info)
    if ndigits > MAX_INT_DIGITS or dsize not in (2, 4):
        return None
    shift = 30 if dsize == 4 else 15
    raw = target.read(info.addr + off, ndigits * dsize) if ndigits else b""
    digits = struct.unpack("<%d%s" % (ndigits, "I" if dsize == 4 else "H"), raw)
    value = 0
    for d in reversed(digits):
        value = (value << shift) | d
    return -value if sign < 0 else value


def str_value(addr, max_chars=MAX_REPR):
    """(text, length) of the str at `addr`: at most `max_chars` characters, `length` the
    full length. Raises MemoryReadError / NoDebugInfoError."""
    a = need("PyASCIIObject")
    data = _Bytes(addr, target.read(addr, a.size))
    length = data.field(a.field("length"), signed=True)
    kind = data.bits(a.field("state.kind"))
    compact = data.bits(a.field("state.compact"))
    ascii_ = data.bits(a.field("state.ascii"))
    if "state.ready" in a and not data.bits(a.field("state.ready")):
        return "<str, not ready>", -1
    if kind not in (1, 2, 4) or length < 0:
        return "<str, kind %d, length %d>" % (kind, length), -1
    if compact:
        start = addr + (a.size if ascii_ else need("PyCompactUnicodeObject").size)
    else:
        start = target.read_u64(addr + need("PyUnicodeObject").offset("data.any"))
    n = min(length, max_chars)
    raw = target.read(start, n * kind) if n else b""
    if kind == 1:
        text = raw.decode("latin-1")
    elif kind == 2:
        text = raw.decode("utf-16-le", "surrogatepass")
    else:
        text = "".join(chr(c) if c <= 0x10FFFF else "\ufffd"
                       for c in struct.unpack("<%dI" % n, raw))
    return text, length


def keys_table(keys):
    """(entries start, entry size, key offset, value offset, nentries) of the dict keys
    object at `keys`: 3.11+ sizes its index from dk_log2_index_bytes and has str-only
    (unicode) entries; 3.10's index width follows dk_size. nentries is capped at 2^24."""
    k = need("PyDictKeysObject", "struct _dictkeysobject")
    ix_off = k.offset("dk_indices")
    head = target.read(keys, ix_off)
    nentries = field_int(head, k.field("dk_nentries"), signed=True)
    if "dk_log2_size" in k:  # 3.11+
        index_bytes = 1 << field_int(head, k.field("dk_log2_index_bytes"))
        general = target.enum_value("DictKeysKind", "DICT_KEYS_GENERAL", 0)
        unicode_ = field_int(head, k.field("dk_kind")) != general
    else:  # 3.10: the index width follows dk_size
        size = field_int(head, k.field("dk_size"), signed=True)
        width = 1 if size <= 0xff else 2 if size <= 0xffff else 4 if size <= 0xffffffff else 8
        index_bytes = size * width
        unicode_ = False
    entry = need("PyDictUnicodeEntry") if unicode_ else need("PyDictKeyEntry")
    return (keys + ix_off + index_bytes, entry.size, entry.offset("me_key"),
            entry.offset("me_value"), max(0, min(nentries, 1 << 24)))


def dict_items(info):
    """Yields (key, value) addresses of a dict's live items in insertion order, examining
    at most MAX_SCAN entries. Combined tables, and split tables for 3.10 (values in key
    order), 3.11/3.12 (insertion order in bytes before the values) and 3.13 (after them)."""
    d = need("PyDictObject")
    keys = info.body.u64(d.offset("ma_keys"))
    values = info.body.u64(d.offset("ma_values"))
    entries, ksz, koff, voff, nentries = keys_table(keys)
    nentries = max(0, min(nentries, MAX_SCAN))

    if not values:  # combined table
        for start in range(0, nentries, 64):
            n = min(64, nentries - start)
            raw = target.read(entries + start * ksz, n * ksz)
            for j in range(n):
                key = _U64.unpack_from(raw, j * ksz + koff)[0]
                val = _U64.unpack_from(raw, j * ksz + voff)[0]
                if key and val:
                    yield key, val
        return

    dv = target.struct_layout("PyDictValues", "struct _dictvalues")
    if dv is None:  # 3.10: ma_values is a plain PyObject *[] in key order
        vals_at, order = values, range(nentries)
    elif "capacity" in dv:  # 3.13: header bytes, values[capacity], then the order bytes
        hdr = target.read(values, dv.offset("values"))
        cap, size = hdr[dv.offset("capacity")], hdr[dv.offset("size")]
        vals_at = values + dv.offset("values")
        order = target.read(vals_at + 8 * cap, size) if size else b""
    else:  # 3.11, 3.12: size at values[-2], the order bytes below it, newest lowest
        size = target.read(values - 2, 1)[0]
        order = target.read(values - 2 - size, size)[::-1] if size else b""
        vals_at = values
    order = [ix for ix in order if ix < nentries]
    if not order:
        return
    top = max(order) + 1
    keys_raw = target.read(entries, top * ksz)
    vals = target.read_ptrs(vals_at, top)
    for ix in order:
        key = _U64.unpack_from(keys_raw, ix * ksz + koff)[0]
        if key and vals[ix]:
            yield key, vals[ix]


def set_items(info):
    """Yields the key addresses of a set's live entries, examining at most MAX_SCAN slots
    (a slot is empty when its key is NULL, a deleted dummy when its hash is -1)."""
    s = need("PySetObject")
    e = need("setentry")
    mask = info.body.i64(s.offset("mask"))
    table = info.body.u64(s.offset("table"))
    slots = max(0, min(mask + 1, MAX_SCAN))
    esz, koff, hoff = e.size, e.offset("key"), e.offset("hash")
    for start in range(0, slots, 256):
        n = min(256, slots - start)
        raw = target.read(table + start * esz, n * esz)
        for j in range(n):
            key = _U64.unpack_from(raw, j * esz + koff)[0]
            if key and _I64.unpack_from(raw, j * esz + hoff)[0] != -1:
                yield key


def module_name(info):
    """A module's name: md_name when the layout has it, else md_dict['__name__']."""
    m = need("PyModuleObject")
    if "md_name" in m:
        name = info.body.u64(m.offset("md_name"))
        if name:
            obj = inspect(name)
            if obj.state == LIVE and obj.kind == "str":
                return str_value(name, MAX_NAME)[0]
    d = info.body.u64(m.offset("md_dict"))
    if d:
        dinfo = inspect(d)
        if dinfo.state == LIVE and dinfo.kind == "dict":
            for key, val in dict_items(dinfo):
                kinfo = inspect(key)
                if kinfo.state == LIVE and kinfo.kind == "str" and \
                        str_value(key, 16)[0] == "__name__":
                    vinfo = inspect(val)
                    if vinfo.state == LIVE and vinfo.kind == "str":
                        return str_value(val, MAX_NAME)[0]
                    break
    return None


def object_state(addr):
    """{'type', 'refcount', 'state', 'reason'} of the address now, never raising: what
    `pyref history` and `pyref why` say of the object as it is."""
    try:
        info = inspect(addr)
    except MemoryReadError:
        return {"type": None, "refcount": None, "state": "unreadable",
                "reason": "memory at 0x%x is not readable" % addr}
    except PyrefError as e:
        return {"type": None, "refcount": None, "state": "unknown", "reason": str(e)}
    return {"type": info.type.name if info.type else None,
            "refcount": str(info.refcount) if info.refcount is not None else None,
            "state": info.state, "reason": info.reason}
