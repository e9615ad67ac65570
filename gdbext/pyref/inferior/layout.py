"""The loaded interpreter's layouts, read from its DWARF once per objfile generation
(target.cached) and never known by heart: one `Layouts` per interpreter, whose parts are
built when first used, so that a command needs only the debug info it reads.

- the object header and type object (`Layouts` itself): what every object read needs;
  NoDebugInfoError, with the package to install, when the interpreter has no DWARF;
- `heap`: the builtin containers, frames and allocator structs `pyref owners` and
  `pyref leaks` attribute a heap word with;
- `walk`: the thread-state and frame offsets of the Python stack walk, as the
  reader/pyframes.py WalkLayout that the gdb-free walker reads.

The differences between 3.10, 3.11, 3.12, 3.13, 3.13t, 3.14 and 3.15 are told apart by the
members the DWARF has, never by a version number: each difference is a named feature below
(`count_model`, `interpreter_frames`, `preheader_values`, `inline_values`, `stack_refs`...),
set from the member that shows it. Constants that are not layout (tp_flags bits) are CPython's ABI and named here.
"""
import functools
import os
import re

import gdb

from pyref.errors import NoDebugInfoError
from pyref.inferior import target
from pyref.inferior.target import MemoryReadError
from pyref.reader import pyframes, scan

# tp_flags bits (Include/object.h): the ABI, not layout
TPFLAGS_INLINE_VALUES = 1 << 2
TPFLAGS_MANAGED_WEAKREF = 1 << 3
TPFLAGS_MANAGED_DICT = 1 << 4
TPFLAGS_HEAPTYPE = 1 << 9
TPFLAGS_HAVE_GC = 1 << 14
TPFLAGS_LONG_SUBCLASS = 1 << 24
TPFLAGS_LIST_SUBCLASS = 1 << 25
TPFLAGS_TUPLE_SUBCLASS = 1 << 26
TPFLAGS_BYTES_SUBCLASS = 1 << 27
TPFLAGS_UNICODE_SUBCLASS = 1 << 28
TPFLAGS_DICT_SUBCLASS = 1 << 29
TPFLAGS_TYPE_SUBCLASS = 1 << 31

# How the reference count is stored (Layouts.count_model), told apart by the members of
# PyObject; the rules each applies are Include/refcount.h's, the constants below.
COUNT_WORD = "word"                 # 3.10, 3.11: one Py_ssize_t, no immortality
COUNT_SPLIT = "split"               # 3.12, 3.13: Py_ssize_t; immortal: (int32)low half < 0
COUNT_NARROW = "narrow"             # 3.14+: uint32 ob_refcnt + ob_overflow + ob_flags
COUNT_FREE_THREADED = "free-threaded"  # 3.13t: ob_ref_local + ob_ref_shared >> 2
# Include/refcount.h (3.14+, and ob_flags of 3.13t): the ABI, not layout
IMMORTAL_FLAGS = 1                  # _Py_IMMORTAL_FLAGS (= Py_TAG_REFCNT of a stack ref)
STATICALLY_ALLOCATED_FLAG = 4       # _Py_STATICALLY_ALLOCATED_FLAG
IMMORTAL_REFCNT_LOCAL = 0xFFFFFFFF  # _Py_IMMORTAL_REFCNT_LOCAL (3.13t)
REF_SHARED_SHIFT = 2                # _Py_REF_SHARED_SHIFT (3.13t)
# Py_DECREF's debug check (3.14+): a 32-bit count this close below 2**32 wrapped past 0
NEGATIVE_WINDOW = 1 << 20
# Internal/pycore_stackref.h (3.14+): a _PyStackRef's low bits. With the GIL Py_TAG_BITS is
# 3: tag 0 owns a reference, Py_TAG_REFCNT (1) does not (borrowed, deferred or immortal),
# Py_INT_TAG (3) is a tagged int, not a pointer; free-threaded builds tag 1 bit (deferred).
STACK_REF_TAG_BITS = 3
STACK_REF_TAG_BITS_FREE_THREADED = 1
STACK_REF_REFCNT = 1                # Py_TAG_REFCNT / Py_TAG_DEFERRED
STACK_REF_INT = 3                   # Py_INT_TAG


