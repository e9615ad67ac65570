"""A thread's Python stack, read from the target's memory: no inferior calls, no gdb.Value
walks, no libpython.py. Used by `pyref pystack` and by `pyref watch --python-stack`.

Which thread state. CPython keeps a list of thread states per interpreter
(_PyRuntime.interpreters.head -> PyInterpreterState.next; its threads at `tstate_head` on
3.10, `threads.head` on 3.11+; PyThreadState.next). The state of a gdb thread is the one
whose `native_thread_id` (3.11+) is the thread's LWP, or whose `thread_id` (pthread_self())
is the thread's pthread handle (from libthread_db, else the x86-64 `$fs_base`, which glibc
makes equal to pthread_self()). This works for a thread that is not holding the GIL too,
and on a core file; nothing here depends on which thread the interpreter thinks is current.

Which frames. Innermost first, as py-bt prints them:
- 3.10: tstate->frame, a chain of PyFrameObjects through f_back;
- 3.11, 3.12: tstate->cframe->current_frame, a chain of _PyInterpreterFrames through
  `previous`;
- 3.13: tstate->current_frame, the same chain.
Skipped, as CPython's own frame walkers (_PyFrame_GetFirstComplete) and libpython's py-bt
skip them: shim frames (owner FRAME_OWNED_BY_CSTACK, 3.12+) and incomplete frames (pushed,
first instruction not run yet). A frame whose code is not a code object is skipped too.

Each frame is read with one bulk read, its code object with one more (cached per stop):
co_filename, co_qualname (co_name on 3.10), co_firstlineno, co_linetable. The line is
computed by pylines from the line table and the frame's instruction offset (3.10:
f_lasti * 2, or f_lineno while a trace function runs; 3.11/3.12: prev_instr; 3.13:
instr_ptr, each relative to the code's co_code_adaptive). All layouts come from DWARF.

The target is not trusted: at most `limit` frames, a frame seen twice ends the walk (a
cycle), and an unreadable frame or code object ends it with a reason instead of raising.

pylines.python_stacks() is the gdb-free twin of this walk (fixed offsets per version, for
readers without gdb); tests/test_pystack.py checks that both read the same frames from a
core, and that they match libpython's py-bt.
"""
import json
from collections import namedtuple

import gdb

from pyref import objects, pylines, target
from pyref.target import MemoryReadError, NoDebugInfoError, PyrefError

DEFAULT_LIMIT = 64       # frames returned by default
MAX_LIMIT = 10000        # frames read at most, whatever the caller asks
MAX_INTERPRETERS = 64    # sub-interpreters examined when looking for a thread's state
MAX_THREADS = 4096       # thread states examined per interpreter
MAX_LINETABLE = 1 << 20  # bytes of a code object's line table read at most
MAX_NAME = 1024          # characters of a file or function name

PyFrame = namedtuple("PyFrame", "file line func")
PyFrame.__doc__ = """One Python frame: source file (co_filename), line (None when it
cannot be computed) and function (co_qualname, co_name on 3.10)."""


class Stack:
    """The result of read_stack(): `frames` (PyFrame, innermost first), `tstate` (the
    thread state's address), `skipped` (shim and incomplete frames passed over),
    `truncated` (True when `limit` cut the walk), `problem` (one line: why the walk ended
    before the outermost frame, or None)."""

    __slots__ = ("frames", "tstate", "skipped", "truncated", "problem")

    def __init__(self, tstate):
        self.frames, self.tstate = [], tstate
        self.skipped, self.truncated, self.problem = 0, False, None


# ---------------------------------------------------------------------------------------
# Layouts (from DWARF, once per objfile generation)
# ---------------------------------------------------------------------------------------
class _Layouts:
    def __init__(self):
        need = _need
        self.runtime = need("_PyRuntimeState", "struct pyruntimestate")
        self.interp = need("PyInterpreterState", "struct _is")
        self.tstate = need("PyThreadState", "struct _ts")
        self.code = need("PyCodeObject", "struct PyCodeObject")
        self.bytes = need("PyBytesObject")
        self.threads_head = self.interp.find("threads.head", "tstate_head")[1]
        if self.threads_head is None:
            raise NoDebugInfoError("PyInterpreterState has neither threads.head nor "
                                   "tstate_head: unknown CPython version")
        self.iframe = target.struct_layout("_PyInterpreterFrame", "struct _PyInterpreterFrame")
        if self.iframe is not None:  # 3.11+
            self.cframe = None
            if "current_frame" not in self.tstate:  # 3.11, 3.12: through tstate->cframe
                self.cframe = need("_PyCFrame", "struct _PyCFrame")
            self.f_code = self.iframe.find("f_executable", "f_code")[1]
            self.f_instr = self.iframe.find("instr_ptr", "prev_instr")[1]
            # pylines needs the line-table format: 3.11's location table, also 3.12+'s
            self.table_version = (3, 13) if "instr_ptr" in self.iframe else (3, 11)
            self.cstack = target.enum_value("enum _frameowner", "FRAME_OWNED_BY_CSTACK", None)
            self.generator = target.enum_value("enum _frameowner",
                                               "FRAME_OWNED_BY_GENERATOR", 1)
            self.pyframe = None
        else:  # 3.10
            self.pyframe = need("PyFrameObject", "struct _frame")
        self.code_type = target.symbol_address("PyCode_Type")


