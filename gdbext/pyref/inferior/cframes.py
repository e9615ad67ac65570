"""Bounded walks of gdb's frames, blocks and variables, never raising: the one frame concept
of pyref's gdb side (CPython's libpython has its Frame; this is pyref's).

- the selected thread's frames, where each is, the pointers its arguments and locals hold,
  and the crash's signal ($_siginfo): what `pyref why` looks for the dead object with;
- which frames are pyref's shim (the inline wrappers of c_helpers/shim/) and CPython's
  headers: what the backtrace filter hides and every command looks past;
- the site of the instruction that wrote a watched word and the user's line that made it
  (the first frame outside the shim, CPython's headers and the interpreter): what `pyref
  watch` attributes a change to;
- every thread's C frames (stack pointer, function), innermost registers and the variables
  DWARF places in a frame's memory: what `pyref owners` attributes a stack word to;
- the calls the selected frame's function makes: what `pyref explain` explains.

Walks that switch threads restore the user's selection (target.preserved_selection).
"""
import os
import re

import gdb

from pyref.errors import PyrefError
from pyref.inferior import target
from pyref.reader import ringformat, sites
from pyref.reader.sites import Site

MAX_FRAMES = 64           # frames examined for the dead object and the crash site
MAX_SYMBOLS = 64          # arguments and locals examined per frame
MAX_CALLER_FRAMES = 32    # C frames searched for the extension's caller of CPython code
MAX_THREAD_FRAMES = 256   # C frames walked per thread
MAX_THREADS = 256         # threads examined
MAX_VARS = 400            # symbols examined per C frame
MAX_SCOPE_BYTES = 16384   # functions up to this size are searched for out-of-scope blocks
MAX_INSNS = 4000          # instructions disassembled for the calls of a function
MAX_SITE_SCAN = 16 << 20  # bytes of a function's objfile searched for its sites


# ---------------------------------------------------------------------------------------
# Shim frames and CPython's headers
# ---------------------------------------------------------------------------------------
# A shim frame is code of pyref's Python.h shim: the recording wrappers (pyref_incref,
# pyref_decref, ...) of c_helpers/shim/Python.h, the C-API wrappers of pyref_capi*.h and
# the hooks of pyref_hooks.h, all inline functions the extension's own line calls. They
# are told by the file that defines them (installed as PREFIX/include/pyref/shim/), not by
# their names, so that a wrapper added to the shim is one too.
SHIM_DIR = "shim"


def is_shim_file(path):
    """True when `path` (as the debug info names it) is one of the shim's headers."""
    if not path:
        return False
    directory, base = os.path.split(path)
    return os.path.basename(directory) == SHIM_DIR and (
        base == "Python.h" or (base.startswith("pyref_") and base.endswith(".h")))


# CPython's headers live in a directory named after the interpreter (PREFIX/include/
# python3.11, python3.11d, python3.13t; their cpython/ and internal/ subdirectories), or
# in Include/ of a source tree. The out-of-line copies of their static inline functions
# (Py_INCREF at -O0) are frames no user wrote.
_PY_INCLUDE = re.compile(r"(^|/)(python3\.\d+[a-z]*|Include)/(.+/)?[^/]+\.h$")


def is_python_header(path):
    """True when `path` is one of CPython's headers (object.h, cpython/listobject.h...)."""
    return bool(path) and _PY_INCLUDE.search(path) is not None


def _frame_file(frame):
    """The file the frame's line is in, or None. Never raises."""
    try:
        sal = frame.find_sal()
        return sal.symtab.filename if sal is not None and sal.symtab is not None else None
    except (gdb.error, RuntimeError):
        return None


def is_shim_frame(frame):
    """True when gdb frame `frame` runs code of the shim (see SHIM_DIR), by the file its
    line is in: an inline function's own symbol names the file that calls it (gdb gives it
    DW_AT_call_file), not the one that defines it. Never raises."""
    return is_shim_file(_frame_file(frame))


def user_frame(frame):
    """`frame`, or when it is a shim frame or runs a CPython header's inline function the
    nearest older frame that does neither (bounded): the user's function whose line
    called them. None when there is none."""
    for _ in range(MAX_CALLER_FRAMES):
        if frame is None or not (is_shim_frame(frame) or
                                 is_python_header(_frame_file(frame))):
            return frame
        try:
            frame = frame.older()
        except gdb.error:
            return None
    return None