def need(*names, why=""):
    """The StructLayout of the first of `names`; NoDebugInfoError when none is in the debug
    info (`why` says what it is needed for)."""
    lay = target.struct_layout(*names)
    if lay is None:
        # PyObject and PyTypeObject may come from a traced extension's own DWARF (built
        # -g, it describes what its code uses): what is missing is the interpreter's
        raise NoDebugInfoError("no debug info for %s%s (install the interpreter's debug "
                               "symbols: %s)" % (names[0], why, _debug_package()))
    return lay


def one_of(lay, *paths):
    """The offset of the first of `paths` in `lay`; NoDebugInfoError when none exists."""
    field = lay.find(*paths)[1]
    if field is None:
        raise NoDebugInfoError("%s has none of %s: unknown CPython version"
                               % (lay.name, ", ".join(paths)))
    return field.offset


def field_int(data, field, signed=False):
    """The integer a target.Field holds in `data` (the struct's bytes, little-endian)."""
    return int.from_bytes(data[field.offset:field.offset + field.size], "little",
                          signed=signed)


def field_bits(data, field):
    """A bitfield's value (little-endian targets: DWARF bit positions count from bit 0)."""
    first = field.bitpos // 8
    nbytes = (field.bitpos % 8 + field.bitsize + 7) // 8
    word = int.from_bytes(data[first:first + nbytes], "little")
    return (word >> (field.bitpos % 8)) & ((1 << field.bitsize) - 1)


class Layouts:
    """The object header and type object offsets every object read needs, the features
    that tell the interpreters apart, and the `heap` and `walk` parts, built on first use."""

    def __init__(self):
        get = target.struct_layout
        obj = get("PyObject", "struct _object")
        typ = get("PyTypeObject", "struct _typeobject")
        if obj is None or typ is None:
            raise NoDebugInfoError(
                "no debug info for the Python interpreter (type %s unknown): install its "
                "debug symbols (%s) or use a build with -g"
                % ("PyObject" if obj is None else "PyTypeObject", _debug_package()))
        self.header_size = obj.size
        self.ob_type = obj.offset("ob_type")
        self.free_threaded = "ob_ref_local" in obj
        # ob_flags: 3.14+ beside the 32-bit count, 3.13t after ob_tid (immortal, static)
        self.ob_flags = obj.offset("ob_flags") if "ob_flags" in obj else None
        if self.free_threaded:  # 3.13t
            self.ob_tid = obj.offset("ob_tid")
            self.ob_ref_local = obj.offset("ob_ref_local")
            self.ob_ref_shared = obj.offset("ob_ref_shared")
            self.count_words = (("ob_ref_local", self.ob_ref_local, obj.field(
                "ob_ref_local").size), ("ob_ref_shared", self.ob_ref_shared,
                                        obj.field("ob_ref_shared").size))
            self.count_model = COUNT_FREE_THREADED
        else:
            count = obj.field("ob_refcnt")
            self.ob_refcnt, self.refcnt_size = count.offset, count.size
            self.count_words = (("ob_refcnt", count.offset, count.size),)
            if "ob_refcnt_full" in obj and count.size == 4:
                # 3.14+ (64-bit): a 32-bit ob_refcnt in a union with ob_refcnt_full,
                # ob_overflow and ob_flags beside it
                self.ob_refcnt_full = obj.offset("ob_refcnt_full")
                self.ob_overflow = obj.offset("ob_overflow")
                self.count_model = COUNT_NARROW
            elif "ob_refcnt_split" in obj:
                # 3.12, 3.13 (64-bit): a 64-bit ob_refcnt whose low half is the count
                self.count_model = COUNT_SPLIT
            else:
                self.count_model = COUNT_WORD
        # immortality exists (3.12+ and 3.13t, PEP 683)
        self.immortal_split = self.count_model != COUNT_WORD
        var = get("PyVarObject")
        self.ob_size = var.offset("ob_size") if var is not None and "ob_size" in var else None
        self.type_size = typ.size
        self.tp_name = typ.offset("tp_name")
        self.tp_basicsize = typ.offset("tp_basicsize")
        self.tp_itemsize = typ.offset("tp_itemsize")
        self.tp_flags = typ.offset("tp_flags")
        self.tp_base = typ.offset("tp_base")

        # Features, each from the member that shows it.
        self.iframe = get("_PyInterpreterFrame", "struct _PyInterpreterFrame")
        # 3.11+: frames are _PyInterpreterFrames in each thread's data stack; before,
        # PyFrameObjects hold their locals
        self.interpreter_frames = self.iframe is not None
        funcobj = self.interpreter_frames and "f_funcobj" in self.iframe
        executable = self.interpreter_frames and "f_executable" in self.iframe
        # 3.11 (frames without f_funcobj): the pre-header of a managed-dict object holds
        # its dict and values pointers
        self.preheader_values = self.interpreter_frames and not funcobj
        # 3.12+ (f_funcobj): the pre-header holds the dict-or-values word and the weakref
        # list, of objects with either managed flag
        self.preheader_weakref = funcobj
        # 3.13 (f_executable): attribute values inline after the object, PyDictValues led
        # by a header (capacity, size, ...)
        self.inline_values = executable
        # 3.11, 3.12: a split dict's values array is preceded by prefix bytes (its size,
        # then the insertion order); 3.12 tags an instance's values pointer with -1
        self.values_prefix = self.interpreter_frames and not executable
        self.tagged_values = funcobj and not executable
        # 3.14+: frame slots and f_executable are _PyStackRefs (a union of tagged bits),
        # 3.13's are PyObject pointers (it has the union type, unused by frames)
        self.stack_refs = executable and _member_is_union(
            ("_PyInterpreterFrame", "struct _PyInterpreterFrame"), "f_executable")
        self.stack_ref_tags = 0 if not self.stack_refs else \
            STACK_REF_TAG_BITS_FREE_THREADED if self.free_threaded else STACK_REF_TAG_BITS

    def untag(self, word):
        """The object a frame slot's word points to: a _PyStackRef's bits without its tag
        (3.14+), a pointer as it is before."""
        return word & ~self.stack_ref_tags

    def preheader(self, flags):
        """Bytes in front of an object of a type with `flags`: GC header, then the managed
        dict / values / weakref words."""
        n = self.heap.gc_size if flags & TPFLAGS_HAVE_GC else 0
        if self.preheader_values and flags & TPFLAGS_MANAGED_DICT:
            n += 16
        elif self.preheader_weakref and flags & (TPFLAGS_MANAGED_DICT |
                                                 TPFLAGS_MANAGED_WEAKREF):
            n += 16
        return n

    @functools.cached_property
    def heap(self):
        """The offsets `pyref owners` attributes heap words with (Heap)."""
        return _Heap(self)

    @functools.cached_property
    def walk(self):
        """The Python stack walk's offsets, a pyframes.WalkLayout."""
        return _walk_layout(self)


