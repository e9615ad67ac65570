"""Python frames and source lines from a target's memory, without GDB and without
running the target's interpreter: the other half of pyref's PYCTX records (a code object's
address and an instruction's byte offset, docs/ring-format.md) and of a Python stack read
from a core.

Three layers:

* `addr2line(linetable, firstlineno, offset, version)` — pure logic, the interpreter's own
  `PyCode_Addr2Line()` on the bytes of `co_linetable`: the 3.10 format (pairs of byte
  deltas) or the 3.11+ location table (Objects/locations.md). Checked against `co_lines()`
  and `co_positions()` of real code objects of each interpreter (tests/gdb/test_pycontext.py).
* `read_code(read, addr, version)` / `location(read, code, offset, version)` — read a
  code object's file name, name, first line and line table through a `read(addr, size)`
  callable (a live inferior, `corefile.Core.read`), with the field offsets of the public
  `PyCodeObject`, `PyBytesObject` and `PyASCIIObject` structs per version (`LAYOUTS`,
  checked against offsetof() in C by the tests). Everything read is distrusted: sizes are
  capped and a bad object gives None, never an exception other than the reader's own.
  `decode_code` is the same read for any `Layout` (inferior/layout.py gives it DWARF's).
* `FrameWalk` / `thread_states` — the one walk of interpreters, thread states and Python
  frames, parameterised by a `WalkLayout` (offsets) and a reader: `pyref pystack` runs it
  with DWARF offsets and gdb's reads (inferior/pythreads.py), `python_stacks` with the
  fixed offsets below
  (`fixed_walk_layout`, equal to DWARF's per tests/gdb/test_pystack.py; 3.10 to 3.13 with
  the GIL) or a DWARF WalkLayout handed over as JSON (`walk_layout_from_dict`: 3.14+, 3.13t)
  and any reader.

`version` is (major, minor), e.g. (3, 12).
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from pyref import errors

MAX_LINETABLE = 1 << 20     # bytes of co_linetable we are willing to read
MAX_NAME = 4096             # characters of a file name or function name

# ---------------------------------------------------------------------------------------
# Line tables
# ---------------------------------------------------------------------------------------


def _lines_310(table: bytes, firstlineno: int):
    """(start, end, line or None) byte ranges of a 3.10 co_linetable: pairs of an unsigned
    byte-offset delta and a signed line delta, -128 meaning 'no line'."""
    line = firstlineno
    end = 0
    for i in range(0, len(table) - 1, 2):
        sdelta = table[i]
        ldelta = table[i + 1]
        if ldelta >= 128:
            ldelta -= 256
        start, end = end, end + sdelta
        if ldelta == -128:
            cur = None
        else:
            line += ldelta
            cur = line
        if end > start:
            yield start, end, cur


def _varint(table, i):
    b = table[i]
    i += 1
    val = b & 63
    shift = 0
    while b & 64:
        b = table[i]
        i += 1
        shift += 6
        val |= (b & 63) << shift
    return val, i


def _svarint(table, i):
    v, i = _varint(table, i)
    return (-(v >> 1) if v & 1 else v >> 1), i


def _lines_311(table: bytes, firstlineno: int):
    """(start, end, line or None) byte ranges of a 3.11+ location table. Each entry: a byte
    with bit 7 set, a 4-bit code and (length - 1) code units, then code-specific bytes."""
    line = firstlineno
    addr = 0
    i = 0
    n = len(table)
    while i < n:
        first = table[i]
        i += 1
        code = (first >> 3) & 15
        length = (first & 7) + 1
        if code == 15:                       # no location
            cur = None
        elif code == 14:                     # long form
            delta, i = _svarint(table, i)
            line += delta
            _, i = _varint(table, i)         # end line delta
            _, i = _varint(table, i)         # column + 1
            _, i = _varint(table, i)         # end column + 1
            cur = line
        elif code == 13:                     # no column
            delta, i = _svarint(table, i)
            line += delta
            cur = line
        elif code >= 10:                     # one-line form: line delta 0..2, 2 columns
            line += code - 10
            i += 2
            cur = line
        else:                                # short form: same line, 1 column byte
            i += 1
            cur = line
        start = addr
        addr += 2 * length
        yield start, addr, cur


def line_ranges(linetable: bytes, firstlineno: int, version: tuple):
    """Yields (start, end, line) byte ranges of the instructions, line None where the
    interpreter has none. Raises IndexError on a truncated table."""
    if tuple(version[:2]) >= (3, 11):
        return _lines_311(linetable, firstlineno)
    return _lines_310(linetable, firstlineno)


def addr2line(linetable: bytes, firstlineno: int, offset: int, version: tuple):
    """The source line of the instruction at byte `offset` of a code object, as the
    interpreter's PyCode_Addr2Line() computes it: `firstlineno` for a negative offset (a
    frame that has not started), None where the table has no line or does not reach the
    offset (or is truncated)."""
    if offset < 0:
        return firstlineno
    try:
        for start, end, line in line_ranges(linetable, firstlineno, version):
            if start <= offset < end:
                return line
    except IndexError:
        pass
    return None


# ---------------------------------------------------------------------------------------
# Code objects in memory
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Byte offsets in the public structs of one interpreter version (64-bit, GIL build)."""
    co_filename: int
    co_name: int
    co_qualname: int | None
    co_firstlineno: int      # an int (4 bytes)
    co_linetable: int
    co_code_adaptive: int | None
    ob_type: int = 8
    var_size: int = 16       # PyVarObject.ob_size
    bytes_sval: int = 32     # PyBytesObject.ob_sval
    str_state: int = 32      # PyASCIIObject.state
    str_ascii_data: int = 48  # sizeof(PyASCIIObject): data of a compact ASCII str
    str_compact_data: int = 72  # sizeof(PyCompactUnicodeObject): data of other compact str
    co_firsttraceable: int | None = None  # 3.11+: an int, the first instruction traced
    str_length: int = 16     # PyASCIIObject.length (after the object header: 32 on 3.13t)


