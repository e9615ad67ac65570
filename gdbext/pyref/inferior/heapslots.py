"""Which slot of which Python object a heap word is: the allocator block around it
(reader/scan.py: pymalloc, glibc malloc, the debug allocator's prefix), the object at the
block's start (after its GC header and pre-header), and the slot of that object the word
is — a tuple item, a cell, a set's inline entry, a __slots__ member (tp_members), a 3.13
inline attribute value, a frame's local or value-stack slot, a named C field of a known
builtin struct. A bare buffer (a list's item array, a dict's key table, a values array)
is reported as a block: who points to it decides (inferior/memsearch.py).

Objects are read through inferior/objects.py and the offsets come from inferior/layout.py's
`heap` part, so every rule here holds for the interpreter whose DWARF is loaded.
"""
import os
import re

from pyref.errors import NoDebugInfoError, PyrefError
from pyref.inferior import layout, mimalloc, objects, objrepr, target
from pyref.inferior.layout import (TPFLAGS_HAVE_GC, TPFLAGS_HEAPTYPE, TPFLAGS_INLINE_VALUES,
                                   field_int)
from pyref.inferior.target import MemoryReadError
from pyref.reader import scan, sites
from pyref.rules.ownergraph import Owner

MAX_MEMBERS = 64           # PyMemberDef entries read per type


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


# ---------------------------------------------------------------------------------------
# The layouts
# ---------------------------------------------------------------------------------------
def heap():
    """The heap part of the interpreter's layouts (inferior/layout.py)."""
    return layout.layouts().heap


# ---------------------------------------------------------------------------------------
# Python objects around a word
# ---------------------------------------------------------------------------------------
def live_object(addr):
    """objects.inspect(addr) when it is a live object, else None; never raises."""
    try:
        info = objects.inspect(addr)
    except (MemoryReadError, NoDebugInfoError):
        return None
    return info if info.state == objects.LIVE else None