def _member_is_union(struct_names, member):
    """True when `member` of the first of `struct_names` in the debug info is a union
    (a _PyStackRef), read from its DWARF type."""
    for name in struct_names:
        try:
            gtype = gdb.lookup_type(name).strip_typedefs()
            for f in gtype.fields():
                if f.name == member:
                    return f.type.strip_typedefs().code == gdb.TYPE_CODE_UNION
        except (gdb.error, TypeError):
            continue
    return False


def layouts():
    """The Layouts of the loaded interpreter; raises WrongExecutableError when gdb loaded
    another executable than the target's (whose DWARF, if any, describes another
    interpreter), NoDebugInfoError if it has no DWARF."""
    def make():
        target.check_executable()
        return Layouts()
    return target.cached("layout.layouts", make)


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


# ---------------------------------------------------------------------------------------
# The heap: containers, frames and allocator structs
# ---------------------------------------------------------------------------------------
class _Heap:
    """The offsets `pyref owners` needs beyond the object header, all from DWARF."""

    def __init__(self, lay):
        get = target.struct_layout
        self.header, self.ob_size = lay.header_size, lay.ob_size
        self.iframe = lay.iframe
        for feature in ("interpreter_frames", "preheader_values", "preheader_weakref",
                        "inline_values", "values_prefix", "tagged_values", "stack_refs",
                        "stack_ref_tags"):
            setattr(self, feature, getattr(lay, feature))
        self.preheader, self.untag = lay.preheader, lay.untag
        gc = get("PyGC_Head", "struct _gc_head")
        # 3.13t keeps GC state in the object (ob_gc_bits): no PyGC_Head before it
        self.gc_size = 0 if lay.free_threaded else gc.size if gc is not None else 16
        self.tuple_items = need("PyTupleObject").offset("ob_item")
        self.list_items = need("PyListObject").offset("ob_item")
        # 3.13t: ob_item points past the `allocated` word that leads its block
        arr = get("_PyListArray")
        self.list_array = arr.offset("ob_item") if arr is not None and "ob_item" in arr \
            else 0
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
        self.memberdef = get("PyMemberDef", "struct PyMemberDef")
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
        self.interp = get("PyInterpreterState", "struct _is")

    def stacktop(self, raw, frame):
        """The value stack's top of the _PyInterpreterFrame at `frame` whose bytes are
        `raw`, as an index into localsplus: 3.11-3.13's stacktop, 3.14+'s stackpointer
        made an index. -1 while the frame runs (stacktop -1, stackpointer NULL) or when
        the pointer is not into the frame's own slots (the target is not trusted)."""
        f = self.iframe
        if "stacktop" in f:
            return field_int(raw, f.field("stacktop"), signed=True)
        sp = field_int(raw, f.field("stackpointer"))
        base = frame + f.offset("localsplus")
        if not sp or sp < base or (sp - base) % 8 or sp - base >= 8 << 16:
            return -1
        return (sp - base) // 8