# Checked against offsetof() by tests/gdb/test_pycontext.py (3.11d has the same as 3.11), and
# with co_firsttraceable against DWARF by tests/gdb/test_pystack.py.
LAYOUTS = {
    (3, 10): Layout(104, 112, None, 40, 120, None),
    (3, 11): Layout(112, 120, 128, 72, 136, 184, co_firsttraceable=168),
    (3, 12): Layout(112, 120, 128, 68, 136, 192, str_ascii_data=40, str_compact_data=56,
                    co_firsttraceable=176),
    (3, 13): Layout(112, 120, 128, 68, 136, 200, str_ascii_data=40, str_compact_data=56,
                    co_firsttraceable=184),
}

# What a reader (a core, a live inferior) raises for memory it cannot give, and what
# unpacking its short answer raises.
READ_ERRORS = errors.READ_ERRORS + (struct.error,)


@dataclass(frozen=True)
class Code:
    addr: int
    filename: str | None
    name: str | None
    firstlineno: int
    linetable: bytes
    code_start: int | None = None   # 3.11+: address of co_code_adaptive
    firsttraceable: int = 0         # 3.11+: _co_firsttraceable, in code units


def _word(read, addr):
    return struct.unpack("<Q", bytes(read(addr, 8)))[0]


def _u64(data, off):
    return struct.unpack_from("<Q", data, off)[0]


def _i32(data, off):
    return struct.unpack_from("<i", data, off)[0]


def read_bytes_object(read, addr: int, layout: Layout, limit: int = MAX_LINETABLE):
    """The payload of a bytes object, or None if its size is implausible."""
    size = struct.unpack("<q", bytes(read(addr + layout.var_size, 8)))[0]
    if size < 0 or size > limit:
        return None
    return bytes(read(addr + layout.bytes_sval, size)) if size else b""


