"""`pyref owners` and `pyref leaks`: who holds a reference to an object, found in memory,
and which references traced C code took and never gave back, found in the ring.

Owners. A conservative scan (scan.py) finds every aligned word of the process's readable,
writable memory equal to the object's address — heap, anonymous mappings, libraries' data
and bss, thread stacks — live or in a core. Each word is then attributed:

- thread stacks first: the thread whose stack mapping holds it, the frame whose
  [sp, caller's sp) range holds it, and the variable DWARF places there; below the
  innermost sp (and its red zone) the word is dead stack;
- interpreter frames (3.11+ _PyInterpreterFrame in a thread's data stack): the local's name
  from co_localsplusnames, or a value-stack slot; the data stack above its top is dead;
- C globals and statics: gdb's symbol for the address (`info symbol`), with the library;
- the heap: the allocator block around the word (scan.pymalloc_block, scan.malloc_chunk,
  the debug allocator's prefix). When the block starts with a Python object (after its GC
  header and pre-header), the word is a slot of that object: a tuple item, a cell, a set's
  inline entry, a __slots__ member (tp_members), a 3.13 inline attribute value, a 3.10
  frame's local, or a named C field of a known builtin struct. When the block is a bare
  buffer — a list's item array, a dict's key table or values array, a set's table, a
  3.11/3.12 instance's values array — a second pass looks for the pointer to the block's
  start and names the owner from it: list item [i], dict value for key 'k', instance
  attribute 'name'. A third pass asks who owns each dict found, so that an instance's
  __dict__, a module's globals and a type's namespace read as what they are.

Stale words — dead stack, free allocator blocks, freed objects (count 0, 0xDD fill), slots
past a list's end, deleted dict entries, dead interpreter stack — are classified and
hidden unless --all. The pyref ring is not scanned: its records are history, not owners,
and are counted apart. Words in live C frames that no variable claims (spills, saved
registers, temporaries) are shown as "possible" and not counted.

The account: refcount N, K owners found, N - K unexplained; then, from the ring, the C
sites that acquired references to the object and never released them.

--depth N repeats the search for the owners' owners, up to modules, C globals, thread
stacks and interpreter frames (roots), with cycle detection and bounds on nodes; --dot
writes the graph for Graphviz (and a PNG beside it when `dot` is installed).

Leaks. From the ring: references acquired (NEW, INCREF) by traced code and never released
in the object's current lifetime, for objects alive now, grouped by acquiring site and the
object's type, capped per object by its reference count (verdict.leak_groups). The ring is
read as columns and Events are built only for the objects left unbalanced. A reference
returned to Python is released outside the ring, or kept there: one search of memory for
all those objects (bounded) counts their owners, as above, and the references they
account for are reported as held, not leaked.

Everything is bounded (hits per needle, nodes per level, variables per frame, frames per
thread) and says so when a bound was hit. Memory is read through target.read in 1 MiB
chunks; no gdb.Value walks except to name C variables in the few frames that hold a hit.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import time
from itertools import islice, zip_longest

import gdb

from pyref import commands, decode, objects, ringcmd, scan, target, verdict
from pyref.rules import events
from pyref.target import MemoryReadError, NoDebugInfoError, PyrefError

# ---------------------------------------------------------------------------------------
# Bounds
# ---------------------------------------------------------------------------------------
MAX_HITS = 2000            # words kept per searched address
MAX_ATTRIBUTED = 500       # hits attributed in detail per address (the rest are counted)
MAX_SYMBOL_LOOKUPS = 500   # `info symbol` calls per command
MAX_FRAMES = 256           # C frames walked per thread
MAX_THREADS = 256          # threads examined
MAX_VARS = 400             # symbols examined per C frame
MAX_PYFRAMES = 2000        # interpreter frames walked in all
MAX_DEPTH = 10             # --depth limit
MAX_NODES = 200            # objects in a --depth graph
MAX_FRONTIER = 32          # objects searched per level
MAX_MEMBERS = 64           # PyMemberDef entries read per type
PROGRESS_BYTES = 256 << 20  # scans bigger than this print progress
DEFAULT_TOP = 20

TPFLAGS_INLINE_VALUES = 1 << 2
TPFLAGS_MANAGED_WEAKREF = 1 << 3
TPFLAGS_MANAGED_DICT = 1 << 4
TPFLAGS_HEAPTYPE = 1 << 9
TPFLAGS_HAVE_GC = 1 << 14

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_I32 = struct.Struct("<i")

_WEAKREF_TYPES = ("weakref", "weakproxy", "weakcallableproxy", "weakref.ReferenceType",
                  "weakref.ProxyType", "weakref.CallableProxyType")

_STRUCT_OF = {  # builtin type name -> the C struct that describes its instances
    "function": "PyFunctionObject", "method": "PyMethodObject", "cell": "PyCellObject",
    "builtin_function_or_method": "PyCFunctionObject", "module": "PyModuleObject",
    "list": "PyListObject", "dict": "PyDictObject", "set": "PySetObject",
    "frozenset": "PySetObject", "type": "PyHeapTypeObject", "frame": "PyFrameObject",
    "generator": "PyGenObject", "coroutine": "PyCoroObject", "code": "PyCodeObject",
    "property": "propertyobject", "classmethod": "classmethod", "staticmethod": "staticmethod",
    "weakref": "PyWeakReference", "slice": "PySliceObject", "tuple": "PyTupleObject",
    "mappingproxy": "mappingproxyobject", "super": "superobject",
    "weakref.ReferenceType": "PyWeakReference",
}


def _read(addr, size):
    """target.read with the exceptions the gdb-free scan module expects."""
    try:
        return target.read(addr, size)
    except MemoryReadError as e:
        raise MemoryError(str(e)) from None


def _read_view(addr, size):
    """Bulk reads for the scan: target.read_view (a buffer over gdb's, no copy) when
    target.py offers it, else target.read."""
    fn = getattr(target, "read_view", None) or target.read
    try:
        return fn(addr, size)
    except MemoryReadError as e:
        raise MemoryError(str(e)) from None


def _u64(addr):
    return target.read_u64(addr)


def _field_int(data, field, signed=False):
    return int.from_bytes(data[field.offset:field.offset + field.size], "little",
                          signed=signed)


def _need(*names):
    lay = target.struct_layout(*names)
    if lay is None:
        raise NoDebugInfoError("no debug info for %s" % names[0])
    return lay


# ---------------------------------------------------------------------------------------
# The interpreter's layouts (DWARF, once per objfile generation)
# ---------------------------------------------------------------------------------------
class _Lay:
    """Offsets pyref owners needs, all from DWARF; `minor` is 10..13, told apart by which
    members exist."""

    def __init__(self):
        get = target.struct_layout
        need = _need
        ol = objects.layouts()
        self.header = ol.header_size
        self.ob_size = ol.ob_size
        self.iframe = get("_PyInterpreterFrame", "struct _PyInterpreterFrame")
        if self.iframe is None:
            self.minor = 10
        elif "f_executable" in self.iframe:
            self.minor = 13
        elif "f_funcobj" in self.iframe:
            self.minor = 12
        else:
            self.minor = 11
        gc = get("PyGC_Head", "struct _gc_head")
        self.gc_size = gc.size if gc is not None else 16
        self.tuple_items = need("PyTupleObject").offset("ob_item")
        lst = need("PyListObject")
        self.list_items = lst.offset("ob_item")
        d = need("PyDictObject")
        self.ma_keys, self.ma_values = d.offset("ma_keys"), d.offset("ma_values")
        self.cell_ref = need("PyCellObject").offset("ob_ref")
        s = need("PySetObject")
        self.set_table = s.offset("table")
        self.set_small = s.field("smalltable")
        e = need("setentry")
        self.setentry, self.setentry_key = e.size, e.offset("key")
        self.md_dict = need("PyModuleObject").offset("md_dict")
        typ = need("PyTypeObject", "struct _typeobject")
        self.tp_dict = typ.offset("tp_dict")
        self.tp_dictoffset = typ.offset("tp_dictoffset")
        self.tp_members = typ.offset("tp_members")
        self.tp_base = typ.offset("tp_base")
        ht = get("PyHeapTypeObject", "struct _heaptypeobject")
        self.cached_keys = ht.offset("ht_cached_keys") if ht and "ht_cached_keys" in ht \
            else None
        md = get("PyMemberDef", "struct PyMemberDef")
        self.memberdef = md
        self.dictvalues = get("PyDictValues", "struct _dictvalues")
        self.code = need("PyCodeObject", "struct PyCodeObject")
        self.frameobj = get("PyFrameObject", "struct _frame")
        self.gen_iframe = None
        gen = get("PyGenObject")
        if gen is not None and "gi_iframe" in gen:
            self.gen_iframe = gen.offset("gi_iframe")
        pool = get("struct pool_header")
        if pool is not None and all(f in pool for f in ("ref", "freeblock", "szidx",
                                                         "nextoffset", "maxnextoffset")):
            self.pool = scan.POOL._replace(
                overhead=(pool.size + 15) & ~15, ref=pool.offset("ref"),
                freeblock=pool.offset("freeblock"), szidx=pool.offset("szidx"),
                nextoffset=pool.offset("nextoffset"),
                maxnextoffset=pool.offset("maxnextoffset"))
        else:
            self.pool = scan.POOL
        self.runtime = get("_PyRuntimeState", "struct pyruntimestate")
        self.interp = get("PyInterpreterState", "struct _is")
        self.tstate = get("PyThreadState", "struct _ts")
        self.cframe = get("_PyCFrame", "struct _PyCFrame")

    def preheader(self, flags):
        """Bytes in front of an object of a type with `flags`: GC header, then (3.11+)
        the managed dict / weakref words."""
        n = self.gc_size if flags & TPFLAGS_HAVE_GC else 0
        if self.minor == 11 and flags & TPFLAGS_MANAGED_DICT:
            n += 16
        elif self.minor >= 12 and flags & (TPFLAGS_MANAGED_DICT | TPFLAGS_MANAGED_WEAKREF):
            n += 16
        return n


def _lay():
    cache = target.objfile_cache()
    lay = cache.get("owners.lay")
    if lay is None:
        lay = cache["owners.lay"] = _Lay()
    return lay


# ---------------------------------------------------------------------------------------
# Owners: what one word is
# ---------------------------------------------------------------------------------------
class Owner:
    """One word holding the object's address, attributed.

    kind     'object' (a slot of a Python object), 'static' (a C global or a field of
             the interpreter's state), 'stack' (a C frame), 'pyframe' (an interpreter
             frame), 'heap' (a block of unknown owner)
    text     what a user reads: "list 0x... item [3]"
    holder   address of the Python object that holds the reference (for --depth), or None
    label    short name of the holder node ("list 0x...", "module 'm'", "held_static")
    edge     the slot, short ("[3]", "['k']", ".attr", "held_local")
    root     True for roots of the graph (modules, C globals, stacks, interpreter frames)
    stale    None, or why the word is stale (hidden unless --all)
    counted  True when it counts as an owner in the account
    detail   'possible' for a word shown but not counted (a live frame's unnamed slot, a
             borrowing cache, a buffer reached through an unknown pointer)
    """

    __slots__ = ("addr", "kind", "text", "holder", "label", "edge", "root", "stale",
                 "counted", "detail")

    def __init__(self, addr, kind, text, holder=None, label=None, edge=None, root=False,
                 stale=None, counted=True, detail=None):
        self.addr, self.kind, self.text = addr, kind, text
        self.holder, self.label, self.edge, self.root = holder, label, edge, root
        self.stale, self.counted, self.detail = stale, counted and stale is None, detail

    def as_dict(self):
        return {"word": "0x%x" % self.addr, "kind": self.kind, "description": self.text,
                "holder": None if self.holder is None else "0x%x" % self.holder,
                "slot": self.edge, "root": self.root, "stale": self.stale,
                "counted": self.counted}


def _stale(addr, kind, text, why):
    return Owner(addr, kind, text, stale=why, counted=False)


class _Pending:
    """A hit inside a bare buffer (no object header): who points to the buffer decides."""

    __slots__ = ("hit", "block", "start", "needles")

    def __init__(self, hit, block, start, needles):
        self.hit, self.block, self.start, self.needles = hit, block, start, needles


# ---------------------------------------------------------------------------------------
# Python objects around a word
# ---------------------------------------------------------------------------------------
def _object(addr):
    """objects.inspect(addr) when it is a live object, else None; never raises."""
    try:
        info = objects.inspect(addr)
    except (MemoryReadError, NoDebugInfoError):
        return None
    return info if info.state == objects.LIVE else None


def _full_size(lay, info):
    """Bytes from the object's start to its end, counting 3.13 inline values."""
    size = info.size or info.type.basicsize
    if lay.minor >= 13 and info.type.flags & TPFLAGS_INLINE_VALUES:
        try:
            cap = target.read(info.addr + info.type.basicsize, 1)[0]
        except MemoryReadError:
            cap = 0
        size = info.type.basicsize + 8 + 8 * cap
    return size


def _stale_size(lay, info, room):
    """Size of a freed object from its stale header (ob_size for a variable-size type),
    at most `room` bytes."""
    size = info.type.basicsize
    if info.type.itemsize and lay.ob_size is not None:
        try:
            n = abs(target.read_i64(info.addr + lay.ob_size))
        except MemoryReadError:
            n = 0
        size += info.type.itemsize * min(n, room)
    return min(size, room) if room > 0 else size


_TYPE_NAME = re.compile(r"[A-Za-z_][\w.]*\Z")


def _sane_type(t):
    """A valid TypeInfo whose tp_name is a dotted identifier: what a real type has, and
    what a pointer that only happens to lead to something type-shaped lacks."""
    return t.valid and bool(_TYPE_NAME.match(t.name))


def _fits(needed, have, debug, allocator):
    """Whether `have` bytes from the data start to the block's end are what the allocator
    gives for a request of `needed` (pymalloc rounds blocks up to 16; malloc's chunks hold
    their size to 8 bytes either way; each of the `debug` debug-allocator layers adds an
    8-byte tail after the data)."""
    needed += 8 * debug
    if allocator == "pymalloc":
        return 0 <= have - needed < 16
    return -8 <= have - needed < 24


def _object_in_block(lay, start, hit, end, debug=0, allocator="pymalloc"):
    """(info, freed_info) of the Python object whose extent (pre-header included) holds
    `hit`, for a block whose data begins at `start`; info None when there is none.
    freed_info: an ObjectInfo of a freed object found there instead (stale). Candidates
    are the block start plus each possible pre-header size; a live one wins. The object
    must lie inside the block, which ends at `end`."""
    freed = None
    for pre in (0, lay.gc_size, lay.gc_size + 16):
        obj = start + pre
        if obj + lay.header > end:
            break
        try:
            info = objects.inspect(obj)
        except (MemoryReadError, NoDebugInfoError):
            continue
        if info.type is None or not _sane_type(info.type):
            continue
        if lay.preheader(info.type.flags) != pre:
            continue
        rc = info.refcount
        if rc is not None and rc.total > 1 << 32 and not rc.immortal:
            continue  # a count no program reaches: a pointer (a GC link) read as one
        if info.state not in (objects.LIVE, objects.FREED):
            continue
        size = _full_size(lay, info) if info.state == objects.LIVE else \
            _stale_size(lay, info, end - obj)
        if info.type.itemsize and info.state == objects.LIVE:
            size = max(size, end - obj)  # items may fill the block (3.11+ generators
            #                              have an itemsize but no ob_size)
        if not (obj - pre <= hit < obj + size and obj + min(size, info.type.basicsize) <= end):
            continue
        if hit < obj:
            # A GC link points to another GC header, never to an object: an object address
            # there means this is not the block's object. Other pre-header words (managed
            # dict, values, weakrefs) count only when the block is this object's size.
            if hit >= obj - lay.gc_size and info.type.flags & TPFLAGS_HAVE_GC:
                continue
            if not _fits(pre + size, end - start, debug, allocator):
                continue
        if info.state == objects.FREED:
            freed = freed or info
            continue
        return info, None
    return None, freed


def _tcache_keys():
    """scan.tcache_keys of the target's anonymous writable regions, cached per stop."""
    cache = target.stop_cache()
    keys = cache.get("owners.tcache")
    if keys is None:
        starts = [m.start for m in target.mappings() if "w" in m.perms and
                  (not m.path or m.path == "[heap]")]
        keys = cache["owners.tcache"] = scan.tcache_keys(_read, starts)
    return keys


def _malloc_region(region):
    """scan.malloc_region of the mapping [start, end), cached per stop."""
    cache = target.stop_cache()
    key = ("owners.malloc_region", region[0])
    if key not in cache:
        m = next((m for m in target.mappings() if m.start == region[0]), None)
        cache[key] = scan.malloc_region(_read, region[0], region[1],
                                        m.path if m is not None else "")
    return cache[key]


def _locate(lay, hit, region):
    """What surrounds the word at `hit` in the heap: ('object', info), ('freed', text),
    ('block', Block, data start), or ('none', None)."""
    blk = scan.pymalloc_block(_read, hit, lay.pool)
    if blk is None and region is not None:
        blk = scan.malloc_chunk(_read, hit, region[0], region[1], free_keys=_tcache_keys(),
                                heap=_malloc_region(region) in ("heap", "arena"))
    if blk is None:
        return "none", None
    if blk.free:
        return "freed", ("in a free %s block at 0x%x" % (blk.allocator, blk.start),
                         "a free %s block" % blk.allocator)
    start = scan.data_start(_read, blk.start)
    if start > hit:
        return "none", None
    info, freed = _object_in_block(lay, start, hit, blk.start + blk.size,
                                   (start - blk.start) // scan.DEBUG_PREFIX, blk.allocator)
    if info is not None:
        return "object", info
    if freed is not None:
        return "freed", ("inside a freed %s at 0x%x (%s)" % (
            freed.type.name if freed.type else "object", freed.addr, freed.reason),
            "a freed object")
    return "block", (blk, start)


def _short(addr, n=60):
    try:
        return objects.short_repr(addr, max_len=n, max_items=3, max_depth=2)
    except (MemoryReadError, NoDebugInfoError, PyrefError):
        return "0x%x" % addr


def _obj_label(info):
    name = info.type.name
    if info.kind == "module":
        mname = objects.module_name(info)
        if mname is not None:
            return "module '%s'" % mname
    if info.kind == "type":
        return "type '%s'" % objects.type_info(info.addr).name
    if info.kind == "function":
        return _short(info.addr).replace(" at 0x%x" % info.addr, "")
    if name in ("list", "dict", "tuple", "set", "frozenset", "cell", "frame"):
        return "%s 0x%x" % (name, info.addr)
    return "%s object 0x%x" % (name, info.addr)


def _field_name(struct_name, off):
    """The deepest member of `struct_name` (DWARF) whose bytes hold offset `off`."""
    lay = target.struct_layout(struct_name, "struct " + struct_name)
    if lay is None:
        return None
    best = None
    for path, f in lay.fields.items():
        if f.bitsize or not f.offset <= off < f.offset + max(f.size, 1):
            continue
        if best is None or len(path) > len(best[0]):
            best = (path, f)
    if best is None:
        return None
    path, f = best
    if f.elem_size and f.size > f.elem_size:
        return "%s[%d]" % (path, (off - f.offset) // f.elem_size)
    return path if off == f.offset else "%s+%d" % (path, off - f.offset)


# -- attribute names ---------------------------------------------------------------------
def _keys_table(keys):
    """(entries start, entry size, key offset, value offset, nentries) of a dict keys
    object (the layouts objects.py reads too)."""
    k = _need("PyDictKeysObject", "struct _dictkeysobject")
    ix_off = k.offset("dk_indices")
    head = target.read(keys, ix_off)
    nentries = _field_int(head, k.field("dk_nentries"), signed=True)
    if "dk_log2_size" in k:
        index_bytes = 1 << _field_int(head, k.field("dk_log2_index_bytes"))
        general = target.enum_value("DictKeysKind", "DICT_KEYS_GENERAL", 0)
        unicode_ = _field_int(head, k.field("dk_kind")) != general
    else:
        size = _field_int(head, k.field("dk_size"), signed=True)
        width = 1 if size <= 0xff else 2 if size <= 0xffff else 4 if size <= 0xffffffff \
            else 8
        index_bytes = size * width
        unicode_ = False
    entry = _need("PyDictUnicodeEntry") if unicode_ else \
        _need("PyDictKeyEntry")
    return (keys + ix_off + index_bytes, entry.size, entry.offset("me_key"),
            entry.offset("me_value"), max(0, min(nentries, 1 << 24)))


def _key_text(key):
    """'name' for a str key (repr), else a short repr."""
    if not key:
        return None
    return _short(key, 60)


def _entry_key(keys, index):
    """The key object address of entry `index` of a keys table, or None."""
    try:
        entries, esz, koff, _, n = _keys_table(keys)
        if not 0 <= index < n:
            return None
        return _u64(entries + index * esz + koff) or None
    except (MemoryReadError, NoDebugInfoError):
        return None


def _attr_name(type_addr, index):
    """The name of attribute `index` of a type's shared keys (instance values)."""
    lay = _lay()
    if lay.cached_keys is None:
        return None
    try:
        keys = _u64(type_addr + lay.cached_keys)
    except MemoryReadError:
        return None
    key = _entry_key(keys, index) if keys else None
    if key is None:
        return None
    try:
        return objects.str_value(key, 200)[0]
    except (MemoryReadError, NoDebugInfoError):
        return None


def _member_name(type_addr, off):
    """The __slots__ / tp_members name at byte offset `off` of instances of the type (its
    bases included), or None."""
    lay = _lay()
    md = lay.memberdef
    if md is None:
        return None
    t = type_addr
    for _ in range(16):
        if not t:
            break
        try:
            members = _u64(t + lay.tp_members)
            if members:
                raw = target.read(members, md.size * MAX_MEMBERS)
                for i in range(MAX_MEMBERS):
                    e = raw[i * md.size:(i + 1) * md.size]
                    name = _field_int(e, md.field("name"))
                    if not name:
                        break
                    if _field_int(e, md.field("offset"), signed=True) == off:
                        return target.read_cstring(name, 200)
            t = _u64(t + lay.tp_base)
        except MemoryReadError:
            break
    return None


# -- a slot of one object ------------------------------------------------------------------
def _slot(info, hit):
    """An Owner for the word at `hit` inside the live object `info`."""
    lay = _lay()
    obj, tname, kind = info.addr, info.type.name, info.kind
    off = hit - obj
    label = _obj_label(info)

    def owner(edge, text, **kw):
        return Owner(hit, "object", "%s %s" % (label, text), holder=obj, label=label,
                     edge=edge, **kw)

    if off < 0:  # the pre-header: GC links, managed dict, values or weakref list
        if off == -24:
            return owner(".__dict__", "__dict__ (managed)")
        if off == -32 and lay.minor == 11:
            return owner(".__dict__ values", "attribute values (managed)")
        if off == -32:
            return Owner(hit, "object", "%s __weakref__ list (managed)" % label, holder=obj,
                         label=label, edge=".__weakref__", counted=False,
                         detail="possible")
        return owner("pre-header%d" % off, "pre-header word %d" % off)
    if off == 8:
        if objects.type_info(info.type_addr).flags & TPFLAGS_HEAPTYPE:
            return owner("ob_type", "ob_type (an instance owns a reference to its heap "
                         "type)")
        return owner("ob_type", "ob_type (of a static type: not a reference)",
                     counted=False, detail="possible")
    if tname in _WEAKREF_TYPES and off == lay.header:
        return owner("wr_object", "referent (a weak pointer, not a reference)",
                     counted=False, detail="possible")
    if kind == "tuple" and off >= lay.tuple_items:
        i = (off - lay.tuple_items) // 8
        n = info.body.i64(lay.ob_size)
        if i >= n:
            return owner("[%d]" % i, "item [%d], past its end (size %d)" % (i, n),
                         stale="a slot past the tuple's end (size %d)" % n)
        return owner("[%d]" % i, "item [%d]" % i)
    if tname == "cell" and off == lay.cell_ref:
        return owner("cell_contents", "contents")
    if kind in ("set", "frozenset"):
        f = lay.set_small
        if f.offset <= off < f.offset + f.size:
            if (off - f.offset) % lay.setentry == lay.setentry_key:
                return owner("{element}", "element")
    if tname == "frame" and lay.minor == 10:
        got = _frame310_slot(info, off)
        if got:
            return owner(got[0], got[1], **got[2])
    if lay.minor >= 11 and tname in ("frame", "generator", "coroutine", "async_generator"):
        got = _embedded_frame_slot(info, off)
        if got:
            return owner(got[0], got[1], **got[2])
    if lay.minor >= 13 and info.type.flags & TPFLAGS_INLINE_VALUES and \
            off >= info.type.basicsize + 8:
        i = (off - info.type.basicsize - 8) // 8
        name = _attr_name(info.type_addr, i)
        return owner("." + (name or "?%d" % i), "attribute %s" %
                     ("'%s'" % name if name else "#%d (inline values)" % i))
    if info.type.flags & TPFLAGS_HEAPTYPE or kind == "object":
        name = _member_name(info.type_addr, off)
        if name:
            return owner("." + name, "attribute '%s' (__slots__)" % name)
        try:
            dictoff = target.read_i64(info.type_addr + lay.tp_dictoffset)
        except MemoryReadError:
            dictoff = 0
        if dictoff > 0 and off == dictoff:
            return owner(".__dict__", "__dict__")
    struct_name = _STRUCT_OF.get(tname) or _STRUCT_OF.get(kind)
    field = _field_name(struct_name, off) if struct_name else None
    if field:
        return owner("." + field, "field %s" % field)
    return owner("+%d" % off, "at offset +%d" % off)


def _localsplus_name(code, i):
    """(name, is_local) of slot `i` of a 3.11+ frame's localsplus for code object `code`."""
    lay = _lay()
    c = lay.code
    try:
        raw = target.read(code, c.size)
        n = _field_int(raw, c.field("co_nlocalsplus"), signed=True)
        if 0 <= i < n:
            names = _field_int(raw, c.field("co_localsplusnames"))
            name = _u64(names + lay.tuple_items + 8 * i)
            return objects.str_value(name, 200)[0], True
        return None, False
    except (MemoryReadError, NoDebugInfoError):
        return None, i < 0


def _code_name(code):
    lay = _lay()
    c = lay.code
    try:
        raw = target.read(code, c.size)
        f = c.fields.get("co_qualname") or c.field("co_name")
        name = objects.str_value(_field_int(raw, f), 200)[0]
        fname = objects.str_value(_field_int(raw, c.field("co_filename")), 400)[0]
        return name, os.path.basename(fname)
    except (MemoryReadError, NoDebugInfoError):
        return "?", "?"


def _frame310_slot(info, off):
    """(edge, text, extra Owner arguments) of a 3.10 frame object's local or value-stack
    slot, or None. The value stack's depth is known only while the frame is suspended
    (f_stackdepth >= 0); a slot past it is stale, and any slot of a running frame may be
    a leftover."""
    lay = _lay()
    fo, c = lay.frameobj, lay.code
    base = fo.offset("f_localsplus")
    if off < base:
        return None
    i = (off - base) // 8
    try:
        code = info.body.u64(fo.offset("f_code"))
        raw = target.read(code, c.size)
        names = []
        for member in ("co_varnames", "co_cellvars", "co_freevars"):
            t = _field_int(raw, c.field(member))
            n = target.read_i64(t + lay.ob_size) if t else 0
            names += [t + lay.tuple_items + 8 * k for k in range(max(0, min(n, 4096)))]
        fname, file_ = _code_name(code)
        if i < len(names):
            name = objects.str_value(_u64(names[i]), 200)[0]
            return ("local " + name, "of %s (%s): local '%s'" % (fname, file_, name),
                    {"root": True})
        j = i - len(names)
        depth = info.body.field(fo.field("f_stackdepth"), signed=True) \
            if "f_stackdepth" in fo else -1
        text = "of %s (%s): value stack [%d]" % (fname, file_, j)
        if depth < 0:
            return ("value stack", text + " (the frame is running: live or a leftover)",
                    {"root": True, "counted": False, "detail": "possible"})
        if j >= depth:
            return ("value stack", text + ", above its top",
                    {"stale": "dead value stack slot (above the frame's stack top)"})
        return "value stack", text, {"root": True}
    except (MemoryReadError, NoDebugInfoError):
        return None


def _embedded_frame_slot(info, off):
    """(edge, text, extra Owner arguments) for a slot of the _PyInterpreterFrame inside a
    3.11+ frame object or generator, or None. Its stack top is kept while the frame is
    suspended: slots past it are stale."""
    lay = _lay()
    if info.type.name == "frame":
        f = lay.frameobj.fields.get("_f_frame_data")
        base = f.offset if f else None
    else:
        base = lay.gen_iframe
    if base is None:
        return None
    ls = lay.iframe.offset("localsplus")
    if off < base + ls:
        return None
    i = (off - base - ls) // 8
    code_f = lay.iframe.find("f_executable", "f_code")[1]
    try:
        code = _u64(info.addr + base + code_f.offset)
        stacktop = target.read_i32(info.addr + base + lay.iframe.offset("stacktop"))
    except MemoryReadError:
        return None
    name, _ = _localsplus_name(code, i)
    fname, file_ = _code_name(code)
    if name:
        return ("local " + name, "frame of %s (%s): local '%s'" % (fname, file_, name),
                {})
    text = "frame of %s (%s): value stack slot" % (fname, file_)
    if 0 <= stacktop <= i:
        return "value stack", text + ", above its top", {
            "stale": "dead value stack slot (above the frame's stack top)"}
    if stacktop < 0:
        return "value stack", text + " (running: live or a leftover)", {
            "counted": False, "detail": "possible"}
    return "value stack", text, {}


# ---------------------------------------------------------------------------------------
# Threads and C stacks
# ---------------------------------------------------------------------------------------
class _Thread:
    __slots__ = ("gdb_thread", "num", "lwp", "label", "frames", "region", "registers")


_GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12",
         "r13", "r14", "r15")


def _threads(problems):
    """[_Thread] with each thread's frames [(sp, (level, function))] innermost first, its
    stack region and its innermost registers; cached per stop. The selected thread and
    frame are restored."""
    cache = target.stop_cache()
    got = cache.get("owners.threads")
    if got is not None:
        return got
    out = []
    inf = gdb.selected_inferior()
    keep_thread = gdb.selected_thread()
    try:
        keep_frame = gdb.selected_frame()
    except gdb.error:
        keep_frame = None
    threads = sorted(inf.threads(), key=lambda t: t.num)
    if len(threads) > MAX_THREADS:
        problems.append("only the first %d of %d threads examined" % (MAX_THREADS,
                                                                      len(threads)))
    try:
        for th in threads[:MAX_THREADS]:
            t = _Thread()
            t.gdb_thread, t.num, t.lwp = th, th.num, th.ptid[1] or th.ptid[2]
            t.label = "thread %d (LWP %d)" % (th.num, t.lwp) if t.lwp else "thread %d" % th.num
            t.frames, t.region, t.registers = [], None, {}
            try:
                th.switch()
                f = gdb.newest_frame()
                for name in _GPRS:
                    try:
                        t.registers[name] = int(f.read_register(name)) & ((1 << 64) - 1)
                    except (gdb.error, ValueError):
                        break
                level = 0
                last_sp = -1
                while f is not None and level < MAX_FRAMES:
                    sp = int(f.read_register("sp")) & ((1 << 64) - 1)
                    if sp < last_sp:
                        break
                    t.frames.append((sp, (level, f.name() or "??")))
                    last_sp = sp
                    f = f.older()
                    level += 1
            except gdb.error as e:
                problems.append("%s: stack not walked: %s" % (t.label, e))
            out.append(t)
    finally:
        try:
            keep_thread.switch()
            if keep_frame is not None and keep_frame.is_valid():
                keep_frame.select()
        except gdb.error:
            pass
    maps = target.mappings()
    for t in out:
        if t.frames:
            sp = t.frames[0][0]
            m = next((m for m in maps if m.start <= sp < m.end), None)
            if m is not None:
                t.region = (m.start, m.end)
    cache["owners.threads"] = out
    return out


MAX_SCOPE_BYTES = 16384   # functions up to this size are searched for out-of-scope blocks


def _frame_variables(t, level):
    """([(start, end, name, type, in_scope)], function, 'file:line') of the C variables
    DWARF places in memory for frame `level` of thread `t`, cached per stop: the ones in
    scope at the frame's pc, then those of the function's other blocks (inlined calls
    and lexical blocks the pc is not in: their slots hold leftovers). Switches threads
    and restores the selection."""
    cache = target.stop_cache()
    key = ("owners.vars", t.num, level)
    if key in cache:
        return cache[key]
    out = []
    func, where = None, ""
    keep_thread = gdb.selected_thread()
    try:
        keep_frame = gdb.selected_frame()
    except gdb.error:
        keep_frame = None
    try:
        t.gdb_thread.switch()
        f = gdb.newest_frame()
        for _ in range(level):
            f = f.older() if f is not None else None
        if f is not None:
            func = f.name()
            sal = f.find_sal()
            if sal is not None and sal.symtab is not None:
                where = "%s:%d" % (os.path.basename(sal.symtab.filename), sal.line)
            try:
                block = f.block()
            except RuntimeError:
                block = None
            seen = set()
            fblock = None
            while block is not None and len(out) < MAX_VARS:
                seen.add((block.start, block.end))
                _block_variables(f, block, True, out)
                if block.function is not None:
                    fblock = block
                    break
                block = block.superblock
            if fblock is not None and fblock.end - fblock.start <= MAX_SCOPE_BYTES:
                for pc in range(fblock.start, fblock.end):
                    try:
                        b = gdb.block_for_pc(pc)
                    except RuntimeError:
                        continue
                    while b is not None and (b.start, b.end) not in seen and \
                            len(out) < MAX_VARS:
                        seen.add((b.start, b.end))
                        inl = _inlined_name(b, func)
                        _block_variables(f, b, False, out, inl)
                        b = b.superblock
    except gdb.error:
        pass
    finally:
        try:
            keep_thread.switch()
            if keep_frame is not None and keep_frame.is_valid():
                keep_frame.select()
        except gdb.error:
            pass
    cache[key] = (out, func, where)
    return cache[key]


def _inlined_name(block, func):
    """The name of the inlined function a block belongs to, or None (the frame's own)."""
    b = block
    while b is not None and b.function is None:
        b = b.superblock
    name = b.function.name if b is not None and b.function is not None else None
    return name if name and name != func else None


def _block_variables(frame, block, in_scope, out, inlined=None):
    for sym in block:
        if len(out) >= MAX_VARS:
            return
        if not (sym.is_variable or sym.is_argument):
            continue
        try:
            v = sym.value(frame)
            a = v.address
            if a is None:
                continue
            start = int(a)
            name = sym.name if inlined is None else "%s of inlined %s" % (sym.name,
                                                                          inlined)
            out.append((start, start + max(v.type.sizeof, 1), name,
                        str(v.type.strip_typedefs()), in_scope))
        except (gdb.error, RuntimeError, TypeError, ValueError):
            continue


def _stack_owner(t, hit):
    kind, payload = scan.stack_slot(t.frames, hit)
    if kind == "dead":
        return _stale(hit, "stack", "%s stack, below the stack pointer" % t.label,
                      "dead stack (below the stack pointer of %s)" % t.label)
    level, fname = payload
    variables, func, where = _frame_variables(t, level)
    frame = "frame #%d %s%s" % (level, func or fname, " (%s)" % where if where else "")
    for start, end, name, vtype, in_scope in variables:
        if start <= hit < end:
            var = name if hit == start else "%s+%d" % (name, hit - start)
            if vtype.endswith("]") and end - start > 8:
                var = "%s[%d]" % (name, (hit - start) // 8)
            text = "%s stack, %s, variable %s" % (t.label, frame, var)
            if not in_scope:
                return _stale(hit, "stack", text + " (out of scope at the frame's pc)",
                              "a variable out of scope (an inlined call or block that "
                              "has ended)")
            return Owner(hit, "stack", text, label="%s: %s" % (func or fname, var),
                         edge=var, root=True)
    where_text = "above the outermost frame (thread start area)" if kind == "outermost" \
        else "not a variable DWARF places there (a spill, a saved register or a temporary)"
    return Owner(hit, "stack", "%s stack, %s, %s" % (t.label, frame, where_text),
                 label="%s stack" % t.label, edge="stack", root=True, counted=False,
                 detail="possible")


# ---------------------------------------------------------------------------------------
# Interpreter frames (3.11+: localsplus in each thread's data stack)
# ---------------------------------------------------------------------------------------
def _tstates():
    """[(tstate, native thread id or None)] of every thread state, bounded."""
    lay = _lay()
    rt = target.symbol_address("_PyRuntime")
    if rt is None or lay.runtime is None or lay.interp is None or lay.tstate is None:
        return []
    out = []
    seen = set()
    head = lay.interp.find("threads.head", "tstate_head")[1]
    ntid = lay.tstate.fields.get("native_thread_id")
    try:
        interp = _u64(rt + lay.runtime.offset("interpreters.head"))
        for _ in range(64):
            if not interp or interp in seen:
                break
            seen.add(interp)
            ts = _u64(interp + head.offset)
            for _ in range(4096):
                if not ts or ts in seen:
                    break
                seen.add(ts)
                out.append((ts, target.read_u64(ts + ntid.offset) if ntid else None))
                ts = _u64(ts + lay.tstate.offset("next"))
            interp = _u64(interp + lay.interp.offset("next"))
    except MemoryReadError:
        pass
    return out


def _state_ranges(thread_by_lwp):
    """scan.RangeIndex of the interpreter and thread states (C structs that may live in
    the heap: 3.10's interpreter, every thread's state), payload (gdb type, label);
    cached per stop."""
    cache = target.stop_cache()
    got = cache.get("owners.states")
    if got is not None:
        return got
    lay = _lay()
    ranges = []
    try:
        itype = gdb.lookup_type("PyInterpreterState").strip_typedefs()
        ttype = gdb.lookup_type("PyThreadState").strip_typedefs()
        rt = target.symbol_address("_PyRuntime")
        head = lay.interp.find("threads.head", "tstate_head")[1]
        interp = _u64(rt + lay.runtime.offset("interpreters.head")) if rt else 0
        seen = set()
        for _ in range(64):
            if not interp or interp in seen:
                break
            seen.add(interp)
            ranges.append((interp, interp + itype.sizeof, (itype, "interpreter state")))
            interp = _u64(interp + lay.interp.offset("next"))
        for ts, ntid in _tstates():
            ranges.append((ts, ts + ttype.sizeof,
                           (ttype, "thread state of %s" % thread_by_lwp.get(
                               ntid, "a thread"))))
    except (gdb.error, MemoryReadError, AttributeError, TypeError):
        pass
    got = cache["owners.states"] = scan.RangeIndex(ranges)
    return got


def _state_owner(hit, found):
    start, _, (gtype, label) = found
    path, stale = _type_path(gtype, start, hit - start)
    text = "%s 0x%x field %s" % (label, start, path or "+%d" % (hit - start))
    if stale:
        return _stale(hit, "static", text, stale)
    if path and any(word in path for word in _BORROWING_CACHES):
        return Owner(hit, "static", text + " (a cache of borrowed pointers)", root=True,
                     label=label, edge=path, counted=False, detail="possible")
    return Owner(hit, "static", text, root=True, label=label, edge=path or "?")


def _pyframe_ranges(thread_by_lwp):
    """scan.RangeIndex of 3.11+ interpreter frames' localsplus arrays (payload ('frame',
    frame, code, nlocalsplus, stacktop, thread label)) and of each thread's dead data stack
    (payload ('dead', thread label)); cached per stop. Empty on 3.10."""
    cache = target.stop_cache()
    got = cache.get("owners.pyframes")
    if got is not None:
        return got
    lay = _lay()
    ranges = []
    if lay.minor >= 11 and lay.tstate is not None:
        f = lay.iframe
        code_f = f.find("f_executable", "f_code")[1]
        ls = f.offset("localsplus")
        c = lay.code
        total = 0
        for ts, ntid in _tstates():
            label = thread_by_lwp.get(ntid, "thread state 0x%x" % ts)
            try:
                if "current_frame" in lay.tstate:
                    frame = _u64(ts + lay.tstate.offset("current_frame"))
                else:
                    cf = _u64(ts + lay.tstate.offset("cframe"))
                    frame = _u64(cf + lay.cframe.offset("current_frame")) if cf else 0
                seen = set()
                while frame and frame not in seen and total < MAX_PYFRAMES:
                    seen.add(frame)
                    total += 1
                    raw = target.read(frame, f.size)
                    code = _field_int(raw, code_f)
                    stacktop = _I32.unpack_from(raw, f.offset("stacktop"))[0]
                    craw = target.read(code, c.size)
                    nlp = _field_int(craw, c.field("co_nlocalsplus"), signed=True)
                    stack = _field_int(craw, c.field("co_stacksize"), signed=True)
                    if 0 <= nlp < 1 << 16 and 0 <= stack < 1 << 16:
                        start = frame + ls
                        ranges.append((start, start + 8 * (nlp + stack),
                                       ("frame", frame, code, nlp, stacktop, label)))
                    frame = _field_int(raw, f.field("previous"))
                if "datastack_top" in lay.tstate:
                    top = _u64(ts + lay.tstate.offset("datastack_top"))
                    chunk = _u64(ts + lay.tstate.offset("datastack_chunk"))
                    if chunk and top:
                        size = _u64(chunk + 8)  # struct _stack_chunk: previous, size, ...
                        if chunk < top <= chunk + size < chunk + (1 << 32):
                            ranges.append((top, chunk + size, ("dead", label)))
            except MemoryReadError:
                continue
    got = scan.RangeIndex(ranges)
    cache["owners.pyframes"] = got
    return got


def _pyframe_owner(hit, payload):
    if payload[0] == "dead":
        return _stale(hit, "pyframe", "%s interpreter data stack, above its top" % payload[1],
                      "dead interpreter stack (above the data stack top of %s)" % payload[1])
    _, frame, code, nlp, stacktop, label = payload
    i = (hit - frame - _lay().iframe.offset("localsplus")) // 8
    fname, file_ = _code_name(code)
    where = "%s Python frame %s (%s)" % (label, fname, file_)
    if i < nlp:
        name, _ = _localsplus_name(code, i)
        return Owner(hit, "pyframe", "%s: local '%s'" % (where, name),
                     label="%s() in %s" % (fname, label), edge=name, root=True)
    depth = i - nlp
    if stacktop >= 0:
        if i < stacktop:
            return Owner(hit, "pyframe", "%s: value stack [%d]" % (where, depth),
                         label="%s() in %s" % (fname, label), edge="stack[%d]" % depth,
                         root=True)
        return _stale(hit, "pyframe", "%s: value stack [%d], above its top" % (where, depth),
                      "dead value stack slot (above the frame's stack top)")
    return Owner(hit, "pyframe", "%s: value stack [%d] (the frame is running: live or a "
                 "leftover)" % (where, depth), label="%s() in %s" % (fname, label),
                 edge="stack[%d]" % depth, root=True, counted=False, detail="possible")


# ---------------------------------------------------------------------------------------
# C globals
# ---------------------------------------------------------------------------------------
def _symbol(addr, budget):
    """(name, offset, section, file) of the ELF symbol at `addr` (gdb's `info symbol`),
    or None. `budget` is a one-element list counting down the lookups allowed."""
    if budget[0] <= 0:
        return None
    budget[0] -= 1
    try:
        text = gdb.execute("info symbol 0x%x" % addr, to_string=True).strip()
    except gdb.error:
        return None
    if not text or text.startswith("No symbol"):
        return None
    head, _, rest = text.partition(" in section ")
    name, _, off = head.partition(" + ")
    section, _, path = rest.partition(" of ")
    return (name.strip(), int(off) if off.strip().isdigit() else 0, section.strip(),
            os.path.basename(path.strip()) if path else "the executable")


def _linkage(name):
    """'global' for an external symbol, 'static' for a file- or function-static one."""
    try:
        sym = gdb.lookup_global_symbol(name)
    except gdb.error:
        sym = None
    if sym is not None:
        return "global"
    return "static" if "." in name or _has_static(name) else "global"


def _has_static(name):
    lookup = getattr(gdb, "lookup_static_symbol", None)
    try:
        return lookup is not None and lookup(name) is not None
    except gdb.error:
        return False


def _static_owner(hit, sym):
    name, off, section, lib = sym
    var = name
    stale = None
    if off:
        path, stale = _member_path(name, off)
        var = "%s.%s" % (name, path) if path else "%s+%d" % (name, off)
    text = "C %s %s in %s (%s)" % (_linkage(name), var, lib, section)
    if stale:
        return _stale(hit, "static", text, stale)
    if any(word in var for word in _BORROWING_CACHES):
        return Owner(hit, "static", text + " (a cache of borrowed pointers)", root=True,
                     label="%s (%s)" % (name, lib), edge=var, counted=False,
                     detail="possible")
    return Owner(hit, "static", text, label="%s (%s)" % (name, lib), edge=var, root=True)


# Interpreter caches that keep pointers without owning references (C globals or members).
_BORROWING_CACHES = ("type_cache", "method_cache")


def _member_path(name, off):
    """(path, stale) of byte `off` inside C variable `name` from its DWARF type: 'a.b[3].c'
    or None; stale is a reason when the word is a slot past an object free list's count
    (a sibling member `numfree`)."""
    try:
        sym = gdb.lookup_global_symbol(name)
        if sym is None and hasattr(gdb, "lookup_static_symbol"):
            sym = gdb.lookup_static_symbol(name)
        if sym is None or sym.is_function:
            return None, None
        gtype = sym.type.strip_typedefs()
        base = int(sym.value().address)
    except (gdb.error, RuntimeError, TypeError, ValueError):
        return None, None
    return _type_path(gtype, base, off)


def _type_path(gtype, base, off):
    """(path, stale) of byte `off` of a C object of type `gtype` at `base`; see
    _member_path."""
    parts = []
    stale = None
    pos = 0
    for _ in range(16):
        code = gtype.code
        if code == gdb.TYPE_CODE_ARRAY:
            elem = gtype.target().strip_typedefs()
            if not elem.sizeof:
                break
            i = (off - pos) // elem.sizeof
            parts.append("[%d]" % i)
            pos += i * elem.sizeof
            gtype = elem
            continue
        if code not in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
            break
        found = None
        for f in gtype.fields():
            if not hasattr(f, "bitpos") or f.bitsize:
                continue
            start = pos + f.bitpos // 8
            if start <= off < start + f.type.strip_typedefs().sizeof:
                found = f
                break
        if found is None:
            break
        if found.type.strip_typedefs().code == gdb.TYPE_CODE_ARRAY:
            numfree = next((f for f in gtype.fields() if f.name == "numfree"), None)
            if numfree is not None:
                elem = found.type.strip_typedefs().target().strip_typedefs()
                i = (off - pos - found.bitpos // 8) // max(elem.sizeof, 1)
                try:
                    n = target.read_i32(base + pos + numfree.bitpos // 8)
                except MemoryReadError:
                    n = None
                if n is not None and i >= n:
                    stale = "an object free list slot past its count (%d)" % n
                elif n is not None:
                    stale = "an object free list (the object was freed and is cached)"
        if found.name:
            parts.append(("." if parts else "") + found.name)
        pos += found.bitpos // 8
        gtype = found.type.strip_typedefs()
    return "".join(parts) or None, stale


# ---------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------
class _Memory:
    """The regions to scan and how to tell them apart; built once per command."""

    def __init__(self, problems, command="pyref owners"):
        self.problems = problems
        self.command = command          # names the command in progress lines
        maps = target.mappings()
        self.maps = scan.RangeIndex((m.start, m.end, m) for m in maps)
        self.threads = _threads(problems)
        self.stacks = scan.RangeIndex((t.region[0], t.region[1], t) for t in self.threads
                                      if t.region)
        self.by_lwp = {t.lwp: t.label for t in self.threads}
        self.states = _state_ranges(self.by_lwp)
        try:
            self.pyframes = _pyframe_ranges(self.by_lwp)
        except (MemoryReadError, NoDebugInfoError) as e:
            problems.append("interpreter frames not read: %s" % e)
            self.pyframes = scan.RangeIndex()
        self.ring_ranges, self.ring_records = self._rings()
        readable = [(m.start, m.end) for m in maps if "r" in m.perms and "w" in m.perms
                    and not m.path.startswith(("[vvar", "[vsyscall", "[vdso"))]
        regions = scan.subtract(readable, self.ring_ranges)
        # The heap and anonymous memory first: Python's objects live there, so a pass
        # that stops once it has its answers (buffer and dict owners) stops sooner.
        self.regions = sorted(regions, key=lambda r: (self._rank_of(r[0]), r[0]))
        self.total = sum(e - s for s, e in self.regions)
        self.symbol_budget = [MAX_SYMBOL_LOOKUPS]
        self.passes = []

    def _rank_of(self, addr):
        m = self.region(addr)
        return 0 if m is None or not m.path or m.path == "[heap]" else 1

    def _rings(self):
        try:
            rs = ringcmd.ring_set(required=False)
        except PyrefError:
            return [], None
        out = []
        for ring in rs.rings:
            h = ring.header
            out.append((ring.addr, ring.addr + max(h.header_size, 4096)))
            for t in ring.threads:
                if t.ring:
                    out.append((t.ring, t.ring + h.capacity * h.record_size))
        return out, rs

    def search(self, needles, what, on_hits=None):
        """One scan pass: {needle: [word address]}; `on_hits` as scan.scan takes it."""
        progress = None
        if self.total > PROGRESS_BYTES:
            state = {"t": time.perf_counter(), "shown": False}

            def progress(done, total):  # a line a second, and the last if any was shown
                now = time.perf_counter()
                if now - state["t"] >= 1.0 or (done == total and state["shown"]):
                    state["t"], state["shown"] = now, True
                    gdb.write("%s: %s: %d of %d MiB scanned\n" %
                              (self.command, what, done >> 20, total >> 20))
                    gdb.flush()
        res = scan.scan(_read_view, self.regions, needles, limit=MAX_HITS,
                        progress=progress, on_hits=on_hits)
        self.passes.append(res)
        if res.cut:
            self.problems.append("%s: more than %d words hold %s; the rest are not shown"
                                 % (what, MAX_HITS, ", ".join("0x%x" % n for n in
                                                              sorted(res.cut))))
        return res.hits

    def region(self, addr):
        got = self.maps.find(addr)
        return got[2] if got else None

    def after_file(self, m):
        """Whether anonymous mapping `m` directly follows a file's mapping: a library's or
        the executable's .bss (or, in a core, the heap right after the executable's)."""
        if m is None or m.path:
            return False
        prev = self.maps.find(m.start - 1)
        return prev is not None and bool(prev[2].path) and not prev[2].path.startswith("[")


def _attribute(mem, hit):
    """Owner or _Pending for one word holding a searched address."""
    lay = _lay()
    st = mem.stacks.find(hit)
    if st is not None:
        return _stack_owner(st[2], hit)
    pf = mem.pyframes.find(hit)
    if pf is not None:
        return _pyframe_owner(hit, pf[2])
    cs = mem.states.find(hit)
    if cs is not None:
        return _state_owner(hit, cs)
    m = mem.region(hit)
    path = m.path if m is not None else ""
    if (path and not path.startswith("[")) or mem.after_file(m):  # data or bss: C globals
        sym = _symbol(hit, mem.symbol_budget)
        if sym is not None:
            return _static_owner(hit, sym)
    what, got = _locate(lay, hit, (m.start, m.end) if m is not None else None)
    if what == "object":
        return _slot(got, hit)
    if what == "freed":
        return _stale(hit, "heap", "heap word " + got[0], got[1])
    if what == "block":
        blk, start = got
        return _Pending(hit, blk, start, _block_needles(lay, start, hit))
    if path != "[heap]":
        sym = _symbol(hit, mem.symbol_budget)
        if sym is not None:
            return _static_owner(hit, sym)
    return Owner(hit, "heap", "heap word in %s, no allocator block or object found around "
                 "it (owner unknown)" % (path or "anonymous memory"), root=True,
                 label="heap 0x%x" % hit, edge="heap")


def _block_needles(lay, start, hit):
    """{needle: (kind, base)}: values a pointer to the buffer holding `hit` may have.
    'start' the buffer start (list items, dict keys, set table, 3.10/3.13 values); 'values'
    a 3.11/3.12 values array (after its prefix bytes) and 'values-1' its 3.12 tagged
    form in an instance's pre-header."""
    out = {start: ("start", start)}
    if lay.minor in (11, 12):
        for p in scan.values_prefixes(_read, start, hit - start):
            v = start + p
            out[v] = ("values", v)
            if lay.minor == 12:
                out[v - 1] = ("values", v)
    return out


def _resolve_pending(mem, pending):
    """Owners for buffers: a second pass for the pointers to their starts. A buffer has
    one owning object (a list's ob_item, a dict's ma_keys...): once it is found, its
    needles are dropped, and the pass ends when every buffer has its owner."""
    lay = _lay()
    needles = {}
    for p in pending:
        for n in p.needles:
            needles.setdefault(n, []).append(p)
    best, done = {}, set()

    def on_hits(found):
        for n, wheres in found.items():
            for p in needles.get(n, ()):
                if p.hit in done:
                    continue
                kind, base = p.needles[n]
                for where in wheres:
                    try:
                        o = _buffer_owner(mem, lay, p, kind, base, n, where)
                    except (MemoryReadError, NoDebugInfoError):
                        o = None
                    if o is None:
                        continue
                    if p.hit not in best or _rank(o) > _rank(best[p.hit]):
                        best[p.hit] = o
                    if o.kind == "object" and o.holder is not None and o.detail is None:
                        done.add(p.hit)  # a list, dict, set or instance: the owner
                        break
        return {n for n, ps in needles.items() if all(p.hit in done for p in ps)}

    if needles:
        mem.search(list(needles), "buffer owners", on_hits)
    out = {}
    for p in pending:
        o = best.get(p.hit)
        if o is None:
            o = Owner(p.hit, "heap", "heap buffer 0x%x+%d (%s block), no pointer to it "
                      "found (owner unknown)" % (p.start, p.hit - p.start,
                                                 p.block.allocator),
                      root=True, label="buffer 0x%x" % p.start, edge="+%d" %
                      (p.hit - p.start))
        out[p.hit] = o
    return out


def _rank(o):
    return (o.stale is None, o.kind == "object", o.detail is None)


def _buffer_owner(mem, lay, p, kind, base, needle, where):
    """The Owner of p.hit given a word at `where` holding `needle`, a pointer to the
    buffer, or None when that word says nothing useful."""
    m = mem.region(where)
    what, info = _locate(lay, where, (m.start, m.end) if m is not None else None)
    i = (p.hit - base) // 8
    if what != "object":
        if mem.stacks.find(where) or mem.pyframes.find(where) or what == "freed":
            return None
        return Owner(p.hit, "heap", "heap buffer 0x%x+%d, pointed to from 0x%x" % (
            p.start, p.hit - p.start, where), root=True, label="buffer 0x%x" % p.start,
            edge="+%d" % (p.hit - p.start), detail="possible")
    off = where - info.addr
    label = _obj_label(info)

    def owner(edge, text, stale=None):
        return Owner(p.hit, "object", "%s %s" % (label, text), holder=info.addr, label=label,
                     edge=edge, stale=stale)

    if info.kind == "list" and off == lay.list_items and needle == p.start:
        n = info.body.i64(lay.ob_size)
        if i >= n:
            return owner("[%d]" % i, "item [%d], past its end (size %d)" % (i, n),
                         stale="a slot past the list's end (size %d)" % n)
        return owner("[%d]" % i, "item [%d]" % i)
    if info.kind == "dict" and off == lay.ma_keys and needle == p.start:
        return _dict_keys_owner(info, p, owner)
    if info.kind == "dict" and off == lay.ma_values:
        return _dict_values_owner(info, p, owner, needle)
    if info.kind in ("set", "frozenset") and off == lay.set_table and needle == p.start:
        return owner("{element}", "element")
    if kind == "values" and off in (-24, -32):  # a 3.11/3.12 instance's values array
        # The prefix ends with its own size, the number of attributes set, then their
        # indexes (new_values(), _PyDictValues_AddToInsertionOrder()): any other slot is
        # NULL or the allocator block's leftover tail, not an attribute.
        try:
            prefix = target.read(p.start, base - p.start)
        except MemoryReadError:
            prefix = None
        if prefix is not None and len(prefix) >= 2:
            used = {prefix[-3 - k] for k in range(min(prefix[-2], len(prefix) - 2))}
            if i not in used:
                return owner(".?%d" % i, "values array slot #%d, set by no attribute" % i,
                             stale="a values array slot no attribute uses")
        name = _attr_name(info.type_addr, i)
        return owner("." + (name or "?%d" % i), "attribute %s" % (
            "'%s'" % name if name else "#%d (values array)" % i))
    # Some other object's field points at the buffer: an owner, but not one of the known
    # shapes, so the search goes on for a better one (detail 'field').
    inner = _slot(info, where)
    return Owner(p.hit, "object", "buffer 0x%x+%d of %s" % (p.start, p.hit - p.start,
                                                          inner.text),
                 holder=info.addr, label=label, edge="%s+%d" % (inner.edge,
                                                               p.hit - p.start),
                 detail="field")


def _dict_keys_owner(info, p, owner):
    try:
        entries, esz, koff, voff, n = _keys_table(p.start)
    except (MemoryReadError, NoDebugInfoError):
        return owner("?", "key table")
    if p.hit < entries:
        return owner("?", "key table header/indices")
    j, within = divmod(p.hit - entries, esz)
    if j >= n:
        return owner("?", "key table entry %d, past the used entries" % j,
                     stale="a dict entry past the used ones")
    try:
        key = _u64(entries + j * esz + koff)
        value = _u64(entries + j * esz + voff)
    except MemoryReadError:
        key = value = 0
    if within == koff:
        if not value:
            return owner("{key}", "key of a deleted entry", stale="a deleted dict entry")
        return owner("{key}", "key (value %s)" % _short(value, 40))
    if within == voff:
        kt = _key_text(key)
        if kt is None:
            return owner("[?]", "value of a deleted entry", stale="a deleted dict entry")
        return owner("[%s]" % kt, "value for key %s" % kt)
    return owner("?", "key table entry %d +%d" % (j, within))


def _dict_values_owner(info, p, owner, needle):
    lay = _lay()
    base = needle
    if lay.dictvalues is not None and "capacity" in lay.dictvalues:  # 3.13: header first
        base = needle + lay.dictvalues.offset("values")
    if lay.minor == 12 and needle & 1:
        base = needle + 1
    i = (p.hit - base) // 8
    keys = info.body.u64(lay.ma_keys)
    kt = _key_text(_entry_key(keys, i))
    return owner("[%s]" % (kt or "?"), "value for key %s" % (kt or "#%d" % i))


# -- promotion: a dict's own owner ---------------------------------------------------------
def _promote(mem, owners):
    """Rewrites owners that are a dict's slot into the slot of what owns the dict: a
    module's global, a type's attribute, an instance's attribute. One more pass."""
    lay = _lay()
    dicts = {}
    for o in owners:
        if o.kind == "object" and o.holder is not None and o.stale is None and \
                o.label.startswith("dict "):
            dicts.setdefault(o.holder, []).append(o)
    if not dicts:
        return
    found_owner = {}

    def on_hits(found):
        for d, wheres in found.items():
            for where in wheres:
                got = _dict_owner(mem, lay, where)
                if got is not None and (d not in found_owner or
                                        got[0] > found_owner[d][0]):
                    found_owner[d] = got
        return set(found_owner)  # a dict belongs to one module, type or instance

    mem.search(list(dicts), "dict owners", on_hits)
    for d, os_ in dicts.items():
        best = found_owner.get(d)
        if best is None:
            continue
        rank, info = best
        try:
            label = _obj_label(info)
        except (MemoryReadError, NoDebugInfoError):
            label = "%s object 0x%x" % (info.type.name, info.addr)
        for o in os_:
            key = o.edge[1:-1] if o.edge.startswith("[") else o.edge
            if rank == 3:
                name = key.strip("'")
                o.text = "%s global %s (in its __dict__ 0x%x)" % (label, key, d)
                o.edge, o.root = name, True
            else:
                o.text = "%s attribute %s (in its __dict__ 0x%x)" % (label, key, d)
                o.edge = "." + key.strip("'")
            o.holder, o.label = info.addr, label


def _dict_owner(mem, lay, where):
    """(rank, info) when the word at `where` is the dict slot of a module (3), a type (2)
    or an instance (1), else None."""
    m = mem.region(where)
    try:
        what, info = _locate(lay, where, (m.start, m.end) if m is not None else None)
    except (MemoryReadError, NoDebugInfoError):
        return None
    if what != "object":
        return None
    off = where - info.addr
    if info.kind == "module" and off == lay.md_dict:
        return 3, info
    if info.kind == "type" and off == lay.tp_dict:
        return 2, info
    if off == -24 and lay.minor >= 11 and info.type.flags & TPFLAGS_MANAGED_DICT:
        return 1, info
    if lay.minor == 10 or not info.type.flags & TPFLAGS_MANAGED_DICT:
        try:
            dictoff = target.read_i64(info.type_addr + lay.tp_dictoffset)
        except MemoryReadError:
            dictoff = 0
        if dictoff > 0 and off == dictoff:
            return 1, info
    return None


def owners_of(mem, targets):
    """{target: [Owner]} for each address in `targets`, sorted by word address."""
    hits = mem.search(targets, "pass 1")
    result = {}
    pending = []
    for t in targets:
        lst = result[t] = []
        words = hits.get(t, [])
        for i, h in enumerate(words):
            if i >= MAX_ATTRIBUTED:
                lst.append(Owner(h, "heap", "not attributed (more than %d words)" %
                                 MAX_ATTRIBUTED, counted=False, detail="possible"))
                continue
            try:
                o = _attribute(mem, h)
            except (MemoryReadError, NoDebugInfoError) as e:
                o = Owner(h, "heap", "cannot attribute: %s" % e, counted=False,
                          detail="possible")
            if isinstance(o, _Pending):
                pending.append((t, o))
            else:
                lst.append(o)
    if pending:
        resolved = _resolve_pending(mem, [p for _, p in pending])
        for t, p in pending:
            result[t].append(resolved[p.hit])
    _promote(mem, [o for lst in result.values() for o in lst])
    for t in targets:
        result[t].sort(key=lambda o: o.addr)
    return result


def register_hits(mem, addr):
    """['rbx of thread 1 (LWP n)'] for innermost registers equal to `addr`."""
    out = []
    for t in mem.threads:
        for name, value in t.registers.items():
            if value == addr:
                out.append("%s of %s" % (name, t.label))
    return out


# ---------------------------------------------------------------------------------------
# The account and the ring
# ---------------------------------------------------------------------------------------
def _events(rs, addr):
    return events.from_records(rs.records_for(addr), ringcmd.site_of)


def ring_holders(rs, addr):
    """[(file, line, func, api, count)]: C sites that acquired references to `addr` in
    its current lifetime and did not release them, from the ring."""
    if rs is None or not rs.rings:
        return []
    groups = {}
    for e in verdict.unreleased(_events(rs, addr)):
        key = (e.file, e.line, e.func, e.api)
        groups[key] = groups.get(key, 0) + 1
    return [k + (n,) for k, n in sorted(groups.items(), key=lambda kv: -kv[1])]


def _ring_coverage(rs):
    """One line on how much history the ring holds, or None when it never wrapped."""
    if rs is None:
        return None
    wrapped = [r for r in rs.rings if r.overwritten]
    if not wrapped:
        return None
    kept = sum(r.decoded for r in rs.rings)
    lost = sum(r.overwritten for r in rs.rings)
    first = min((r.first_seq for r in rs.rings if r.first_seq is not None), default=None)
    last = max((r.last_seq for r in rs.rings if r.last_seq is not None), default=None)
    span = " (sequence %d..%d)" % (first, last) if first is not None else ""
    return ("the ring wrapped: it holds the last %d of %d transitions%s; references "
            "acquired before that are not seen, and releases of them are ignored" %
            (kept, kept + lost, span))


def _site(file_, line, func):
    return decode.where(decode.Site(0, file_, line, func) if file_ is not None else None)


# ---------------------------------------------------------------------------------------
# pyref owners: the report
# ---------------------------------------------------------------------------------------
class Report:
    """Everything `pyref owners` prints, as data (text and JSON are made from it)."""

    def __init__(self, addr):
        self.addr = addr
        self.info = None
        self.owners = []                # Owners of the object itself
        self.graph_edges = []           # (holder key, held addr, Owner)
        self.graph_nodes = {}           # key -> label
        self.registers = []
        self.ring_records = 0
        self.holders = []
        self.coverage = None
        self.problems = []
        self.levels = 0
        self.mem = None


def _node_key(o):
    if o.holder is not None:
        return o.holder
    return "root:%s" % o.label


def build_report(addr, depth=1):
    """The Report of `pyref owners` for the object at `addr`, following owners `depth`
    levels up."""
    target.require_target()
    rep = Report(addr)
    try:
        rep.info = objects.inspect(addr)
    except MemoryReadError:
        raise PyrefError("cannot read memory at 0x%x: no object there" % addr) from None
    _lay()
    mem = rep.mem = _Memory(rep.problems)
    frontier = [addr]
    visited = {addr}
    rep.graph_nodes[addr] = _target_label(rep.info)
    for level in range(depth):
        found = owners_of(mem, frontier)
        rep.levels = level + 1
        nxt = []
        for held in frontier:
            for o in found[held]:
                if held == addr:
                    rep.owners.append(o)
                if o.stale is not None or not o.counted:
                    continue
                key = _node_key(o)
                rep.graph_edges.append((key, held, o))
                if key not in rep.graph_nodes:
                    rep.graph_nodes[key] = o.label or "?"
                if o.holder is not None and not o.root and o.holder not in visited:
                    if len(visited) >= MAX_NODES:
                        cut = "graph cut at %d objects" % MAX_NODES
                        if cut not in rep.problems:
                            rep.problems.append(cut)
                        continue
                    visited.add(o.holder)
                    nxt.append(o.holder)
        if len(nxt) > MAX_FRONTIER:
            rep.problems.append("level %d: only %d of %d owners searched further" % (
                level + 2, MAX_FRONTIER, len(nxt)))
            nxt = nxt[:MAX_FRONTIER]
        frontier = nxt
        if not frontier:
            break
    if depth > 1 and frontier:
        rep.problems.append("--depth %d reached: the owners of %d object%s were not "
                            "searched" % (depth, len(frontier),
                                          "" if len(frontier) == 1 else "s"))
    rep.registers = register_hits(mem, addr)
    rs = mem.ring_records
    if rs is not None and rs.rings:
        rep.ring_records = len(rs.records_for(addr))
        rep.holders = ring_holders(rs, addr)
        rep.coverage = _ring_coverage(rs)
    return rep


def _target_label(info):
    if info.state == objects.LIVE:
        return "%s\\n%s" % (_obj_label(info), _short(info.addr, 40))
    return "0x%x (%s)" % (info.addr, info.state)


def _refcount(info):
    """(N, immortal) or (None, False)."""
    rc = info.refcount
    if rc is None or info.state != objects.LIVE:
        return None, False
    return rc.total, bool(rc.immortal)


def report_text(rep, show_all=False):
    info = rep.info
    out = []
    n, immortal = _refcount(info)
    if info.state == objects.LIVE:
        out.append("0x%x: %s %s, refcount %s" % (rep.addr, info.type.name,
                                                  _short(rep.addr, 60), info.refcount))
    else:
        out.append("0x%x: %s%s" % (rep.addr, info.state,
                                   ": " + info.reason if info.reason else ""))
    shown = [o for o in rep.owners if show_all or o.stale is None]
    counted = [o for o in rep.owners if o.counted]
    possible = [o for o in rep.owners if o.stale is None and not o.counted]
    stale = [o for o in rep.owners if o.stale is not None]
    if not shown:
        out.append("no owners found in memory")
    else:
        out.append("owners (%d word%s):" % (len(shown), "" if len(shown) == 1 else "s"))
        for o in shown:
            mark = "possible: " if not o.counted and not o.stale else ""
            why = "  [stale: %s]" % o.stale if o.stale else ""
            out.append("  0x%x  %s%s%s" % (o.addr, mark, o.text, why))
    if rep.levels > 1:
        out.append("owner graph (%d level%s):" % (rep.levels, "" if rep.levels == 1
                                                  else "s"))
        out.extend(_tree_lines(rep))
    if rep.registers:
        out.append("also in register%s: %s" % ("" if len(rep.registers) == 1 else "s",
                                                ", ".join(rep.registers)))
    k = len(counted)
    if immortal:
        out.append("account: immortal object (refcount %s): the count says nothing; "
                   "%d owner%s found" % (info.refcount, k, "" if k == 1 else "s"))
    elif n is not None:
        u = n - k
        line = "account: refcount %d, %d owner%s found, %d unexplained" % (
            n, k, "" if k == 1 else "s", u)
        if u < 0:
            line += " (more pointers than references: some holders borrow)"
        out.append(line)
    if possible:
        out.append("  (%d possible word%s not counted: stack slots no variable claims, "
                   "borrowing caches, weak or static-type pointers, buffers reached from "
                   "unknown memory)" % (len(possible), "" if len(possible) == 1 else "s"))
    if rep.holders:
        out.append("ring: C sites holding references they acquired and never released:")
        for file_, line, func, api, count in rep.holders:
            out.append("  %s %s: %d" % (_site(file_, line, func), api or "", count))
    elif rep.mem.ring_records is not None and rep.mem.ring_records.rings:
        out.append("ring: no C site holds an unreleased reference to it")
    if rep.coverage:
        out.append("  (%s)" % rep.coverage)
    hidden = []
    if stale and not show_all:
        kinds = {}
        for o in stale:
            kinds[o.stale.split(" (")[0]] = kinds.get(o.stale.split(" (")[0], 0) + 1
        hidden.append("%d stale word%s (%s)" % (len(stale), "" if len(stale) == 1 else "s",
                                                ", ".join("%d %s" % (v, k) for k, v in
                                                          sorted(kinds.items()))))
    if rep.ring_records:
        hidden.append("%d record%s in the pyref ring (history, not owners)" % (
            rep.ring_records, "" if rep.ring_records == 1 else "s"))
    if hidden:
        out.append("not shown: " + "; ".join(hidden) +
                   ("; --all shows the stale words" if stale and not show_all else ""))
    for p in rep.problems:
        out.append("note: " + p)
    out.append(_scan_line(rep.mem))
    return "\n".join(out) + "\n"


def _scan_line(mem):
    return "memory: " + _scan_summary(mem)


def _scan_summary(mem):
    total = sum(r.scanned for r in mem.passes)
    secs = sum(r.seconds - r.callback_seconds for r in mem.passes)
    unread = sum(r.unreadable for r in mem.passes)
    rate = total / secs / 1e9 if secs > 0 else 0.0
    early = sum(1 for r in mem.passes if r.stopped_early)
    return "%.1f MiB searched; %d pass%s read %.1f MiB in %.2f s (%.2f GB/s)%s%s" % (
        mem.total / 1048576.0, len(mem.passes), "" if len(mem.passes) == 1 else "es",
        total / 1048576.0, secs, rate,
        " (%d stopped once answered)" % early if early else "",
        "; %d bytes unreadable" % unread if unread else "")


def _tree_lines(rep):
    """The graph as an indented tree from the object up to its roots."""
    by_held = {}
    for key, held, o in rep.graph_edges:
        by_held.setdefault(held, []).append((key, o))
    lines = []
    printed = set()

    def walk(node, indent, path):
        for key, o in by_held.get(node, ()):
            lab = rep.graph_nodes.get(key, "?")
            extra = ""
            if key in path:
                extra = "  (cycle)"
            elif key in printed and key in by_held:
                extra = "  (shown above)"
            lines.append("%s<- %s %s%s" % ("  " * indent, lab, o.edge, extra))
            if not extra and key in by_held:
                printed.add(key)
                walk(key, indent + 1, path | {key})
    walk(rep.addr, 1, {rep.addr})
    return lines


def report_json(rep, show_all=False):
    info = rep.info
    n, immortal = _refcount(info)
    counted = [o for o in rep.owners if o.counted]
    return json.dumps({
        "address": "0x%x" % rep.addr,
        "type": info.type.name if info.type else None, "state": info.state,
        "refcount": n, "immortal": immortal,
        "owners": [o.as_dict() for o in rep.owners if show_all or o.stale is None],
        "hidden_stale": 0 if show_all else sum(1 for o in rep.owners if o.stale),
        "account": {"refcount": n, "found": len(counted),
                    "unexplained": None if n is None or immortal else n - len(counted)},
        "registers": rep.registers,
        "ring": {"records": rep.ring_records, "coverage": rep.coverage,
                 "holders": [{"file": f, "line": ln, "function": fn, "api": api,
                              "count": c} for f, ln, fn, api, c in rep.holders]},
        "graph": {"nodes": [{"id": _key_text_id(k), "label": v}
                            for k, v in rep.graph_nodes.items()],
                  "edges": [{"from": _key_text_id(k), "to": _key_text_id(h),
                             "slot": o.edge, "description": o.text}
                            for k, h, o in rep.graph_edges]},
        "scan": {"bytes": rep.mem.total, "passes": len(rep.mem.passes),
                 "seconds": round(sum(r.seconds for r in rep.mem.passes), 4),
                 "accelerated": scan.accelerated()},
        "problems": rep.problems}, indent=1)


def _key_text_id(k):
    return "0x%x" % k if isinstance(k, int) else k


def write_dot(rep, path):
    """Writes the owner graph as Graphviz to `path`; returns the PNG's path when `dot`
    made one, else None."""
    def q(s):
        return '"%s"' % str(s).replace("\\", "\\\\").replace('"', '\\"').replace(
            "\\\\n", "\\n")

    ids = {}
    for k in rep.graph_nodes:
        ids[k] = "n%d" % len(ids)
    lines = ["digraph owners {", "  rankdir=BT;",
             '  node [shape=box, fontname="monospace", fontsize=10];',
             '  edge [fontname="monospace", fontsize=9];']
    roots = {k for k, _, o in rep.graph_edges if o.root}
    for k, label in rep.graph_nodes.items():
        style = ""
        if k == rep.addr:
            style = ", style=filled, fillcolor=\"#ffd7d7\""
        elif k in roots:
            style = ", shape=ellipse, style=filled, fillcolor=\"#d7e8ff\""
        lines.append("  %s [label=%s%s];" % (ids[k], q(label), style))
    for k, held, o in rep.graph_edges:
        lines.append("  %s -> %s [label=%s];" % (ids[held], ids[k], q(o.edge or "")))
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    dot = shutil.which("dot")
    if dot is None:
        return None
    png = os.path.splitext(path)[0] + ".png"
    try:
        subprocess.run([dot, "-Tpng", path, "-o", png], check=True, capture_output=True,
                       timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return png


class Owners(commands.Subcommand):
    name = "owners"
    summary = "Find every place in memory that holds a pointer to an object, and account " \
              "for its references."
    rest_argument = "expr"
    details = """\
Scans the process's writable memory (heap, anonymous mappings, libraries' data and bss,
thread stacks; live or from a core) for the object's address and says what each word is:
a list item, a dict value and its key, an instance attribute, a tuple item, a cell, an
interpreter frame's local, a module global, a type attribute; a C global or static (symbol
and library); a C frame's variable (thread, frame, variable); or heap of unknown owner.
Then the account: refcount N, K owners found, N - K unexplained, and the C sites that,
according to the pyref ring, acquired references and never released them.
Stale words (dead stack, free blocks, freed objects, past-the-end slots) are hidden
unless --all; the pyref ring itself is not searched. --depth N follows owners of owners
up to modules, C globals and stacks; --dot FILE draws that graph."""
    examples = ("pyref owners op", "pyref owners --depth 3 --dot /tmp/owners.dot obj",
                "pyref owners --all --json 0x7ffff7a1b2c0")

    def add_arguments(self, parser):
        parser.add_argument("--depth", type=int, default=1, metavar="N",
                            help="levels of owners to follow (default 1, at most %d)" %
                            MAX_DEPTH)
        parser.add_argument("--all", action="store_true", dest="show_all",
                            help="also show stale words (dead stack, freed blocks...)")
        parser.add_argument("--dot", metavar="FILE", default=None,
                            help="write the owner graph as Graphviz (and FILE.png when "
                                 "`dot` is installed)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("expr", metavar="EXPR",
                            help="a GDB expression for the object's address")

    def run(self, args, from_tty):
        if not 1 <= args.depth <= MAX_DEPTH:
            raise PyrefError("--depth wants 1..%d" % MAX_DEPTH)
        target.require_target()
        addr = target.eval_address(args.expr)
        if addr == 0 or addr & 7:
            raise PyrefError("0x%x is not an object address (NULL or misaligned)" % addr)
        rep = build_report(addr, args.depth)
        if args.json:
            self.write(report_json(rep, args.show_all) + "\n")
        else:
            self.write(report_text(rep, args.show_all))
        if args.dot:
            png = write_dot(rep, args.dot)
            if not args.json:
                self.write("graph written to %s%s\n" % (
                    args.dot, " and %s" % png if png else " (no `dot` here: no PNG)"))


# ---------------------------------------------------------------------------------------
# pyref leaks
# ---------------------------------------------------------------------------------------
_SINGLETONS = objects.SINGLETON_SYMBOLS
MAX_LEAK_SCAN = 256        # objects whose holders one `pyref leaks` searches memory for


def _candidates(rs):
    """{obj: [Event]} for the objects some reference to which traced code acquired and
    never released in their current lifetime. The ring is read as columns
    (verdict.unbalanced): Records and Events are built only for those objects, a handful
    among the million records of a full ring."""
    cache = target.stop_cache()
    objs = cache.get("leaks.unbalanced")
    if objs is None:
        objs = cache["leaks.unbalanced"] = verdict.unbalanced(
            (c for ring in rs.rings for c in ring.slot_columns()),
            lambda site: ringcmd.site_of(site) is not None)
    return {obj: events.from_records(recs, ringcmd.site_of)
            for obj, recs in rs.records_of(objs).items()}


def _module_init(func):
    return bool(func) and func.startswith("PyInit_")


def _scan_order(groups, limit):
    """At most `limit` objects of `groups` ({site: [obj]}), taken from each site in turn,
    biggest groups first: every site gets answers even when one has thousands of
    objects."""
    queues = [list(dict.fromkeys(objs)) for _, objs in
              sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0][0] or "",
                                                     kv[0][1] or 0))]
    taken = dict.fromkeys(o for row in zip_longest(*queues) for o in row if o is not None)
    return list(islice(taken, limit))


def _holders(objs, problems):
    """({obj: references found}, {obj: one holder's description}, scan summary) for the
    objects, from one search of memory for all of them. What counts is what `pyref
    owners` counts, less the heap words of unknown owner: slots of Python objects and
    their buffers, interpreter frames, named C variables, statics. Stale words (freed
    memory, dead stack), possible ones (unnamed stack slots, borrowing caches) and
    unknown heap words (a borrowed copy as likely as an owner) would hide a leak."""
    found, example = {}, {}
    mem = _Memory(problems, "pyref leaks")
    for obj, owners in owners_of(mem, objs).items():
        counted = [o for o in owners if o.counted and o.kind != "heap"]
        found[obj] = len(counted)
        if counted:
            example[obj] = counted[0].text
    summary = {"bytes": mem.total, "passes": len(mem.passes),
               "seconds": round(sum(r.seconds for r in mem.passes), 4),
               "text": _scan_summary(mem)}
    return found, example, summary


def leak_report(top, search=MAX_LEAK_SCAN):
    """The data of `pyref leaks` as a dict. `search`: for how many objects at most to
    look for holders in memory (0: none, the ring alone decides)."""
    rs = ringcmd.ring_set()
    singletons = {}
    for sym, name in _SINGLETONS.items():
        a = target.symbol_address(sym)
        if a is not None:
            singletons[a] = name
    events_by_obj = _candidates(rs)
    infos = {}

    def alive(obj):
        if obj in singletons:
            return None
        if obj not in infos:
            infos[obj] = _object(obj)
        info = infos[obj]
        if info is None:
            return None
        rc = info.refcount
        if rc is None or rc.immortal:
            return None
        return rc.total

    problems = list(rs.problems)
    leaked, accounted = verdict.leak_groups(events_by_obj, alive)
    scan_info, searched, example = None, set(), {}
    if search:
        suspects = {k: v for k, v in leaked.items() if not _module_init(k[2])}
        objs = _scan_order(suspects, search)
        scan_info = {"candidates": len({o for v in suspects.values() for o in v}),
                     "searched": 0, "limit": search, "bytes": 0, "passes": 0,
                     "seconds": 0.0, "text": None}
        if objs:
            try:
                found, example, summary = _holders(objs, problems)
            except (PyrefError, gdb.error) as e:   # the ring's answer still stands
                problems.append("memory not searched for holders: %s" % e)
            else:
                searched = set(objs)
                scan_info.update(summary, searched=len(objs))
                leaked, accounted = verdict.leak_groups(events_by_obj, alive, found.get)
    skipped = {}
    for obj, name in singletons.items():
        evs = events_by_obj.get(obj)
        if evs:
            n = len(verdict.unreleased(evs))
            if n:
                skipped[name] = n
    handed = {}

    def rows_of(groups, holders=None):
        rows = {}
        for (file_, line, func, api), objs in groups.items():
            if _module_init(func):   # returned to the import system, held or not
                handed[func] = handed.get(func, 0) + len(objs)
                continue
            for obj in objs:
                info = infos.get(obj)
                key = (file_, line, func, api, info.type.name if info is not None else "?")
                row = rows.setdefault(key, {"count": 0, "objects": set()})
                row["count"] += 1
                row["objects"].add(obj)
        ordered = sorted(rows.items(), key=lambda kv: (-kv[1]["count"], kv[0][0] or "",
                                                       kv[0][1] or 0))
        out = []
        for k, r in ordered[:top]:
            g = {"file": k[0], "line": k[1], "function": k[2], "api": k[3], "type": k[4],
                 "count": r["count"], "objects": len(r["objects"])}
            if search:
                g["searched"] = len(r["objects"] & searched)
            ex = min(r["objects"] & searched or r["objects"])   # a checked one if any
            g["example"] = "0x%x" % ex
            if holders is not None:
                g["holder"] = holders.get(ex)
            out.append(g)
        return {"total": sum(r["count"] for _, r in ordered), "sites": len(ordered),
                "groups": out, "more_groups": max(0, len(ordered) - top)}

    lk = rows_of(leaked)
    held = rows_of(accounted, example) if search else None
    return {
        "total": lk["total"], "sites": lk["sites"], "groups": lk["groups"],
        "more_groups": lk["more_groups"],
        "held": held,
        "scan": scan_info,
        "singletons": skipped,
        "module_init": handed,
        "coverage": _ring_coverage(rs),
        "records": sum(r.decoded for r in rs.rings),
        "problems": problems}


def _plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def _group_lines(groups, more, last_column):
    out = ["  %7s  %7s  %-40s %-16s %s" % ("refs", "objects", "site", "type", last_column)]
    for g in groups:
        tail = "e.g. %s" % g["example"]
        if g.get("holder"):
            tail += " in %s" % g["holder"]
        if g.get("searched", g["objects"]) < g["objects"]:
            tail += " (%d not searched in memory)" % (g["objects"] - g["searched"])
        out.append("  %7d  %7d  %-40s %-16s %s  %s" % (
            g["count"], g["objects"], _site(g["file"], g["line"], g["function"]),
            g["type"], g["api"] or "", tail))
    if more:
        out.append("  ... and %s (--top)" % _plural(more, "more group"))
    return out


def leak_text(rep):
    """The text of `pyref leaks` from leak_report()'s dict."""
    out = []
    held, scan_info = rep["held"], rep["scan"]
    if rep["groups"]:
        out.append("%s at %s (%d records examined):" % (
            _plural(rep["total"], "unreleased reference"), _plural(rep["sites"], "site"),
            rep["records"]))
        out += _group_lines(rep["groups"], rep["more_groups"], "api / example")
    elif held and held["total"]:
        out.append("no leaks: every unreleased reference traced code acquired to a live "
                   "object is accounted for by holders found in memory (%d records "
                   "examined)" % rep["records"])
    else:
        out.append("no leaks: every reference traced code acquired to a live object "
                   "was released (%d records examined)" % rep["records"])
    if held and held["total"]:
        out.append("held, not leaked: %s at %s accounted for by holders found in "
                   "memory:" % (
                       _plural(held["total"], "reference"), _plural(held["sites"], "site")))
        out += _group_lines(held["groups"], held["more_groups"], "api / example holder")
    if rep["module_init"]:
        out.append("not counted: %s (module initialisation returns its references to "
                   "the import system)" % ", ".join(
                       "%d in %s" % (n, f) for f, n in sorted(rep["module_init"].items())))
    if rep["singletons"]:
        out.append("not counted: %s (singletons: Py_RETURN_NONE and the like return "
                   "such references)" % ", ".join(
                       "%d to %s" % (n, k) for k, n in sorted(rep["singletons"].items())))
    if rep["coverage"]:
        out.append("caveat: " + rep["coverage"])
    if scan_info and scan_info["searched"] < scan_info["candidates"]:
        out.append("note: holders searched for %d of %d objects (--max-search %d); the "
                   "references of the others are listed from the ring alone" % (
                       scan_info["searched"], scan_info["candidates"], scan_info["limit"]))
    for p in rep["problems"]:
        out.append("note: " + p)
    if scan_info and scan_info["text"]:
        out.append("memory: " + scan_info["text"])
    return "\n".join(out) + "\n"


class Leaks(commands.Subcommand):
    name = "leaks"
    summary = "List references traced C code acquired and never released, by site and type."
    details = """\
From the pyref ring: each reference acquired by traced code (NEW, INCREF) in an object's
current lifetime that no later release or steal of traced code matched, for objects still
alive, capped per object by its reference count; grouped by the acquiring line and the
object's type, most first. A leak repeats: the line that leaks once per call heads the
list with a count to match.
A reference returned to the caller (return Py_NewRef(x), return PyLong_FromLong(n)) is
released outside the ring, or kept: memory is searched once for every such object (at
most --max-search, default %d), as `pyref owners` searches it, and the references
that holders found there account for (object and container slots, interpreter frames,
named C variables, statics; not stale words in freed memory or dead stack, nor heap
words of unknown owner) are listed apart as held. What the reference count leaves beyond
them stays a leak. --no-scan skips the search.
Counted apart: immortal objects and the singletons (None, True, False...), whose
references Py_RETURN_NONE and the like hand to the caller, and what a module's PyInit_*
function acquires (it returns it to the import system). When the ring wrapped, only the
history it still holds is seen, and the output says how much.""" % MAX_LEAK_SCAN
    examples = ("pyref leaks", "pyref leaks --top 5", "pyref leaks --no-scan --json")
    completer = gdb.COMPLETE_NONE

    def add_arguments(self, parser):
        parser.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="N",
                            help="show the N biggest groups (default %d)" % DEFAULT_TOP)
        parser.add_argument("--no-scan", action="store_true",
                            help="do not search memory for holders: the ring alone decides")
        parser.add_argument("--max-search", type=int, default=MAX_LEAK_SCAN, metavar="N",
                            help="search memory for the holders of at most N objects "
                                 "(default %d)" % MAX_LEAK_SCAN)
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def run(self, args, from_tty):
        if args.top <= 0:
            raise PyrefError("--top wants a positive number")
        if args.max_search <= 0:
            raise PyrefError("--max-search wants a positive number (--no-scan: none)")
        target.require_target()
        rep = leak_report(args.top, search=0 if args.no_scan else args.max_search)
        if args.json:
            self.write(json.dumps(rep, indent=1) + "\n")
        else:
            self.write(leak_text(rep))