def _need(*names):
    lay = target.struct_layout(*names)
    if lay is None:
        raise NoDebugInfoError("no debug info for %s: the Python stack needs the "
                               "interpreter's debug symbols" % names[0])
    return lay


def _layouts():
    cache = target.objfile_cache()
    lay = cache.get("pystack.layouts")
    if lay is None:
        lay = cache["pystack.layouts"] = _Layouts()
    return lay


def _int(data, field, signed=False):
    return int.from_bytes(data[field.offset:field.offset + field.size], "little",
                          signed=signed)


# ---------------------------------------------------------------------------------------
# The thread state of a gdb thread
# ---------------------------------------------------------------------------------------
def _pthread_of(thread):
    """The pthread_t of a gdb thread, or None: libthread_db's handle, else (for the
    selected thread on x86-64) $fs_base, which glibc sets to pthread_self()."""
    try:
        handle = thread.handle()
        if handle:
            return int.from_bytes(bytes(handle)[:8], "little")
    except (gdb.error, AttributeError, TypeError, ValueError):
        pass
    try:
        if thread == gdb.selected_thread():
            return int(gdb.parse_and_eval("$fs_base")) & ((1 << 64) - 1)
    except (gdb.error, ValueError):
        pass
    return None


def _all_tstates():
    """[(interp, tstate, thread_id, native_thread_id)] of every thread state, bounded."""
    lay = _layouts()
    runtime = target.symbol_address("_PyRuntime")
    if runtime is None:
        raise PyrefError("no _PyRuntime symbol: is this a Python process?")
    out = []
    interp = target.read_u64(runtime + lay.runtime.offset("interpreters.head"))
    seen = set()
    tid_f = lay.tstate.field("thread_id")
    ntid_f = lay.tstate.fields.get("native_thread_id")
    span = max(tid_f.offset + tid_f.size, ntid_f.offset + ntid_f.size if ntid_f else 0)
    for _ in range(MAX_INTERPRETERS):
        if not interp or interp in seen:
            break
        seen.add(interp)
        ts = target.read_u64(interp + lay.threads_head.offset)
        for _ in range(MAX_THREADS):
            if not ts or ts in seen:
                break
            seen.add(ts)
            data = target.read(ts, span)
            out.append((interp, ts, _int(data, tid_f),
                        _int(data, ntid_f) if ntid_f else None))
            ts = target.read_u64(ts + lay.tstate.offset("next"))
        interp = target.read_u64(interp + lay.interp.offset("next"))
    return out


def thread_state(thread=None):
    """Address of the PyThreadState of gdb thread `thread` (default: the selected one), or
    None when the thread has none (a thread Python does not know). Cached per stop.
    Raises PyrefError when the interpreter's state cannot be read."""
    thread = thread or gdb.selected_thread()
    if thread is None:
        raise PyrefError("no thread selected")
    cache = target.stop_cache()
    key = ("pystack.tstate", thread.global_num)
    if key in cache:
        return cache[key]
    try:
        states = _all_tstates()
    except MemoryReadError as e:
        raise PyrefError("cannot read the interpreter's thread states: %s" % e) from None
    lwp = thread.ptid[1]
    found = next((ts for _, ts, _, ntid in states if ntid is not None and ntid == lwp), None)
    if found is None:
        pthread = _pthread_of(thread)
        if pthread is not None:
            found = next((ts for _, ts, tid, _ in states if tid == pthread), None)
    cache[key] = found
    return found


# ---------------------------------------------------------------------------------------
# Code objects
# ---------------------------------------------------------------------------------------
class _Code:
    __slots__ = ("addr", "file", "name", "firstlineno", "linetable", "code_start",
                 "firsttraceable")