def read_str(read, addr: int, layout: Layout, limit: int = MAX_NAME):
    """A compact str object's text (what code objects hold), or None."""
    length = struct.unpack("<q", bytes(read(addr + layout.str_length, 8)))[0]
    state = struct.unpack("<I", bytes(read(addr + layout.str_state, 4)))[0]
    kind = (state >> 2) & 7
    compact = (state >> 5) & 1
    ascii_ = (state >> 6) & 1
    if length < 0 or length > limit or not compact or kind not in (1, 2, 4):
        return None
    data = addr + (layout.str_ascii_data if ascii_ else layout.str_compact_data)
    raw = bytes(read(data, length * kind))
    codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
    return raw.decode(codec, "replace")


def decode_code(read, addr: int, layout: Layout, text, code_type=None):
    """The Code at `addr` read with one bulk read, or None when it is not a code object:
    with `code_type` (PyCode_Type's address, where the caller knows it) an object of another
    type; without it, one whose fields do not look like a code object's (no file name, no
    line table, a negative first line, an implausible table). `text(ptr)` gives the str at
    a pointer (NULL included). Errors of `read` and `text` propagate."""
    name_off = layout.co_qualname if layout.co_qualname is not None else layout.co_name
    ints = [layout.co_firstlineno] + ([layout.co_firsttraceable]
                                      if layout.co_firsttraceable is not None else [])
    span = max([o + 8 for o in (layout.ob_type, layout.co_filename, name_off,
                                layout.co_linetable)] + [o + 4 for o in ints])
    data = bytes(read(addr, span))
    fn, nm = _u64(data, layout.co_filename), _u64(data, name_off)
    table_addr = _u64(data, layout.co_linetable)
    first = _i32(data, layout.co_firstlineno)
    if code_type is not None:
        if _u64(data, layout.ob_type) != code_type:
            return None
    elif not (fn and table_addr) or first < 0:
        return None
    table = read_bytes_object(read, table_addr, layout) if table_addr else b""
    if table is None:
        if code_type is None:
            return None
        table = b""
    return Code(addr, text(fn), text(nm), first, table,
                addr + layout.co_code_adaptive if layout.co_code_adaptive is not None
                else None,
                _i32(data, layout.co_firsttraceable)
                if layout.co_firsttraceable is not None else 0)


def _str_reader(read, layout):
    """text() for decode_code from the fixed layout: None for NULL or a str it cannot
    decode."""
    return lambda ptr: read_str(read, ptr, layout) if ptr else None


def read_code(read, addr: int, version: tuple, walk=None):
    """The Code at `addr`, or None when the version is unknown or the object does not look
    like a code object (a bad pointer, freed memory). `walk`: the interpreter's WalkLayout
    from DWARF (walk_layout_from_dict), which any version has and which the fixed table
    lacks for 3.14+ and free-threaded builds; without it, the fixed table of `version`.
    Errors of `read` propagate."""
    layout = walk.code if walk is not None else LAYOUTS.get(tuple(version[:2]))
    if layout is None or addr == 0:
        return None
    return decode_code(read, addr, layout, _str_reader(read, layout),
                       walk.code_type if walk is not None else None)


def location(read, code_addr: int, offset: int, version: tuple, walk=None):
    """(filename, name, line) of byte `offset` in the code object at `code_addr`, or None
    when the code object cannot be read. `walk` as for read_code."""
    code = read_code(read, code_addr, version, walk)
    if code is None:
        return None
    return code.filename, code.name, addr2line(code.linetable, code.firstlineno, offset,
                                               version)


# ---------------------------------------------------------------------------------------
# Python stacks: the one walk of interpreters -> thread states -> frames
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StackLayout:
    """Offsets to walk interpreters -> thread states -> frames. The thread-state and
    runtime fields are private; checked against the internal headers by the tests. Frame
    fields: 3.10 PyFrameObject (f_back, f_code, f_lasti: an int, in code units); 3.11+
    _PyInterpreterFrame (previous, code, instruction pointer, owner)."""
    runtime_interpreters_head: int
    interp_next: int
    interp_threads_head: int
    tstate_next: int
    tstate_thread_id: int
    tstate_frame: int            # 3.11/3.12: tstate->cframe, then cframe_current_frame
    cframe_current_frame: int | None
    frame_previous: int
    frame_code: int
    frame_instr: int             # 3.10: f_lasti (int32); else a pointer
    frame_owner: int | None      # 3.12+: FRAME_OWNED_BY_CSTACK frames are not Python code


