"""CPython objects as pyref sees them in a target's memory: header, type, reference count,
state (live / freed / not an object, with the reason), size and a short, bounded repr.

Nothing here knows an offset by heart: every struct layout (PyObject, PyTypeObject,
PyLongObject, the dict key table, the str state bitfield...) is read from the DWARF of the
loaded interpreter through target.struct_layout(), once per objfile generation, and the
differences between 3.10, 3.11, 3.12, 3.13 and 3.13t are recognised by which members exist
(`long_value`, `ob_refcnt_split`, `ob_ref_local`, `dk_log2_size`, PyDictValues.capacity),
never by a version number. Constants that are not layout (tp_flags bits, the debug
allocator's fill bytes, lv_tag's sign bits) are CPython's ABI and named below.

Each object is read with at most a few bulk reads: its header, its type object (cached per
stop), then its fixed part (tp_basicsize bytes) and one read for its variable part. The
target is never trusted: every count is capped, the repr is at most MAX_REPR characters,
shows at most MAX_ITEMS elements per container and MAX_DEPTH levels, and marks cycles as
Python does ([...]). A freed or corrupted object is a finding, never an exception.

3.13t (free-threaded) refcounts (ob_tid, ob_ref_local, ob_ref_shared) are decoded from
their DWARF layout; no free-threaded interpreter is installed on the test machines, so
that path is exercised only by reading, not by a test.
"""
import os
import re
import struct

from pyref import target
from pyref.target import MemoryReadError, NoDebugInfoError

# ---------------------------------------------------------------------------------------
# CPython ABI constants (Include/object.h, Include/cpython/pymem.h): not layout
# ---------------------------------------------------------------------------------------
TPFLAGS_LONG_SUBCLASS = 1 << 24
TPFLAGS_LIST_SUBCLASS = 1 << 25
TPFLAGS_TUPLE_SUBCLASS = 1 << 26
TPFLAGS_BYTES_SUBCLASS = 1 << 27
TPFLAGS_UNICODE_SUBCLASS = 1 << 28
TPFLAGS_DICT_SUBCLASS = 1 << 29
TPFLAGS_TYPE_SUBCLASS = 1 << 31

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


# ---------------------------------------------------------------------------------------
# Layouts (from DWARF, once per objfile generation)
# ---------------------------------------------------------------------------------------
class Layouts:
    """The offsets every object needs (header, type object), computed once; per-kind
    layouts (PyListObject...) are looked up on first use through target.struct_layout."""

    def __init__(self):
        obj = target.struct_layout("PyObject", "struct _object")
        typ = target.struct_layout("PyTypeObject", "struct _typeobject")
        if obj is None or typ is None:
            raise NoDebugInfoError(
                "no debug info for the Python interpreter (type %s unknown): install its "
                "debug symbols (%s) or use a build with -g"
                % ("PyObject" if obj is None else "PyTypeObject", _debug_package()))
        self.header_size = obj.size
        self.ob_type = obj.offset("ob_type")
        self.free_threaded = "ob_ref_local" in obj
        if self.free_threaded:  # 3.13t
            self.ob_tid = obj.offset("ob_tid")
            self.ob_ref_local = obj.offset("ob_ref_local")
            self.ob_ref_shared = obj.offset("ob_ref_shared")
        else:
            self.ob_refcnt = obj.offset("ob_refcnt")
        # 3.12+ (64-bit): the count is a union with ob_refcnt_split; immortal = low half < 0.
        self.immortal_split = "ob_refcnt_split" in obj or self.free_threaded
        var = target.struct_layout("PyVarObject")
        self.ob_size = var.offset("ob_size") if var is not None and "ob_size" in var else None
        self.type_size = typ.size
        self.tp_name = typ.offset("tp_name")
        self.tp_basicsize = typ.offset("tp_basicsize")
        self.tp_itemsize = typ.offset("tp_itemsize")
        self.tp_flags = typ.offset("tp_flags")
        self.tp_base = typ.offset("tp_base")


def layouts():
    """The Layouts of the loaded interpreter; raises WrongExecutableError when gdb loaded
    another executable than the target's (whose DWARF, if any, describes another
    interpreter), NoDebugInfoError if it has no DWARF."""
    cache = target.objfile_cache()
    lay = cache.get("objects.layouts")
    if lay is None:
        target.check_executable()
        lay = cache["objects.layouts"] = Layouts()
    return lay


def _debug_package():
    """The Debian/Ubuntu package of the interpreter's debug symbols, from Py_Version
    (3.11+: in the dynamic symbols, readable without DWARF), else the executable's name."""
    version = None
    addr = target.symbol_address("Py_Version")
    try:
        hexversion = target.read_u64(addr) if addr is not None else 0
        if hexversion >> 24 == 3:
            version = "3.%d" % (hexversion >> 16 & 0xFF)
    except MemoryReadError:
        pass
    if version is None:
        m = re.search(r"python(3\.\d+)", os.path.basename(target.executable() or ""))
        version = m.group(1) if m else None
    if version is None:
        return "e.g. python3.11-dbg"
    return "python%s-dbg on Debian and Ubuntu" % version