# ---------------------------------------------------------------------------------------
# The selected thread: the crash
# ---------------------------------------------------------------------------------------
def frames():
    """Frames of the selected thread, innermost first, bounded."""
    out = []
    try:
        f = gdb.newest_frame()
    except gdb.error:
        return out
    while f is not None and len(out) < MAX_FRAMES:
        out.append(f)
        try:
            f = f.older()
        except gdb.error:
            break
    return out


def frame_where(f):
    """(file, line, function) of a frame, or None without debug info."""
    try:
        sal = f.find_sal()
        fn = f.function()
        if sal is None or sal.symtab is None or fn is None:
            return None
        return sal.symtab.filename, sal.line, fn.name
    except (gdb.error, RuntimeError):
        return None


def frame_name(f):
    """'func()' of a frame for a report; a shim frame is named after the user's function
    it runs in: 'boom() (in the shim's pyref_decref)'."""
    where = frame_where(f)
    name = where[2] if where else (f.name() or "??")
    if not is_shim_frame(f):
        return name + "()"
    user = user_frame(f)
    outer = frame_where(user) if user is not None else None
    if outer is None:
        return "%s() (the shim's)" % name
    return "%s() (in the shim's %s)" % (outer[2], name)


def pointer_symbols(f):
    """(name, address) of the frame's arguments and locals that are pointers, bounded."""
    out = []
    try:
        block = f.block()
    except (gdb.error, RuntimeError):
        return out
    seen = 0
    while block is not None and seen < MAX_SYMBOLS:
        for sym in block:
            seen += 1
            if seen > MAX_SYMBOLS:
                break
            if not (sym.is_argument or sym.is_variable):
                continue
            try:
                if sym.type.strip_typedefs().code != gdb.TYPE_CODE_PTR:
                    continue
                v = sym.value(f)
                if v.is_optimized_out:
                    continue
                out.append((sym.name, int(v) & ((1 << 64) - 1)))
            except (gdb.error, RuntimeError, ValueError):
                continue
        if block.function is not None:
            break
        block = block.superblock
    return out


def crash_info():
    """{'signal', 'address'} of the stop/crash, from $_siginfo; {} when unknown."""
    try:
        si = gdb.parse_and_eval("$_siginfo")
        signo = int(si["si_signo"])
        info = {"signal": signo}
        if signo in (7, 11):  # SIGBUS, SIGSEGV: the faulting address
            info["address"] = int(si["_sifields"]["_sigfault"]["si_addr"])
        return info
    except (gdb.error, RuntimeError):
        return {}


# ---------------------------------------------------------------------------------------
# The writer of a watched word
# ---------------------------------------------------------------------------------------
def interpreter_objfile():
    """File name of the objfile that holds the interpreter (defines _PyRuntime), or None."""
    cache = target.objfile_cache()
    if "watch.interp_objfile" not in cache:
        name = None
        try:
            sym = gdb.lookup_global_symbol("_PyRuntime")
            if sym is not None and sym.symtab is not None:
                name = sym.symtab.objfile.filename
        except (gdb.error, RuntimeError):
            name = None
        cache["watch.interp_objfile"] = name
    return cache["watch.interp_objfile"]


def _foreign(path, objfile):
    """True for code whose line is not the user's: the shim, CPython's headers, the
    interpreter itself."""
    return is_shim_file(path) or is_python_header(path) or (
        objfile is not None and objfile == interpreter_objfile())


def _chain(pc):
    """[(function name, file, line)] of the instruction at `pc`, innermost inline function
    first, ending with the real function; each entry's file and line are where that
    function's code is at this instruction (for an enclosing function: the line calling
    the inline function inside it). Plus the objfile's name. ([], None) without debug
    info."""
    try:
        block = gdb.block_for_pc(pc)
    except (RuntimeError, gdb.error):
        block = None
    funcs = []
    while block is not None and not block.is_global and not block.is_static:
        if block.function is not None:
            funcs.append(block.function)
            sup = block.superblock
            if sup is None or sup.is_static or sup.is_global:
                break  # a real function: its parent is the file's static block
        block = block.superblock
    if not funcs:
        return [], None
    outer = funcs[-1]
    sal = gdb.find_pc_line(pc)
    out = [(funcs[0].name, sal.symtab.filename if sal.symtab else outer.symtab.filename,
            sal.line)]
    # gdb gives an inlined function's symbol the file and line that call it
    for inner, fn in zip(funcs, funcs[1:]):
        out.append((fn.name, inner.symtab.filename if inner.symtab else
                    outer.symtab.filename, inner.line))
    return out, outer.symtab.objfile.filename if outer.symtab else None


