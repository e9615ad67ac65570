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

The walk itself is pylines.FrameWalk (and pylines.thread_states), the same code that
pylines.python_stacks() runs without gdb: here it gets the offsets from DWARF (as a
pylines.WalkLayout), gdb's memory reads and objects.py's str decoding; there, fixed offsets
per version that tests/test_pystack.py checks against these DWARF ones. The tests also
check that both read the same frames from a core, and that they match libpython's py-bt.
"""
import json
from collections import namedtuple

import gdb

from pyref import objects, pylines, target
from pyref.target import MemoryReadError, NoDebugInfoError, PyrefError

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
# Layouts (from DWARF, once per objfile generation)
# ---------------------------------------------------------------------------------------
class _Layouts:
    """The structs the walk reads, from DWARF, and `walk`: their offsets as the
    pylines.WalkLayout that pylines.FrameWalk and pylines.thread_states read."""

    def __init__(self):
        olay = objects.layouts()  # first: it says what is wrong when there is no DWARF
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
        self.cframe = self.pyframe = None
        if self.iframe is not None:  # 3.11+
            if "current_frame" not in self.tstate:  # 3.11, 3.12: through tstate->cframe
                self.cframe = need("_PyCFrame", "struct _PyCFrame")
        else:  # 3.10
            self.pyframe = need("PyFrameObject", "struct _frame")
        self.walk = self._walk_layout(olay)

    def _walk_layout(self, olay):
        ts, iframe, code = self.tstate, self.iframe, self.code
        ntid = ts.fields.get("native_thread_id")
        if iframe is not None:
            frame = dict(
                tstate_frame=ts.offset("cframe" if self.cframe else "current_frame"),
                cframe_current_frame=self.cframe.offset("current_frame") if self.cframe
                else None,
                frame_objects=False, frame_previous=iframe.offset("previous"),
                frame_code=_one_of(iframe, "f_executable", "f_code"),
                frame_instr=_one_of(iframe, "instr_ptr", "prev_instr"), frame_lineno=None,
                frame_owner=iframe.offset("owner"),
                owner_cstack=target.enum_value("enum _frameowner", "FRAME_OWNED_BY_CSTACK",
                                               None),
                owner_generator=target.enum_value("enum _frameowner",
                                                  "FRAME_OWNED_BY_GENERATOR", 1),
                table_version=(3, 11))  # the location table, 3.11's format also in 3.12+
        else:
            f = self.pyframe
            frame = dict(tstate_frame=ts.offset("frame"), cframe_current_frame=None,
                         frame_objects=True, frame_previous=f.offset("f_back"),
                         frame_code=f.offset("f_code"), frame_instr=f.offset("f_lasti"),
                         frame_lineno=f.offset("f_lineno"), frame_owner=None,
                         owner_cstack=None, owner_generator=None, table_version=(3, 10))
        ascii_ = _need("PyASCIIObject")

        def opt(name):
            return code.offset(name) if name in code else None
        code_layout = pylines.Layout(
            co_filename=code.offset("co_filename"), co_name=code.offset("co_name"),
            co_qualname=opt("co_qualname"), co_firstlineno=code.offset("co_firstlineno"),
            co_linetable=code.offset("co_linetable"), co_code_adaptive=opt("co_code_adaptive"),
            ob_type=olay.ob_type, var_size=olay.ob_size,
            bytes_sval=self.bytes.offset("ob_sval"), str_state=ascii_.offset("state"),
            str_ascii_data=ascii_.size, str_compact_data=_need("PyCompactUnicodeObject").size,
            co_firsttraceable=opt("_co_firsttraceable"))
        return pylines.WalkLayout(
            code=code_layout,
            runtime_interpreters_head=self.runtime.offset("interpreters.head"),
            interp_next=self.interp.offset("next"),
            interp_threads_head=self.threads_head.offset, tstate_next=ts.offset("next"),
            tstate_thread_id=ts.offset("thread_id"),
            tstate_native_thread_id=ntid.offset if ntid else None,
            code_type=target.symbol_address("PyCode_Type"), **frame)


def _need(*names):
    lay = target.struct_layout(*names)
    if lay is None:
        raise NoDebugInfoError("no debug info for %s: the Python stack needs the "
                               "interpreter's debug symbols" % names[0])
    return lay


def _one_of(lay, *paths):
    """The offset of the first of `paths` in `lay`; NoDebugInfoError when none exists."""
    field = lay.find(*paths)[1]
    if field is None:
        raise NoDebugInfoError("%s has none of %s: unknown CPython version"
                               % (lay.name, ", ".join(paths)))
    return field.offset


def _layouts():
    cache = target.objfile_cache()
    lay = cache.get("pystack.layouts")
    if lay is None:
        lay = cache["pystack.layouts"] = _Layouts()
    return lay


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


def _all_tstates():
    """[(tstate, thread_id, native_thread_id)] of every thread state, bounded."""
    runtime = target.symbol_address("_PyRuntime")
    if runtime is None:
        raise PyrefError("no _PyRuntime symbol: is this a Python process?")
    return list(pylines.thread_states(target.read, runtime, _layouts().walk))


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
    """The pylines.Code at `addr`, cached per stop; None when `addr` is not a code object.
    Raises MemoryReadError when the code object is unreadable."""
    cache = target.stop_cache()
    key = ("pystack.code", addr)
    if key not in cache:
        lay = _layouts().walk
        cache[key] = pylines.decode_code(target.read, addr, lay.code, _text, lay.code_type)
    return cache[key]


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
    lay = _layouts()
    ts = thread_state(thread)
    if ts is None:
        raise PyrefError("this thread has no Python thread state (not a thread that "
                         "Python created or registered)")
    stack = Stack(ts)
    walk = pylines.FrameWalk(target.read, lay.walk, _code)
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