def _field_int(data, field, signed=False):
    return int.from_bytes(data[field.offset:field.offset + field.size], "little",
                          signed=signed)


def _field_bits(data, field):
    """A bitfield's value (little-endian targets: DWARF bit positions count from bit 0)."""
    first = field.bitpos // 8
    nbytes = (field.bitpos % 8 + field.bitsize + 7) // 8
    word = int.from_bytes(data[first:first + nbytes], "little")
    return (word >> (field.bitpos % 8)) & ((1 << field.bitsize) - 1)


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
            return _field_int(self.data, f, signed)
        return int.from_bytes(target.read(self.addr + f.offset, f.size), "little",
                              signed=signed)

    def bits(self, f):
        end = (f.bitpos + f.bitsize + 7) // 8
        data = self.data if end <= len(self.data) else target.read(self.addr, end)
        return _field_bits(data, f)


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
    lay = layouts()
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
    try:
        t.name = target.read_cstring(raw.u64(lay.tp_name), MAX_NAME)
    except MemoryReadError:
        t.name = "?"
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
    local + shared >> 2); `immortal` per the interpreter's _Py_IsImmortal."""

    __slots__ = ("total", "immortal", "raw", "local", "shared", "shared_flags", "tid", "note")

    def __init__(self, total, immortal, raw, local=None, shared=None, shared_flags=None,
                 tid=None):
        self.total, self.immortal, self.raw = total, immortal, raw
        self.local, self.shared, self.shared_flags, self.tid = local, shared, shared_flags, tid
        self.note = None  # set when the word holds something else (fill bytes, a link)

    _FLAG_NAMES = {0: "", 1: "maybe-weakref", 2: "queued", 3: "merged"}

    def __str__(self):
        if self.note:
            return "? (0x%x: %s)" % (self.raw & ((1 << 64) - 1), self.note)
        if self.local is not None:  # 3.13t
            if self.immortal:
                return "immortal (ob_ref_local 0x%x)" % self.local
            flags = self._FLAG_NAMES.get(self.shared_flags, "")
            return "%d (local %d + shared %d%s; owner thread 0x%x)" % (
                self.total, self.local, self.shared, ", " + flags if flags else "", self.tid)
        if self.immortal:
            return "immortal (ob_refcnt 0x%x)" % (self.raw & ((1 << 64) - 1))
        return "%d" % self.total


def _refcount(lay, head):
    if lay.free_threaded:
        tid = _U64.unpack_from(head, lay.ob_tid)[0]
        local = struct.unpack_from("<I", head, lay.ob_ref_local)[0]
        shared = _I64.unpack_from(head, lay.ob_ref_shared)[0]
        if local == 0xFFFFFFFF:
            return RefCount(local, True, local, local, shared >> 2, shared & 3, tid)
        return RefCount(local + (shared >> 2), False, local, local, shared >> 2, shared & 3,
                        tid)
    raw = _I64.unpack_from(head, lay.ob_refcnt)[0]
    # 3.12+: _Py_IsImmortal is "low 32 bits, as int32, < 0". A count that is negative as a
    # whole word is an over-release, not immortality: say so rather than hide it.
    immortal = lay.immortal_split and raw >= 0 and (raw & 0xFFFFFFFF) >= 0x80000000
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
    lay = layouts()
    info = ObjectInfo(addr)
    if addr == 0:
        info.reason = "NULL pointer"
        return info
    head = target.read(addr, lay.header_size)
    if addr & 7:
        info.reason = "misaligned address (objects are 8-byte aligned)"
        return info
    info.type_addr = type_addr = _U64.unpack_from(head, lay.ob_type)[0]
    info.refcount = rc = _refcount(lay, head)
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
                n = _long_ndigits(info)[1]
            elif lay.ob_size is not None:
                n = abs(info.body.i64(lay.ob_size))
        except (MemoryReadError, NoDebugInfoError):
            n = 0
    info.size = t.basicsize + t.itemsize * n
    info.size_parts = (t.basicsize, t.itemsize, n)


# ---------------------------------------------------------------------------------------
# Values of the builtin kinds (each: a few bulk reads, bounded)
# ---------------------------------------------------------------------------------------
def _need(*names):
    lay = target.struct_layout(*names)
    if lay is None:
        raise NoDebugInfoError("no debug info for %s" % names[0])
    return lay


def _long_tagged():
    return "long_value.lv_tag" in _need("PyLongObject", "struct _longobject")