def _older_user_site():
    """Site of the newest frame older than the selected thread's innermost real frame
    whose line is the user's (not the shim, CPython's headers or the interpreter; with
    debug info), or None. Bounded by MAX_CALLER_FRAMES."""
    try:
        frame = gdb.newest_frame()
        while frame is not None and frame.type() == gdb.INLINE_FRAME:
            frame = frame.older()
        frame = frame.older() if frame is not None else None
        for _ in range(MAX_CALLER_FRAMES):
            if frame is None:
                return None
            sal = frame.find_sal()
            fn = frame.function()
            if sal.symtab is not None and fn is not None and \
                    not _foreign(sal.symtab.filename, sal.symtab.objfile.filename):
                return Site(frame.pc(), sal.symtab.filename, sal.line, fn.name)
            frame = frame.older()
    except gdb.error:
        return None
    return None


def change_sites(pc):
    """(user, writer, in_interpreter) for the instruction at `pc`, which wrote a watched
    word in the selected thread's innermost frame:
      writer  the Site of the instruction: the line in the outermost non-inline function
              of its chain (for an inlined Py_INCREF, the line that used it), `inline` the
              innermost inline function;
      user    the Site of the user's line that made the change: the first function of the
              chain, then of the older frames, whose line is not the shim's, a CPython
              header's or the interpreter's (an out-of-line Py_INCREF of -O0, the shim's
              wrappers, PyList_Append); `inline` names the function that wrote (Py_INCREF,
              PyList_Append). The writer itself when no such frame is found;
      in_interpreter  True when the writer is the interpreter's code."""
    chain, objfile = _chain(pc)
    if not chain:
        sal = gdb.find_pc_line(pc)
        if sal.symtab is None:
            lib = gdb.solib_name(pc) or gdb.current_progspace().filename
            writer = Site(pc, lib, None, "?? (0x%x, no debug info)" % pc)
        else:
            writer = Site(pc, sal.symtab.filename, sal.line, "??")
        in_interp = False
    else:
        name, file, line = chain[-1]
        writer = Site(pc, file, line, name,
                      inline=chain[0][0] if len(chain) > 1 else None)
        in_interp = objfile is not None and objfile == interpreter_objfile()
    by = writer.func if in_interp else (chain[0][0] if chain else None)
    for i, (name, file, line) in enumerate(chain):
        if not _foreign(file, objfile):
            # what the user's line used: the outermost CPython header function below it
            # (Py_INCREF, not the atomic store 3.13t's Py_INCREF inlines in turn, nor the
            # shim's wrapper around it)
            by = next((chain[j][0] for j in range(i - 1, -1, -1)
                       if is_python_header(chain[j][1])), chain[0][0]) if i else None
            return Site(pc, file, line, name, inline=by), writer, in_interp
    user = _older_user_site()
    if user is None:
        return writer, writer, in_interp
    return Site(user.addr, user.file, user.line, user.func, inline=by), writer, in_interp


# ---------------------------------------------------------------------------------------
# Every thread's C stack
# ---------------------------------------------------------------------------------------
class Thread:
    """One thread's C stack: gdb thread, number, LWP, label, frames [(sp, (level,
    function))] innermost first, stack region, innermost registers. The frames are walked
    on first use (a word found on this thread's stack): gdb's unwinder costs about 1 ms a
    frame, most threads' stacks hold none of the words searched for, and the region comes
    from the innermost stack pointer alone. `problems`: the list a walk that fails adds
    its line to (the running command's: memsearch.Memory sets it)."""

    __slots__ = ("gdb_thread", "num", "lwp", "label", "_frames", "region", "registers",
                 "sp", "problems")

    @property
    def frames(self):
        if self._frames is None:
            self._frames = _walk_frames(self)
        return self._frames


_GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12",
         "r13", "r14", "r15")


def threads(problems):
    """[Thread] with each thread's stack region and innermost registers (its frames
    [(sp, (level, function))], innermost first, walked on first use); cached per stop. The
    selected thread and frame are restored."""
    cache = target.stop_cache()
    got = cache.get("owners.threads")
    if got is not None:
        return got
    out = []
    gdb_threads = sorted(gdb.selected_inferior().threads(), key=lambda t: t.num)
    if len(gdb_threads) > MAX_THREADS:
        problems.append("only the first %d of %d threads examined" % (MAX_THREADS,
                                                                      len(gdb_threads)))
    with target.preserved_selection():
        for th in gdb_threads[:MAX_THREADS]:
            out.append(_innermost(th, problems))
    maps = target.mappings()
    for t in out:
        if t.sp is not None:
            m = next((m for m in maps if m.start <= t.sp < m.end), None)
            if m is not None:
                t.region = (m.start, m.end)
    cache["owners.threads"] = out
    return out