# ---------------------------------------------------------------------------------------
# The Python stack walk
# ---------------------------------------------------------------------------------------
_STACK_WHY = ": the Python stack reads the interpreter's thread states"


def _walk_layout(lay):
    """The pyframes.WalkLayout of the interpreter, from DWARF."""
    def stack_need(*names):
        return need(*names, why=_STACK_WHY)
    runtime = stack_need("_PyRuntimeState", "struct pyruntimestate")
    interp = stack_need("PyInterpreterState", "struct _is")
    ts = stack_need("PyThreadState", "struct _ts")
    code = stack_need("PyCodeObject", "struct PyCodeObject")
    threads_head = interp.find("threads.head", "tstate_head")[1]
    if threads_head is None:
        raise NoDebugInfoError("PyInterpreterState has neither threads.head nor "
                               "tstate_head: unknown CPython version")
    iframe = lay.iframe
    ntid = ts.fields.get("native_thread_id")
    if iframe is not None:
        cframe = None
        if "current_frame" not in ts:  # 3.11, 3.12: through tstate->cframe
            cframe = stack_need("_PyCFrame", "struct _PyCFrame")
        frame = dict(
            tstate_frame=ts.offset("cframe" if cframe else "current_frame"),
            cframe_current_frame=cframe.offset("current_frame") if cframe else None,
            frame_objects=False, frame_previous=iframe.offset("previous"),
            frame_code=one_of(iframe, "f_executable", "f_code"),
            frame_instr=one_of(iframe, "instr_ptr", "prev_instr"), frame_lineno=None,
            frame_owner=iframe.offset("owner"),
            owner_cstack=target.enum_value("enum _frameowner", "FRAME_OWNED_BY_CSTACK", None),
            owner_generator=target.enum_value("enum _frameowner", "FRAME_OWNED_BY_GENERATOR",
                                              1),
            table_version=(3, 11))  # the location table, 3.11's format also in 3.12+
    else:
        f = stack_need("PyFrameObject", "struct _frame")
        frame = dict(tstate_frame=ts.offset("frame"), cframe_current_frame=None,
                     frame_objects=True, frame_previous=f.offset("f_back"),
                     frame_code=f.offset("f_code"), frame_instr=f.offset("f_lasti"),
                     frame_lineno=f.offset("f_lineno"), frame_owner=None,
                     owner_cstack=None, owner_generator=None, table_version=(3, 10))
    frame["frame_code_tags"] = lay.stack_ref_tags
    ascii_ = stack_need("PyASCIIObject")

    def opt(name):
        return code.offset(name) if name in code else None
    code_layout = pyframes.Layout(
        co_filename=code.offset("co_filename"), co_name=code.offset("co_name"),
        co_qualname=opt("co_qualname"), co_firstlineno=code.offset("co_firstlineno"),
        co_linetable=code.offset("co_linetable"), co_code_adaptive=opt("co_code_adaptive"),
        ob_type=lay.ob_type, var_size=lay.ob_size,
        bytes_sval=stack_need("PyBytesObject").offset("ob_sval"),
        str_state=ascii_.offset("state"), str_ascii_data=ascii_.size,
        str_compact_data=stack_need("PyCompactUnicodeObject").size,
        co_firsttraceable=opt("_co_firsttraceable"), str_length=ascii_.offset("length"))
    return pyframes.WalkLayout(
        code=code_layout,
        runtime_interpreters_head=runtime.offset("interpreters.head"),
        interp_next=interp.offset("next"),
        interp_threads_head=threads_head.offset, tstate_next=ts.offset("next"),
        tstate_thread_id=ts.offset("thread_id"),
        tstate_native_thread_id=ntid.offset if ntid else None,
        code_type=target.symbol_address("PyCode_Type"), **frame)