def _long_ndigits(info):
    """(sign, ndigits, digits_offset, digit_size) of an int."""
    lo = _need("PyLongObject", "struct _longobject")
    if "long_value.lv_tag" in lo:  # 3.12+: lv_tag = ndigits << 3 | sign bits
        tag = info.body.u64(lo.offset("long_value.lv_tag"))
        f = lo.field("long_value.ob_digit")
        return 1 - (tag & 3), tag >> 3, f.offset, f.elem_size
    size = info.body.i64(layouts().ob_size)
    f = lo.field("ob_digit")
    return (size > 0) - (size < 0), abs(size), f.offset, f.elem_size


def int_value(info):
    """The int's value, or None when it has more than MAX_INT_DIGITS digits."""
    sign, ndigits, off, dsize = _long_ndigits(info)
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
    a = _need("PyASCIIObject")
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
        start = addr + (a.size if ascii_ else _need("PyCompactUnicodeObject").size)
    else:
        start = target.read_u64(addr + _need("PyUnicodeObject").offset("data.any"))
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


def _dict_iter(info):
    """Yields (key, value) addresses of a dict's live items in insertion order, examining
    at most MAX_SCAN entries. Combined tables, and split tables for 3.10 (values in key
    order), 3.11/3.12 (insertion order in bytes before the values) and 3.13 (after them)."""
    d = _need("PyDictObject")
    keys = info.body.u64(d.offset("ma_keys"))
    values = info.body.u64(d.offset("ma_values"))
    k = _need("PyDictKeysObject", "struct _dictkeysobject")
    ix_off = k.offset("dk_indices")
    head = target.read(keys, ix_off)
    nentries = _field_int(head, k.field("dk_nentries"), signed=True)
    if "dk_log2_size" in k:  # 3.11+
        index_bytes = 1 << _field_int(head, k.field("dk_log2_index_bytes"))
        general = target.enum_value("DictKeysKind", "DICT_KEYS_GENERAL", 0)
        unicode_ = _field_int(head, k.field("dk_kind")) != general
    else:  # 3.10: the index width follows dk_size
        size = _field_int(head, k.field("dk_size"), signed=True)
        width = 1 if size <= 0xff else 2 if size <= 0xffff else 4 if size <= 0xffffffff else 8
        index_bytes = size * width
        unicode_ = False
    entry = _need("PyDictUnicodeEntry") if unicode_ else _need("PyDictKeyEntry")
    entries = keys + ix_off + index_bytes
    ksz, koff, voff = entry.size, entry.offset("me_key"), entry.offset("me_value")
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


def _set_iter(info):
    """Yields the key addresses of a set's live entries, examining at most MAX_SCAN slots
    (a slot is empty when its key is NULL, a deleted dummy when its hash is -1)."""
    s = _need("PySetObject")
    e = _need("setentry")
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
    m = _need("PyModuleObject")
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
            for key, val in _dict_iter(dinfo):
                kinfo = inspect(key)
                if kinfo.state == LIVE and kinfo.kind == "str" and \
                        str_value(key, 16)[0] == "__name__":
                    vinfo = inspect(val)
                    if vinfo.state == LIVE and vinfo.kind == "str":
                        return str_value(val, MAX_NAME)[0]
                    break
    return None


# ---------------------------------------------------------------------------------------
# Short repr
# ---------------------------------------------------------------------------------------
class _Full(Exception):
    pass


class _Out:
    """Collects repr text and stops the walk (raising _Full) past `limit` characters."""

    def __init__(self, limit):
        self.parts, self.n, self.limit = [], 0, limit

    def write(self, s):
        self.parts.append(s)
        self.n += len(s)
        if self.n > self.limit:
            raise _Full()

    def text(self):
        s = "".join(self.parts)
        return s if len(s) <= self.limit else s[:self.limit - 3] + "..."


def short_repr(addr, max_len=MAX_REPR, max_items=MAX_ITEMS, max_depth=MAX_DEPTH, info=None):
    """A repr of the object at `addr` in Python's syntax, bounded: at most `max_len`
    characters, `max_items` per container, `max_depth` levels, cycles as [...]. Elements
    that are freed or not objects appear as <freed 0x...> / <not an object 0x...>."""
    out = _Out(max_len)
    try:
        _Repr(max_items, max_depth).write(addr, out, 0, set(), info)
    except _Full:
        pass
    return out.text()


