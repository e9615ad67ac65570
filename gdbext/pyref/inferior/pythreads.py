"""A thread's Python stack, read from the target's memory: no inferior calls, no gdb.Value
walks, no libpython.py. Used by `pyref pystack` and by `pyref watch --python-stack`; the
thread states it finds are also what `pyref owners` attributes interpreter frames with.

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
computed by reader/pyframes.py from the line table and the frame's instruction offset (3.10:
f_lasti * 2, or f_lineno while a trace function runs; 3.11/3.12: prev_instr; 3.13:
instr_ptr, each relative to the code's co_code_adaptive). All layouts come from DWARF.

The target is not trusted: at most `limit` frames, a frame seen twice ends the walk (a
cycle), and an unreadable frame or code object ends it with a reason instead of raising.

The walk itself is pyframes.FrameWalk (and pyframes.thread_states), the same code that
pyframes.python_stacks() runs without gdb: here it gets the offsets from DWARF
(inferior/layout.py's `walk`), gdb's memory reads and objects.py's str decoding; there,
fixed offsets per version that tests/gdb/test_pystack.py checks against these DWARF ones.
The tests also check that both read the same frames from a core, and that they match
libpython's py-bt.
"""
from collections import namedtuple

import gdb

from pyref.errors import NoDebugInfoError, PyrefError
from pyref.inferior import layout, objects, target
from pyref.inferior.target import MemoryReadError
from pyref.reader import pyframes

DEFAULT_LIMIT = 64       # frames returned by default
MAX_LIMIT = 10000        # frames read at most, whatever the caller asks
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
# The thread state of a gdb thread
# ---------------------------------------------------------------------------------------
def _pthread_of(thread):
    """The pthread_t of a gdb thread, or None: libthread_db's handle, else (for the
    selected thread on x86-64) $fs_base, which glibc sets to pthread_self()."""
    try:
        handle = thread.handle()
        if handle:
            return int.from_bytes(bytes(handle)[:8], "little")
    except (gdb.error, AttributeError, TypeError, ValueError, RuntimeError):  # no libthread_db
        pass
    try:
        if thread == gdb.selected_thread():
            return int(gdb.parse_and_eval("$fs_base")) & ((1 << 64) - 1)
    except (gdb.error, ValueError):
        pass
    return None


def all_tstates():
    """[(tstate, thread_id, native_thread_id)] of every thread state, bounded."""
    runtime = target.symbol_address("_PyRuntime")
    if runtime is None:
        raise PyrefError("no _PyRuntime symbol: is this a Python process?")
    return list(pyframes.thread_states(target.read, runtime, layout.layouts().walk))


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
        states = all_tstates()
    except MemoryReadError as e:
        raise PyrefError("cannot read the interpreter's thread states: %s" % e) from None
    lwp = thread.ptid[1]
    found = next((ts for ts, _, ntid in states if ntid is not None and ntid == lwp), None)
    if found is None:
        pthread = _pthread_of(thread)
        if pthread is not None:
            found = next((ts for ts, tid, _ in states if tid == pthread), None)
    cache[key] = found
    return found


# ---------------------------------------------------------------------------------------
# Code objects
# ---------------------------------------------------------------------------------------
def _code(addr):
    """The pyframes.Code at `addr`, cached per stop; None when `addr` is not a code object.
    Raises MemoryReadError when the code object is unreadable."""
    cache = target.stop_cache()
    key = ("pystack.code", addr)
    if key not in cache:
        lay = layout.layouts().walk
        cache[key] = pyframes.decode_code(target.read, addr, lay.code, _text, lay.code_type)
    return cache[key]


def code_line(code_addr, offset):
    """The PyFrame (file, line, function) of byte `offset` in the code object at
    `code_addr` (a PYCTX record's), or None when no code object can be read there (freed
    since, or a bad address)."""
    try:
        code = _code(code_addr)
    except MemoryReadError:
        return None
    if code is None:
        return None
    return PyFrame(code.filename, pyframes.addr2line(code.linetable, code.firstlineno, offset,
                                                     layout.layouts().walk.table_version),
                   code.name)


def _text(ptr):
    if not ptr:
        return "?"
    try:
        return objects.str_value(ptr, MAX_NAME)[0]
    except (MemoryReadError, NoDebugInfoError):
        return "<unreadable str 0x%x>" % ptr


# ---------------------------------------------------------------------------------------
# Walking the frames
# ---------------------------------------------------------------------------------------
def read_stack(thread=None, limit=DEFAULT_LIMIT):
    """The Stack of gdb thread `thread` (default: the selected one). Raises PyrefError
    when the thread has no Python thread state or the interpreter cannot be read."""
    limit = max(0, min(limit, MAX_LIMIT))
    walk_layout = layout.layouts().walk
    ts = thread_state(thread)
    if ts is None:
        raise PyrefError("this thread has no Python thread state (not a thread that "
                         "Python created or registered)")
    stack = Stack(ts)
    walk = pyframes.FrameWalk(target.read, walk_layout, _code)
    try:
        for fr in walk.frames(ts, limit):
            stack.frames.append(PyFrame(fr.code.filename, fr.line, fr.code.name))
    except MemoryReadError as e:
        stack.problem = "the walk stopped at unreadable memory: %s" % e
    stack.skipped, stack.truncated = walk.skipped, walk.truncated
    stack.problem = stack.problem or walk.problem
    return stack


def python_stack(thread=None, limit=DEFAULT_LIMIT):
    """[(file, line, func)] of the thread's Python frames, innermost first (PyFrame)."""
    return read_stack(thread, limit).frames


# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------
def plain(text, style):
    """The styler that styles nothing: commands pass settings.styler() instead."""
    return text


def short_text(fr, st=plain):
    """'py file.py:LINE in func' of a frame (the file without its directory): how a C site
    names the Python line that ran it; `st` a settings.Styler."""
    return "py %s:%s in %s" % (st((fr.file or "?").rsplit("/", 1)[-1], "file"),
                               "?" if fr.line is None else fr.line, st(fr.func, "function"))


def frame_json(fr):
    """The --json form of a PyFrame, or None."""
    return None if fr is None else {"file": fr.file, "line": fr.line, "function": fr.func}


def json_suffix(d):
    """'  [py file.py:LINE in func]' of a frame_json() dict: what a report appends to a C
    site that has its Python line; '' for None."""
    if not d:
        return ""
    return "  [%s]" % short_text(PyFrame(d["file"], d["line"], d["function"]))


def frame_text(fr, st=plain):
    """py-bt's line for one frame (without its indent); `st` a settings.Styler."""
    return 'File "%s", line %s, in %s' % (st(fr.file, "file"),
                                          "?" if fr.line is None else fr.line,
                                          st(fr.func, "function"))
