"""Python source lines from code objects in a target's memory, without GDB and without
running the target's interpreter: the other half of pyref's PYCTX records (a code object's
address and an instruction's byte offset, docs/ring-format.md) and of a Python stack read
from a core.

Two layers:

* `addr2line(linetable, firstlineno, offset, version)` — pure logic, the interpreter's own
  `PyCode_Addr2Line()` on the bytes of `co_linetable`: the 3.10 format (pairs of byte
  deltas) or the 3.11+ location table (Objects/locations.md). Checked against `co_lines()`
  and `co_positions()` of real code objects of each interpreter (tests/test_pycontext.py).
* `read_code(read, addr, version)` / `location(read, code, offset, version)` — read a
  code object's file name, name, first line and line table through a `read(addr, size)`
  callable (a live inferior, `corefile.Core.read`), with the field offsets of the public
  `PyCodeObject`, `PyBytesObject` and `PyASCIIObject` structs per version (`LAYOUTS`,
  checked against offsetof() in C by the tests). Everything read is distrusted: sizes are
  capped and a bad object gives None, never an exception other than the reader's own.

`version` is (major, minor), e.g. (3, 12).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

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


# Checked against offsetof() by tests/test_pycontext.py (3.11d has the same as 3.11).
LAYOUTS = {
    (3, 10): Layout(104, 112, None, 40, 120, None),
    (3, 11): Layout(112, 120, 128, 72, 136, 184),
    (3, 12): Layout(112, 120, 128, 68, 136, 192, str_ascii_data=40, str_compact_data=56),
    (3, 13): Layout(112, 120, 128, 68, 136, 200, str_ascii_data=40, str_compact_data=56),
}


@dataclass(frozen=True)
class Code:
    addr: int
    filename: str | None
    name: str | None
    firstlineno: int
    linetable: bytes


def _word(read, addr):
    return struct.unpack("<Q", bytes(read(addr, 8)))[0]


def read_bytes_object(read, addr: int, layout: Layout, limit: int = MAX_LINETABLE):
    """The payload of a bytes object, or None if its size is implausible."""
    size = struct.unpack("<q", bytes(read(addr + layout.var_size, 8)))[0]
    if size < 0 or size > limit:
        return None
    return bytes(read(addr + layout.bytes_sval, size)) if size else b""


def read_str(read, addr: int, layout: Layout, limit: int = MAX_NAME):
    """A compact str object's text (what code objects hold), or None."""
    length = struct.unpack("<q", bytes(read(addr + 16, 8)))[0]
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


def read_code(read, addr: int, version: tuple):
    """The Code at `addr`, or None when the version is unknown or the object does not look
    like a code object (a bad pointer, freed memory). Errors of `read` propagate."""
    layout = LAYOUTS.get(tuple(version[:2]))
    if layout is None or addr == 0:
        return None
    fn = _word(read, addr + layout.co_filename)
    nm = _word(read, addr + (layout.co_qualname if layout.co_qualname is not None
                             else layout.co_name))
    first = struct.unpack("<i", bytes(read(addr + layout.co_firstlineno, 4)))[0]
    lt = _word(read, addr + layout.co_linetable)
    if not (fn and lt) or first < 0:
        return None
    table = read_bytes_object(read, lt, layout)
    if table is None:
        return None
    return Code(addr, read_str(read, fn, layout), read_str(read, nm, layout) if nm else None,
                first, table)


def location(read, code_addr: int, offset: int, version: tuple):
    """(filename, name, line) of byte `offset` in the code object at `code_addr`, or None
    when the code object cannot be read."""
    code = read_code(read, code_addr, version)
    if code is None:
        return None
    return code.filename, code.name, addr2line(code.linetable, code.firstlineno, offset,
                                               version)


# ---------------------------------------------------------------------------------------
# Python stacks, from the runtime state down (a live process or a core)
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


def _frames(read, tstate, version, sl: StackLayout, layout: Layout):
    frames, seen = [], set()
    truncated = False
    try:
        f = _word(read, tstate + sl.tstate_frame)
        if sl.cframe_current_frame is not None and f:
            f = _word(read, f + sl.cframe_current_frame)
        while f:
            if f in seen or len(frames) >= MAX_FRAMES:
                truncated = True
                break
            seen.add(f)
            if sl.frame_owner is not None and \
                    bytes(read(f + sl.frame_owner, 1))[0] == FRAME_OWNED_BY_CSTACK:
                f = _word(read, f + sl.frame_previous)
                continue
            code = _word(read, f + sl.frame_code)
            if layout.co_code_adaptive is None:          # 3.10: f_lasti in code units
                lasti = struct.unpack("<i", bytes(read(f + sl.frame_instr, 4)))[0]
                offset = -1 if lasti < 0 else 2 * lasti
            else:
                offset = _word(read, f + sl.frame_instr) - (code + layout.co_code_adaptive)
            c = read_code(read, code, version)
            if c is not None:                          # 3.13: f_executable may be None
                frames.append(Frame(code, offset, c.filename, c.name,
                                    addr2line(c.linetable, c.firstlineno, offset, version)))
            f = _word(read, f + sl.frame_previous)
    except (MemoryError, OSError, ValueError, RuntimeError, struct.error):
        truncated = True
    return tuple(frames), truncated


def python_stacks(read, runtime_addr: int, version: tuple) -> list:
    """Every thread state of every interpreter under `_PyRuntime` (at `runtime_addr`) with
    its Python frames, innermost first. [] for an unknown version. Reads only memory:
    never calls the target. Unreadable or looping lists end the walk (PyThread.truncated
    for frames)."""
    sl = STACK_LAYOUTS.get(tuple(version[:2]))
    layout = LAYOUTS.get(tuple(version[:2]))
    if sl is None or layout is None:
        return []
    out = []
    seen = set()
    try:
        interp = _word(read, runtime_addr + sl.runtime_interpreters_head)
        for _ in range(MAX_INTERPRETERS):
            if not interp or interp in seen:
                break
            seen.add(interp)
            ts = _word(read, interp + sl.interp_threads_head)
            for _ in range(MAX_THREADS):
                if not ts or ts in seen:
                    break
                seen.add(ts)
                tid = _word(read, ts + sl.tstate_thread_id)
                frames, truncated = _frames(read, ts, version, sl, layout)
                out.append(PyThread(ts, tid, frames, truncated))
                ts = _word(read, ts + sl.tstate_next)
            interp = _word(read, interp + sl.interp_next)
    except (MemoryError, OSError, ValueError, RuntimeError, struct.error):
        pass
    return out