def _code(addr):
    """The _Code at `addr`, cached per stop; None when `addr` is not a code object.
    Raises MemoryReadError when the code object is unreadable."""
    cache = target.stop_cache()
    key = ("pystack.code", addr)
    if key in cache:
        return cache[key]
    lay = _layouts()
    olay = objects.layouts()
    data = target.read(addr, lay.code.size)
    if lay.code_type is not None and \
            int.from_bytes(data[olay.ob_type:olay.ob_type + 8], "little") != lay.code_type:
        cache[key] = None
        return None
    c = _Code()
    c.addr = addr
    c.firstlineno = _int(data, lay.code.field("co_firstlineno"), signed=True)
    c.file = _str_field(data, lay.code.field("co_filename"))
    name_f = lay.code.find("co_qualname", "co_name")[1]
    c.name = _str_field(data, name_f)
    table = _int(data, lay.code.field("co_linetable"))
    c.linetable = _bytes_value(table) if table else b""
    adaptive = lay.code.fields.get("co_code_adaptive")
    c.code_start = addr + adaptive.offset if adaptive else None
    ft = lay.code.fields.get("_co_firsttraceable")
    c.firsttraceable = _int(data, ft, signed=True) if ft else 0
    cache[key] = c
    return c


def _str_field(data, field):
    ptr = _int(data, field)
    if not ptr:
        return "?"
    try:
        return objects.str_value(ptr, MAX_NAME)[0]
    except (MemoryReadError, NoDebugInfoError):
        return "<unreadable str 0x%x>" % ptr


def _bytes_value(addr):
    lay = _layouts()
    size = target.read_i64(addr + objects.layouts().ob_size)
    if not 0 <= size <= MAX_LINETABLE:
        return b""
    return target.read(addr + lay.bytes.offset("ob_sval"), size)


def _line(code, offset, table_version):
    """The line of byte offset `offset` in `code`: the interpreter's PyCode_Addr2Line
    (pylines), None where the table has none."""
    return pylines.addr2line(code.linetable, code.firstlineno, offset, table_version)


# ---------------------------------------------------------------------------------------
# Walking the frames
# ---------------------------------------------------------------------------------------
def read_stack(thread=None, limit=DEFAULT_LIMIT):
    """The Stack of gdb thread `thread` (default: the selected one). Raises PyrefError
    when the thread has no Python thread state or the interpreter cannot be read."""
    limit = max(0, min(limit, MAX_LIMIT))
    lay = _layouts()
    ts = thread_state(thread)
    if ts is None:
        raise PyrefError("this thread has no Python thread state (not a thread that "
                         "Python created or registered)")
    stack = Stack(ts)
    try:
        if lay.iframe is not None:
            _walk_interpreter_frames(lay, ts, stack, limit)
        else:
            _walk_frame_objects(lay, ts, stack, limit)
    except MemoryReadError as e:
        stack.problem = "the walk stopped at unreadable memory: %s" % e
    return stack


def python_stack(thread=None, limit=DEFAULT_LIMIT):
    """[(file, line, func)] of the thread's Python frames, innermost first (PyFrame)."""
    return read_stack(thread, limit).frames


def _walk_interpreter_frames(lay, ts, stack, limit):
    """3.11+: the _PyInterpreterFrame chain."""
    if lay.cframe is not None:
        cframe = target.read_u64(ts + lay.tstate.offset("cframe"))
        frame = target.read_u64(cframe + lay.cframe.offset("current_frame")) if cframe else 0
    else:
        frame = target.read_u64(ts + lay.tstate.offset("current_frame"))
    version = lay.table_version
    owner_f = lay.iframe.field("owner")
    prev_f = lay.iframe.field("previous")
    span = max(f.offset + f.size for f in (owner_f, prev_f, lay.f_code, lay.f_instr))
    seen = set()
    while frame:
        if frame in seen:
            stack.problem = "frame 0x%x seen twice: the chain is a cycle" % frame
            return
        seen.add(frame)
        if len(stack.frames) >= limit:
            stack.truncated = True
            return
        data = target.read(frame, span)
        owner = _int(data, owner_f)
        code_addr = _int(data, lay.f_code)
        instr = _int(data, lay.f_instr)
        frame = _int(data, prev_f)
        if lay.cstack is not None and owner == lay.cstack:
            stack.skipped += 1  # a shim frame: the C stack's entry into the eval loop
            continue
        code = _code(code_addr) if code_addr else None
        if code is None or code.code_start is None:
            stack.skipped += 1
            continue
        # _PyInterpreterFrame_LASTI: the instruction being executed, in 2-byte code units
        # (3.11/3.12 prev_instr, 3.13 instr_ptr; a fresh 3.11/3.12 frame gives -1).
        units = (instr - code.code_start) // 2
        if owner != lay.generator and units < code.firsttraceable:
            stack.skipped += 1  # _PyFrame_IsIncomplete: pushed, not started
            continue
        stack.frames.append(PyFrame(code.file, _line(code, units * 2, version), code.name))