FRAME_OWNED_BY_GENERATOR = 1
FRAME_OWNED_BY_CSTACK = 3
MAX_INTERPRETERS = 64
MAX_THREADS = 4096
MAX_FRAMES = 1024

STACK_LAYOUTS = {
    (3, 10): StackLayout(32, 0, 8, 8, 176, 24, None, 24, 32, 96, None),
    (3, 11): StackLayout(40, 0, 16, 8, 152, 56, 8, 48, 32, 56, None),
    (3, 12): StackLayout(40, 0, 72, 8, 136, 56, 0, 8, 0, 56, 70),
    (3, 13): StackLayout(632, 7264, 7344, 8, 152, 72, None, 8, 0, 56, 70),
}

# Members the walk reads beyond STACK_LAYOUTS (checked against DWARF by
# tests/gdb/test_pystack.py):
# 3.10's f_lineno, 3.11's owner byte (3.12+: STACK_LAYOUTS' frame_owner), native_thread_id.
_MORE = {
    (3, 10): {"frame_lineno": 100},
    (3, 11): {"frame_owner": 69, "tstate_native_thread_id": 160},
    (3, 12): {"tstate_native_thread_id": 144},
    (3, 13): {"tstate_native_thread_id": 160},
}


@dataclass(frozen=True)
class WalkLayout:
    """Everything the walk reads, as byte offsets: from DWARF in gdb (inferior/layout.py),
    from the fixed tables here without it (fixed_walk_layout). Frames are 3.10's PyFrameObjects
    (`frame_objects`: f_back, f_code, f_lasti and f_lineno, ints in code units) or 3.11+'s
    _PyInterpreterFrames (previous, f_code / f_executable, prev_instr / instr_ptr, owner)."""
    code: Layout
    runtime_interpreters_head: int
    interp_next: int
    interp_threads_head: int     # threads.head, 3.10 tstate_head
    tstate_next: int
    tstate_thread_id: int        # pthread_self() of the thread (unsigned long)
    tstate_native_thread_id: int | None   # 3.11+: the thread's LWP
    tstate_frame: int            # 3.10 frame; 3.11, 3.12 cframe; 3.13 current_frame
    cframe_current_frame: int | None      # 3.11, 3.12
    frame_objects: bool
    frame_previous: int
    frame_code: int
    frame_instr: int             # 3.10: f_lasti (int); else a pointer
    frame_lineno: int | None     # 3.10: f_lineno (int), non-zero while a trace function runs
    frame_owner: int | None      # 3.11+: the owner byte
    owner_cstack: int | None     # 3.12+: FRAME_OWNED_BY_CSTACK, shim frames
    owner_generator: int | None  # 3.11+: FRAME_OWNED_BY_GENERATOR
    table_version: tuple         # the line-table format: (3, 10) or (3, 11)
    code_type: int | None = None  # PyCode_Type's address, where known (gdb)
    frame_code_tags: int = 0     # 3.14+: f_executable is a _PyStackRef, these its tag bits


def walk_layout_from_dict(d: dict) -> WalkLayout:
    """The WalkLayout that dataclasses.asdict() made `d` of (inferior/layout.py's DWARF
    layout handed to a gdb-free reader as JSON)."""
    d = dict(d)
    code = Layout(**d.pop("code"))
    return WalkLayout(code=code, table_version=tuple(d.pop("table_version")), **d)