def _innermost(th, problems):
    """The Thread of gdb thread `th`: its innermost frame's registers and stack pointer
    (it is selected to read them); frames not walked yet."""
    t = Thread()
    t.gdb_thread, t.num, t.lwp = th, th.num, th.ptid[1] or th.ptid[2]
    t.label = "thread %d (LWP %d)" % (th.num, t.lwp) if t.lwp else "thread %d" % th.num
    t._frames, t.region, t.registers, t.sp, t.problems = None, None, {}, None, problems
    try:
        th.switch()
        f = gdb.newest_frame()
        for name in _GPRS:
            try:
                t.registers[name] = int(f.read_register(name)) & ((1 << 64) - 1)
            except (gdb.error, ValueError):
                break
        t.sp = int(f.read_register("sp")) & ((1 << 64) - 1)
    except gdb.error as e:
        problems.append("%s: stack not walked: %s" % (t.label, e))
        t._frames = []
    return t


def _walk_frames(t):
    """[(sp, (level, function))] of thread `t`'s frames, innermost first, bounded (it is
    selected to walk them; the selection is restored)."""
    frames = []
    try:
        with target.preserved_selection():
            t.gdb_thread.switch()
            f = gdb.newest_frame()
            level = 0
            last_sp = -1
            while f is not None and level < MAX_THREAD_FRAMES:
                sp = int(f.read_register("sp")) & ((1 << 64) - 1)
                if sp < last_sp:
                    break
                frames.append((sp, (level, f.name() or "??")))
                last_sp = sp
                f = f.older()
                level += 1
    except gdb.error as e:
        t.problems.append("%s: stack not walked: %s" % (t.label, e))
    return frames


def frame_variables(t, level):
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
    try:
        with target.preserved_selection():
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

# ---------------------------------------------------------------------------------------
# The calls of the selected frame's function
# ---------------------------------------------------------------------------------------
def static_site_apis(fn):
    """API names of the shim's static site records whose function is `fn`: every macro or
    wrapped call the function contains, executed or not. Found by scanning the mapped
    memory of fn's object file for the site magic (bounded)."""
    try:
        path = fn.symtab.objfile.filename
    except (AttributeError, RuntimeError):
        return []
    magic = ringformat.SITE_MAGIC.to_bytes(4, "little")
    out, scanned = [], 0
    for m in target.mappings():
        if m.path != path or scanned > MAX_SITE_SCAN:
            continue
        data = target.try_read(m.start, min(m.end - m.start, MAX_SITE_SCAN))
        if not data:
            continue
        scanned += len(data)
        i = data.find(magic)
        while i != -1:
            if i % 8 == 0:
                s = sites.read_site(target.read, m.start + i)
                if s is not None and s.func == fn.name and s.api and s.api not in out:
                    out.append(s.api)
            i = data.find(magic, i + 4)
    return out


def calls_of_selected_function():
    """(function name, [names]) of the selected frame's function: the functions its
    machine code calls and the C-API names of the shim's sites in it, each once. A frame
    of the shim or of a CPython header stands for the user's function that called it."""
    try:
        frame = user_frame(gdb.selected_frame())
    except gdb.error:
        frame = None
    if frame is None:
        raise PyrefError("no frame selected: give a NAME, or stop in a C function")
    fn = frame.function()
    if fn is None:
        raise PyrefError("the current frame has no debug info: give a NAME")
    names = []
    block = fn.value().address and frame.block()
    while block is not None and block.function is None:
        block = block.superblock
    if block is not None:
        try:
            arch = frame.architecture()
            for insn in arch.disassemble(block.start, block.end - 1, MAX_INSNS):
                m = re.search(r"\bcall\w*\s.*<([\w.]+?)(?:@plt)?(?:\+\d+)?>", insn["asm"])
                if m and m.group(1) not in names:
                    names.append(m.group(1))
        except gdb.error:
            pass
    for api in static_site_apis(fn):
        if api not in names:
            names.append(api)
    return fn.name, names