def _walk_frame_objects(lay, ts, stack, limit):
    """3.10: the PyFrameObject chain."""
    f = lay.pyframe
    frame = target.read_u64(ts + lay.tstate.offset("frame"))
    fields = [f.field(n) for n in ("f_back", "f_code", "f_lasti", "f_lineno")]
    span = max(x.offset + x.size for x in fields)
    back_f, code_f, lasti_f, lineno_f = fields
    seen = set()
    while frame:
        if frame in seen:
            stack.problem = "frame 0x%x seen twice: the chain is a cycle" % frame
            return
        seen.add(frame)
        if len(stack.frames) >= limit:
            stack.truncated = True
            return
        data = target.read(frame, span)
        code_addr = _int(data, code_f)
        lasti = _int(data, lasti_f, signed=True)
        lineno = _int(data, lineno_f, signed=True)
        frame = _int(data, back_f)
        code = _code(code_addr) if code_addr else None
        if code is None:
            stack.skipped += 1
            continue
        # PyFrame_GetLineNumber (3.10): f_lineno while tracing, else the line table.
        line = lineno if lineno else _line(code, lasti * 2, (3, 10))
        stack.frames.append(PyFrame(code.file, line, code.name))


# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------
def _plain(text, style):
    return text


def frame_text(fr, st=_plain):
    """py-bt's line for one frame (without its indent); `st` a settings.Styler."""
    return 'File "%s", line %s, in %s' % (st(fr.file, "file"),
                                          "?" if fr.line is None else fr.line,
                                          st(fr.func, "function"))


def stack_text(stack, thread, st=_plain):
    out = ["Python stack of thread %d (LWP %d), thread state %s, most recent call first:"
           % (thread.num, thread.ptid[1], st("0x%x" % stack.tstate, "address"))]
    if not stack.frames:
        out.append("  (no Python frames)")
    out += ["  " + frame_text(fr, st) for fr in stack.frames]
    if stack.truncated:
        out.append("  ... (more frames: raise --limit)")
    if stack.problem:
        out.append("  (%s)" % stack.problem)
    return "\n".join(out) + "\n"


def stack_dict(stack, thread):
    return {"thread": thread.num, "lwp": thread.ptid[1], "tstate": "0x%x" % stack.tstate,
            "frames": [{"file": fr.file, "line": fr.line, "function": fr.func}
                       for fr in stack.frames],
            "skipped": stack.skipped, "truncated": stack.truncated, "problem": stack.problem}


# ---------------------------------------------------------------------------------------
# pyref pystack
# ---------------------------------------------------------------------------------------
from pyref import commands, settings  # noqa: E402  (the reader above needs neither)


class PyStack(commands.Subcommand):
    name = "pystack"
    summary = "Show the Python stack of the selected thread, read from memory (no calls)."
    details = """\
One line per Python frame, most recent call first, as py-bt prints them but with the
qualified function name (co_qualname, 3.11+). The frames are read from the thread's
PyThreadState in memory (3.10: the PyFrameObject chain; 3.11+: the _PyInterpreterFrame
chain), so this works on a core file, on a thread that does not hold the GIL, and without
libpython.py. Shim and incomplete frames are skipped as CPython's own walkers skip them.
Needs the interpreter's debug info (for the struct layouts)."""
    examples = ("pyref pystack", "pyref pystack -n 5", "pyref pystack --all",
                "pyref pystack --json")

    def add_arguments(self, parser):
        parser.add_argument("-n", "--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                            help="show at most N frames per thread (default %d)"
                                 % DEFAULT_LIMIT)
        parser.add_argument("--all", action="store_true",
                            help="every thread that has a Python thread state")
        parser.add_argument("--json", action="store_true",
                            help='print one JSON object: {"threads": [{"thread", "lwp", '
                                 '"tstate", "frames": [{"file", "line", "function"}], '
                                 '...}]}')

    def run(self, args, from_tty):
        if args.limit <= 0:
            raise PyrefError("--limit wants a positive number")
        target.require_target()
        if args.all:
            threads = [t for t in sorted(gdb.selected_inferior().threads(),
                                         key=lambda t: t.num) if thread_state(t) is not None]
        else:
            threads = [gdb.selected_thread()]
        stacks = [(read_stack(t, args.limit), t) for t in threads]
        if args.json:
            self.write(json.dumps({"threads": [stack_dict(s, t) for s, t in stacks]},
                                  indent=1) + "\n")
            return
        if not stacks:
            self.write("no thread has a Python thread state\n")
            return
        st = settings.styler()
        self.write("\n".join(stack_text(s, t, st) for s, t in stacks))