@functools.lru_cache(maxsize=None)
def fixed_walk_layout(version: tuple):
    """The WalkLayout of interpreter `version` from the fixed tables, or None."""
    v = tuple(version[:2])
    sl, code = STACK_LAYOUTS.get(v), LAYOUTS.get(v)
    if sl is None or code is None:
        return None
    more = _MORE[v]
    objects = v < (3, 11)
    return WalkLayout(
        code, sl.runtime_interpreters_head, sl.interp_next, sl.interp_threads_head,
        sl.tstate_next, sl.tstate_thread_id, more.get("tstate_native_thread_id"),
        sl.tstate_frame, sl.cframe_current_frame, objects, sl.frame_previous, sl.frame_code,
        sl.frame_instr, more.get("frame_lineno"),
        sl.frame_owner if sl.frame_owner is not None else more.get("frame_owner"),
        FRAME_OWNED_BY_CSTACK if sl.frame_owner is not None else None,
        None if objects else FRAME_OWNED_BY_GENERATOR, (3, 10) if objects else (3, 11))


def thread_states(read, runtime_addr: int, lay: WalkLayout):
    """Yields (tstate, thread_id, native_thread_id or None) of every thread state of every
    interpreter under _PyRuntime (at `runtime_addr`): at most MAX_INTERPRETERS x
    MAX_THREADS, each list node once (a looping list ends). Errors of `read` propagate."""
    offs = [lay.tstate_next, lay.tstate_thread_id]
    if lay.tstate_native_thread_id is not None:
        offs.append(lay.tstate_native_thread_id)
    base = min(offs)
    span = max(offs) + 8 - base
    seen = set()
    interp = _word(read, runtime_addr + lay.runtime_interpreters_head)
    for _ in range(MAX_INTERPRETERS):
        if not interp or interp in seen:
            return
        seen.add(interp)
        ts = _word(read, interp + lay.interp_threads_head)
        for _ in range(MAX_THREADS):
            if not ts or ts in seen:
                break
            seen.add(ts)
            data = bytes(read(ts + base, span))
            ntid = lay.tstate_native_thread_id
            yield ts, _u64(data, lay.tstate_thread_id - base), \
                None if ntid is None else _u64(data, ntid - base)
            ts = _u64(data, lay.tstate_next - base)
        interp = _word(read, interp + lay.interp_next)


@dataclass(frozen=True)
class WalkedFrame:
    code: Code
    offset: int                  # byte offset of the instruction (negative: not started)
    line: int | None