def _full_size(lay, info):
    """Bytes from the object's start to its end, counting 3.13 inline values."""
    size = info.size or info.type.basicsize
    if lay.inline_values and info.type.flags & TPFLAGS_INLINE_VALUES:
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
    gives for a request of `needed` (pymalloc rounds blocks up to 16; mimalloc to its
    size classes; malloc's chunks hold their size to 8 bytes either way; each of the
    `debug` debug-allocator layers adds an 8-byte tail after the data)."""
    needed += 8 * debug
    if allocator == "pymalloc":
        return 0 <= have - needed < 16
    if allocator == "mimalloc":  # size classes 1/4 apart above 64 bytes, words below
        return 0 <= have - needed < max(16, needed // 4 + 8)
    return -8 <= have - needed < 24


def _object_in_block(lay, start, hit, end, debug=0, allocator="pymalloc"):
    """(info, freed_info) of the Python object whose extent (pre-header included) holds
    `hit`, for a block whose data begins at `start`; info None when there is none.
    freed_info: an ObjectInfo of a freed object found there instead (stale), or of the
    block's live object when `hit` lies past its extent (the block's unused tail). Candidates
    are the block start plus each possible pre-header size; a live one wins. The object
    must lie inside the block, which ends at `end`."""
    freed = tail = None
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
            if info.state == objects.LIVE and obj + size <= hit < end and \
                    obj + min(size, info.type.basicsize) <= end:
                tail = tail or info   # the live object of the block ends before `hit`
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
    return None, freed or tail


def _tcache_keys():
    """The thread cache's keys, cached per stop: glibc's own tcache_key when its DWARF
    is loaded (libc6-dbg), and scan.tcache_keys of the anonymous writable regions (with
    the DWARF's tcache_perthread_struct layout when there is one)."""
    cache = target.stop_cache()
    keys = cache.get("owners.tcache")
    if keys is None:
        regions = [(m.start, m.end) for m in target.mappings() if "w" in m.perms and
                   (not m.path or m.path == "[heap]")]
        keys = cache["owners.tcache"] = scan.tcache_keys(
            target.read, regions, _tcache_layouts()) | _dwarf_tcache_key()
    return keys


def _tcache_layouts():
    """[scan.TcacheLayout] of the target's libc from DWARF, else scan.TCACHE_LAYOUTS."""
    s = target.struct_layout("tcache_perthread_struct", "struct tcache_perthread_struct")
    if s is not None and "entries" in s:
        _, counts = s.find("num_slots", "counts")
        if counts is not None and counts.elem_size and s.field("entries").elem_size == 8:
            return [scan.TcacheLayout(counts.size // counts.elem_size, counts.elem_size)]
    return scan.TCACHE_LAYOUTS


def _dwarf_tcache_key():
    """{glibc 2.34+'s tcache_key} when libc's debug info names it (a static variable:
    no ELF symbol), else an empty set."""
    key = target.symbol_u64("tcache_key")
    return {key} if key else set()


def _malloc_region(region):
    """scan.malloc_region of the mapping [start, end), cached per stop."""
    cache = target.stop_cache()
    key = ("owners.malloc_region", region[0])
    if key not in cache:
        m = next((m for m in target.mappings() if m.start == region[0]), None)
        cache[key] = scan.malloc_region(target.read, region[0], region[1],
                                        m.path if m is not None else "")
    return cache[key]


def locate(lay, hit, region):
    """What surrounds the word at `hit` in the heap: ('object', info), ('freed', text),
    ('block', Block, data start), or ('none', None)."""
    blk = mimalloc.block(hit)  # a free-threaded build's objects and buffers
    if blk is not None and blk.allocator == mimalloc.METADATA:
        return "freed", ("in mimalloc's segment header at 0x%x" % blk.start,
                         "allocator metadata (a free list or page link, not a reference)")
    if blk is None:
        blk = scan.pymalloc_block(target.read, hit, lay.pool)
    if blk is None and region is not None:
        blk = scan.malloc_chunk(target.read, hit, region[0], region[1], free_keys=_tcache_keys(),
                                heap=_malloc_region(region) in ("heap", "arena"))
    if blk is None:
        return "none", None
    if blk.free:
        return "freed", ("in a free %s block at 0x%x" % (blk.allocator, blk.start),
                         "a free %s block" % blk.allocator)
    start = scan.data_start(target.read, blk.start)
    if start > hit:
        return "none", None
    info, freed = _object_in_block(lay, start, hit, blk.start + blk.size,
                                   (start - blk.start) // scan.DEBUG_PREFIX, blk.allocator)
    if info is not None:
        return "object", info
    if freed is not None and freed.state == objects.LIVE:
        # The allocator hands out whole size classes and does not clear a reused block:
        # the bytes past the extent of the block's live object are left from its earlier
        # use, not a slot of anything.
        return "freed", ("in the unused tail of a %s block, past the %s at 0x%x" % (
            blk.allocator, freed.type.name, freed.addr), "a block's unused tail")
    if freed is not None:
        return "freed", ("inside a freed %s at 0x%x (%s)" % (
            freed.type.name if freed.type else "object", freed.addr, freed.reason),
            "a freed object")
    return "block", (blk, start)


def short(addr, n=60):
    try:
        return objrepr.short_repr(addr, max_len=n, max_items=3, max_depth=2)
    except (MemoryReadError, NoDebugInfoError, PyrefError):
        return "0x%x" % addr


def obj_label(info):
    name = info.type.name
    if info.kind == "module":
        mname = objects.module_name(info)
        if mname is not None:
            return "module '%s'" % mname
    if info.kind == "type":
        return "type '%s'" % objects.type_info(info.addr).name
    if info.kind == "function":
        return short(info.addr).replace(" at 0x%x" % info.addr, "")
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


# ---------------------------------------------------------------------------------------
# Attribute names
# ---------------------------------------------------------------------------------------
def key_text(key):
    """'name' for a str key (repr), else a short repr."""
    if not key:
        return None
    return short(key, 60)


def entry_key(keys, index):
    """The key object address of entry `index` of a keys table, or None."""
    try:
        entries, esz, koff, _, n = objects.keys_table(keys)
        if not 0 <= index < n:
            return None
        return target.read_u64(entries + index * esz + koff) or None
    except (MemoryReadError, NoDebugInfoError):
        return None


def attr_name(type_addr, index):
    """The name of attribute `index` of a type's shared keys (instance values)."""
    lay = heap()
    if lay.cached_keys is None:
        return None
    try:
        keys = target.read_u64(type_addr + lay.cached_keys)
    except MemoryReadError:
        return None
    key = entry_key(keys, index) if keys else None
    if key is None:
        return None
    try:
        return objects.str_value(key, 200)[0]
    except (MemoryReadError, NoDebugInfoError):
        return None


def _member_name(type_addr, off):
    """The __slots__ / tp_members name at byte offset `off` of instances of the type (its
    bases included), or None."""
    lay = heap()
    md = lay.memberdef
    if md is None:
        return None
    t = type_addr
    for _ in range(16):
        if not t:
            break
        try:
            members = target.read_u64(t + lay.tp_members)
            if members:
                raw = target.read(members, md.size * MAX_MEMBERS)
                for i in range(MAX_MEMBERS):
                    e = raw[i * md.size:(i + 1) * md.size]
                    name = field_int(e, md.field("name"))
                    if not name:
                        break
                    if field_int(e, md.field("offset"), signed=True) == off:
                        return sites.read_cstring(target.read, name, 200)
            t = target.read_u64(t + lay.tp_base)
        except MemoryReadError:
            break
    return None


# ---------------------------------------------------------------------------------------
# A slot of one object
# ---------------------------------------------------------------------------------------
# -- a slot of one object ------------------------------------------------------------------
def slot(info, hit):
    """An Owner for the word at `hit` inside the live object `info`."""
    lay = heap()
    obj, tname, kind = info.addr, info.type.name, info.kind
    off = hit - obj
    label = obj_label(info)

    def owner(edge, text, **kw):
        return Owner(hit, "object", "%s %s" % (label, text), holder=obj, label=label,
                     edge=edge, **kw)

    if off < 0:  # the pre-header: GC links, managed dict, values or weakref list
        dict_off = -8 - lay.gc_size  # MANAGED_DICT_OFFSET: -24, 3.13t's -8
        if off == dict_off:
            return owner(".__dict__", "__dict__ (managed)")
        if off == dict_off - 8 and lay.preheader_values:
            return owner(".__dict__ values", "attribute values (managed)")
        if off == dict_off - 8:
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
    if tname == "bytes" and _bytes_data() is not None and off >= _bytes_data():
        # 3.15's bytearray keeps its bytes here too: data that may spell an address
        return owner("+%d" % off, "data at offset +%d (bytes, not references)" % off,
                     stale="a bytes object's data")
    if tname == "cell" and off == lay.cell_ref:
        return owner("cell_contents", "contents")
    if kind in ("set", "frozenset"):
        f = lay.set_small
        if f.offset <= off < f.offset + f.size:
            if (off - f.offset) % lay.setentry == lay.setentry_key:
                return owner("{element}", "element")
    if tname == "frame" and not lay.interpreter_frames:
        got = _frame310_slot(info, off)
        if got:
            return owner(got[0], got[1], **got[2])
    if lay.interpreter_frames and tname in ("frame", "generator", "coroutine",
                                            "async_generator"):
        got = _embedded_frame_slot(info, off)
        if got:
            return owner(got[0], got[1], **got[2])
    if lay.inline_values and info.type.flags & TPFLAGS_INLINE_VALUES and \
            off >= info.type.basicsize + 8:
        i = (off - info.type.basicsize - 8) // 8
        name = attr_name(info.type_addr, i)
        edge, text = "." + (name or "?%d" % i), "attribute %s" % (
            "'%s'" % name if name else "#%d (inline values)" % i)
        if not _inline_values_valid(lay, info):
            # dictresize() moved the values into the instance's dict without clearing
            # them here: the dict's entry holds the reference now
            return owner(edge, text + " (inline values left when its __dict__ took them)",
                         stale="inline values no longer used (valid = 0)")
        return owner(edge, text)
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


def _bytes_data():
    """Offset of a bytes object's data (ob_sval) from DWARF, None without it."""
    s = target.struct_layout("PyBytesObject")
    return s.offset("ob_sval") if s is not None and "ob_sval" in s else None


def _inline_values_valid(lay, info):
    """The `valid` flag of a 3.13 instance's inline PyDictValues (True when unreadable)."""
    dv = lay.dictvalues
    if dv is None or "valid" not in dv:
        return True
    try:
        return target.read(info.addr + info.type.basicsize + dv.offset("valid"), 1)[0] != 0
    except MemoryReadError:
        return True


def localsplus_name(code, i):
    """(name, is_local) of slot `i` of a 3.11+ frame's localsplus for code object `code`."""
    lay = heap()
    c = lay.code
    try:
        raw = target.read(code, c.size)
        n = field_int(raw, c.field("co_nlocalsplus"), signed=True)
        if 0 <= i < n:
            names = field_int(raw, c.field("co_localsplusnames"))
            name = target.read_u64(names + lay.tuple_items + 8 * i)
            return objects.str_value(name, 200)[0], True
        return None, False
    except (MemoryReadError, NoDebugInfoError):
        return None, i < 0


def code_name(code):
    lay = heap()
    c = lay.code
    try:
        raw = target.read(code, c.size)
        f = c.fields.get("co_qualname") or c.field("co_name")
        name = objects.str_value(field_int(raw, f), 200)[0]
        fname = objects.str_value(field_int(raw, c.field("co_filename")), 400)[0]
        return name, os.path.basename(fname)
    except (MemoryReadError, NoDebugInfoError):
        return "?", "?"


def _frame310_slot(info, off):
    """(edge, text, extra Owner arguments) of a 3.10 frame object's local or value-stack
    slot, or None. The value stack's depth is known only while the frame is suspended
    (f_stackdepth >= 0); a slot past it is stale, and any slot of a running frame may be
    a leftover."""
    lay = heap()
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
            t = field_int(raw, c.field(member))
            n = target.read_i64(t + lay.ob_size) if t else 0
            names += [t + lay.tuple_items + 8 * k for k in range(max(0, min(n, 4096)))]
        fname, file_ = code_name(code)
        if i < len(names):
            name = objects.str_value(target.read_u64(names[i]), 200)[0]
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
    lay = heap()
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
        code = lay.untag(target.read_u64(info.addr + base + code_f.offset))
        stacktop = lay.stacktop(target.read(info.addr + base, ls), info.addr + base)
    except MemoryReadError:
        return None
    name, _ = localsplus_name(code, i)
    fname, file_ = code_name(code)
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