class _Repr:
    def __init__(self, max_items, max_depth):
        self.max_items, self.max_depth = max_items, max_depth

    def write(self, addr, out, depth, active, info=None):
        try:
            if info is None:
                info = inspect(addr)
        except MemoryReadError:
            out.write("<unreadable 0x%x>" % addr)
            return
        if info.state == FREED:
            out.write("<freed 0x%x>" % addr)
            return
        if info.state != LIVE:
            out.write("<not an object 0x%x>" % addr)
            return
        method = getattr(self, "_" + info.kind, self._object)
        try:
            method(info, out, depth, active)
        except (MemoryReadError, NoDebugInfoError) as e:
            out.write("<%s object at 0x%x: %s>" % (info.type.name, addr, e))

    # -- containers --------------------------------------------------------------------
    def _items(self, info, out, depth, active, opening, closing, items, total, write_item):
        if info.addr in active or depth >= self.max_depth:
            out.write(opening + "..." + closing)
            return
        active.add(info.addr)
        try:
            out.write(opening)
            shown = 0
            for item in items:
                if shown == self.max_items:
                    break
                if shown:
                    out.write(", ")
                write_item(item, out, depth + 1, active)
                shown += 1
            if total > shown:
                out.write(", ..." if shown else "...")
            out.write(closing)
        finally:
            active.discard(info.addr)

    def _tuple(self, info, out, depth, active):
        n = info.body.i64(layouts().ob_size)
        at = info.addr + _need("PyTupleObject").offset("ob_item")
        ptrs = target.read_ptrs(at, max(0, min(n, self.max_items)))
        closing = ",)" if n == 1 else ")"
        self._items(info, out, depth, active, "(", closing, ptrs, n, self.write)

    def _list(self, info, out, depth, active):
        n = info.body.i64(layouts().ob_size)
        at = info.body.u64(_need("PyListObject").offset("ob_item"))
        ptrs = target.read_ptrs(at, max(0, min(n, self.max_items))) if at else ()
        self._items(info, out, depth, active, "[", "]", ptrs, n, self.write)

    def _dict(self, info, out, depth, active):
        used = info.body.i64(_need("PyDictObject").offset("ma_used"))

        def pair(kv, out, depth, active):
            self.write(kv[0], out, depth, active)
            out.write(": ")
            self.write(kv[1], out, depth, active)

        self._items(info, out, depth, active, "{", "}", _dict_iter(info), used, pair)

    def _set(self, info, out, depth, active, opening="{", closing="}"):
        used = info.body.i64(_need("PySetObject").offset("used"))
        if used == 0:
            out.write("set()" if opening == "{" else "frozenset()")
            return
        self._items(info, out, depth, active, opening, closing, _set_iter(info), used,
                    self.write)

    def _frozenset(self, info, out, depth, active):
        self._set(info, out, depth, active, "frozenset({", "})")

    # -- scalars -----------------------------------------------------------------------
    def _none(self, info, out, depth, active):
        out.write("None")

    def _true(self, info, out, depth, active):
        out.write("True")

    def _false(self, info, out, depth, active):
        out.write("False")

    def _int(self, info, out, depth, active):
        value = int_value(info)
        if info.type.name == "bool" and value in (0, 1):
            out.write("True" if value else "False")
        elif value is None:
            _, ndigits, _, dsize = _long_ndigits(info)
            out.write("<int of %d %d-bit digits>" % (ndigits, 30 if dsize == 4 else 15))
        else:
            out.write(str(value))

    def _float(self, info, out, depth, active):
        off = _need("PyFloatObject").offset("ob_fval")
        out.write(repr(struct.unpack("<d", target.read(info.addr + off, 8))[0]))

    def _str(self, info, out, depth, active):
        budget = max(16, out.limit - out.n)
        text, length = str_value(info.addr, budget)
        if length < 0:
            out.write(text)
        else:
            out.write(repr(text) + ("..." if length > len(text) else ""))

    def _bytes(self, info, out, depth, active):
        n = info.body.i64(layouts().ob_size)
        shown = max(0, min(n, max(16, out.limit - out.n)))
        off = _need("PyBytesObject").offset("ob_sval")
        out.write(repr(target.read(info.addr + off, shown)) + ("..." if n > shown else ""))

    # -- named things ------------------------------------------------------------------
    def _type(self, info, out, depth, active):
        out.write("<class '%s'>" % type_info(info.addr).name)

    def _module(self, info, out, depth, active):
        name = module_name(info)
        out.write("<module '%s'>" % name if name is not None
                  else "<module at 0x%x>" % info.addr)

    def _function(self, info, out, depth, active):
        f = _need("PyFunctionObject")
        name = None
        for member in ("func_qualname", "func_name"):
            if member in f:
                ptr = info.body.u64(f.offset(member))
                obj = inspect(ptr) if ptr else None
                if obj is not None and obj.state == LIVE and obj.kind == "str":
                    name = str_value(ptr, MAX_NAME)[0]
                    break
        out.write("<function %s at 0x%x>" % (name or "?", info.addr))

    def _object(self, info, out, depth, active):
        out.write("<%s object at 0x%x>" % (info.type.name, info.addr))