class FrameWalk:
    """One walk down a thread's Python frames, innermost first, as CPython's own walkers
    (_PyFrame_GetFirstComplete) and libpython's py-bt see them: 3.10 tstate->frame through
    f_back; 3.11, 3.12 tstate->cframe->current_frame and 3.13 tstate->current_frame
    through `previous`. Passed over (counted in `skipped`): shim frames (owner
    FRAME_OWNED_BY_CSTACK, 3.12+: the C stack's entry into the eval loop), incomplete frames
    (pushed, first instruction not run yet) and frames whose code is not a code object.

    `read(addr, size)` reads the target; `code_at(addr)` gives the Code at an address or
    None (decode_code, cached as the caller likes). The target is not trusted: at most
    `limit` frames and 2 * limit + 64 hops (`truncated`), and a frame seen twice ends the
    walk (`problem`). Errors of `read` and `code_at` propagate to the caller, who keeps the
    frames yielded so far."""

    def __init__(self, read, layout: WalkLayout, code_at):
        self.read, self.layout, self.code_at = read, layout, code_at
        self.skipped, self.truncated, self.problem = 0, False, None

    def frames(self, tstate: int, limit: int, raw=False):
        """Yields the WalkedFrames of the thread state at `tstate`; with `raw`, (address,
        bytes) of every frame of the chain instead, those passed over included (the
        owners search reads their slots), `limit` of them at most."""
        lay = self.layout
        frame = _word(self.read, tstate + lay.tstate_frame)
        if lay.cframe_current_frame is not None and frame:
            frame = _word(self.read, frame + lay.cframe_current_frame)
        fields = [(lay.frame_previous, 8), (lay.frame_code, 8),
                  (lay.frame_instr, 4 if lay.frame_objects else 8)]
        fields += [(o, n) for o, n in ((lay.frame_lineno, 4), (lay.frame_owner, 1))
                   if o is not None]
        span = max(o + n for o, n in fields)
        seen = set()
        emitted = 0
        hops = 2 * limit + 64   # shim and incomplete frames are at most about one per frame
        while frame:
            if frame in seen:
                self.problem = "frame 0x%x seen twice: the chain is a cycle" % frame
                return
            seen.add(frame)
            if emitted >= limit or len(seen) > hops:
                self.truncated = True
                return
            addr, data = frame, bytes(self.read(frame, span))
            frame = _u64(data, lay.frame_previous)
            if raw:
                emitted += 1
                yield addr, data
                continue
            found = self._frame(data)
            if found is None:
                self.skipped += 1
                continue
            emitted += 1
            yield found

    def _frame(self, data):
        """The WalkedFrame of one frame's bytes, or None for a frame to pass over."""
        lay = self.layout
        code_addr = _u64(data, lay.frame_code) & ~lay.frame_code_tags
        if lay.frame_objects:
            lasti = _i32(data, lay.frame_instr)
            lineno = _i32(data, lay.frame_lineno) if lay.frame_lineno is not None else 0
            code = self.code_at(code_addr) if code_addr else None
            if code is None:
                return None
            # PyFrame_GetLineNumber (3.10): f_lineno while tracing, else the line table.
            return WalkedFrame(code, lasti * 2, lineno if lineno else
                               addr2line(code.linetable, code.firstlineno, lasti * 2,
                                         lay.table_version))
        owner = data[lay.frame_owner] if lay.frame_owner is not None else None
        if lay.owner_cstack is not None and owner == lay.owner_cstack:
            return None
        code = self.code_at(code_addr) if code_addr else None
        if code is None or code.code_start is None:
            return None
        # _PyInterpreterFrame_LASTI: the instruction being executed, in 2-byte code units
        # (3.11/3.12 prev_instr, 3.13 instr_ptr; a fresh 3.11/3.12 frame gives -1).
        units = (_u64(data, lay.frame_instr) - code.code_start) // 2
        if owner != lay.owner_generator and units < code.firsttraceable:
            return None    # _PyFrame_IsIncomplete: pushed, not started
        return WalkedFrame(code, units * 2, addr2line(code.linetable, code.firstlineno,
                                                      units * 2, lay.table_version))


# ---------------------------------------------------------------------------------------
# Python stacks without gdb (a core through corefile.Core.read, any reader)
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    code: int                    # code object address
    offset: int                  # byte offset of the instruction (-1: not started)
    filename: str | None
    name: str | None
    line: int | None


@dataclass(frozen=True)
class PyThread:
    tstate: int
    thread_id: int               # pthread_t of the thread (threading.get_ident())
    frames: tuple                # innermost first
    truncated: bool              # MAX_FRAMES reached, a cycle, or unreadable memory


def python_stacks(read, runtime_addr: int, version: tuple, walk=None) -> list:
    """Every thread state of every interpreter under `_PyRuntime` (at `runtime_addr`) with
    its Python frames, innermost first: FrameWalk with the offsets of `walk` (a WalkLayout
    from DWARF) or else the fixed offsets of `version`. [] for an unknown version without
    `walk`. Reads only memory: never calls the target. Unreadable or looping lists end the
    walk (PyThread.truncated for frames)."""
    lay = walk if walk is not None else fixed_walk_layout(version)
    if lay is None:
        return []
    text = _str_reader(read, lay.code)
    codes = {}

    def code_at(addr):
        if addr not in codes:
            codes[addr] = decode_code(read, addr, lay.code, text, lay.code_type)
        return codes[addr]

    out = []
    try:
        for ts, tid, _ in thread_states(read, runtime_addr, lay):
            walk = FrameWalk(read, lay, code_at)
            frames, broken = [], False
            try:
                for f in walk.frames(ts, MAX_FRAMES):
                    frames.append(Frame(f.code.addr, max(f.offset, -1), f.code.filename,
                                        f.code.name, f.line))
            except READ_ERRORS:
                broken = True
            out.append(PyThread(ts, tid, tuple(frames),
                                broken or walk.truncated or walk.problem is not None))
    except READ_ERRORS:
        pass
    return out
