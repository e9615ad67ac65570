"""The owners of a word that are not a slot of a heap object: a C frame's variable (thread
stacks), an interpreter frame's local or value-stack slot (3.11+ data stacks), a field of
the interpreter's or a thread's state, a C global or static. Each `*_owner` function takes
the word and what the search found around it (inferior/memsearch.py builds the ranges
once per command) and returns its Owner.

Thread states and interpreter frames come from the one walk of reader/pyframes.py
(thread_states, FrameWalk) over the DWARF offsets of inferior/layout.py.
"""
import os
import struct

import gdb

from pyref.errors import READ_ERRORS, NoDebugInfoError
from pyref.inferior import cframes, layout, target
from pyref.inferior.heapslots import code_name, heap, localsplus_name
from pyref.inferior.layout import field_int
from pyref.inferior.target import MemoryReadError
from pyref.reader import pyframes, scan
from pyref.rules.ownergraph import Owner, stale_owner

MAX_PYFRAMES = 2000        # interpreter frames walked in all
MAX_INTERPRETERS = 64      # interpreter states followed
MAX_SYMBOL_LOOKUPS = 500   # `info symbol` calls per command

# Interpreter caches that keep pointers without owning references (C globals or members).
_BORROWING_CACHES = ("type_cache", "method_cache")




# ---------------------------------------------------------------------------------------
# Thread stacks
# ---------------------------------------------------------------------------------------
def stack_owner(t, hit):
    kind, payload = scan.stack_slot(t.frames, hit)
    if kind == "dead":
        return stale_owner(hit, "stack", "%s stack, below the stack pointer" % t.label,
                           "dead stack (below the stack pointer of %s)" % t.label)
    level, fname = payload
    variables, func, where = cframes.frame_variables(t, level)
    frame = "frame #%d %s%s" % (level, func or fname, " (%s)" % where if where else "")
    for start, end, name, vtype, in_scope in variables:
        if start <= hit < end:
            var = name if hit == start else "%s+%d" % (name, hit - start)
            if vtype.endswith("]") and end - start > 8:
                var = "%s[%d]" % (name, (hit - start) // 8)
            text = "%s stack, %s, variable %s" % (t.label, frame, var)
            if not in_scope:
                return stale_owner(hit, "stack", text + " (out of scope at the frame's pc)",
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
# Interpreter and thread states, interpreter frames
# ---------------------------------------------------------------------------------------
def thread_states():
    """[(tstate, native thread id or None)] of every thread state (pyframes.thread_states),
    bounded; [] without a _PyRuntime or the DWARF of the walk."""
    rt = target.symbol_address("_PyRuntime")
    if rt is None:
        return []
    out = []
    try:
        for ts, _, ntid in pyframes.thread_states(target.read, rt, layout.layouts().walk):
            out.append((ts, ntid))
    except READ_ERRORS + (NoDebugInfoError,):
        pass
    return out


def _interpreters():
    """Addresses of the interpreter states under _PyRuntime, bounded."""
    rt = target.symbol_address("_PyRuntime")
    walk = layout.layouts().walk
    out = []
    interp = target.read_u64(rt + walk.runtime_interpreters_head) if rt else 0
    while interp and interp not in out and len(out) < MAX_INTERPRETERS:
        out.append(interp)
        interp = target.read_u64(interp + walk.interp_next)
    return out


def state_ranges(thread_by_lwp):
    """scan.RangeIndex of the interpreter and thread states (C structs that may live in
    the heap: 3.10's interpreter, every thread's state), payload (gdb type, label);
    cached per stop."""
    cache = target.stop_cache()
    got = cache.get("owners.states")
    if got is not None:
        return got
    ranges = []
    try:
        itype = gdb.lookup_type("PyInterpreterState").strip_typedefs()
        ttype = gdb.lookup_type("PyThreadState").strip_typedefs()
        for interp in _interpreters():
            ranges.append((interp, interp + itype.sizeof, (itype, "interpreter state")))
        for ts, ntid in thread_states():
            ranges.append((ts, ts + ttype.sizeof,
                           (ttype, "thread state of %s" % thread_by_lwp.get(
                               ntid, "a thread"))))
            ranges += _free_stack_chunks(ts, thread_by_lwp.get(ntid, "a thread"))
    except (gdb.error, MemoryReadError, NoDebugInfoError, AttributeError, TypeError):
        pass
    got = cache["owners.states"] = scan.RangeIndex(ranges)
    return got


MAX_FREE_CHUNKS = 64       # object stack chunks followed per thread's free list


def _free_stack_chunks(ts, thread):
    """Ranges of the _PyObjectStackChunks on a 3.13t thread's free list
    (_PyThreadStateImpl.freelists.object_stacks): the GC's work stacks, kept for reuse
    with the pointers of their last use in them. [] on other builds."""
    impl = target.struct_layout("_PyThreadStateImpl", "struct _PyThreadStateImpl")
    chunk_t = target.struct_layout("_PyObjectStackChunk", "struct _PyObjectStackChunk")
    items = "freelists.object_stacks.items"
    if impl is None or chunk_t is None or items not in impl or "prev" not in chunk_t:
        return []
    gtype = gdb.lookup_type("_PyObjectStackChunk").strip_typedefs()
    out = []
    chunk = target.read_u64(ts + impl.offset(items))
    while chunk and len(out) < MAX_FREE_CHUNKS and all(s != chunk for s, _, _ in out):
        out.append((chunk, chunk + chunk_t.size, (
            gtype, "free object stack chunk of %s" % thread,
            "a free-listed object stack chunk (left from its last use)")))
        chunk = target.read_u64(chunk + chunk_t.offset("prev"))
    return out


def state_owner(hit, found):
    start, _, (gtype, label, *free) = found
    path, stale = _type_path(gtype, start, hit - start)
    if free:
        return stale_owner(hit, "static", "%s 0x%x field %s" % (
            label, start, path or "+%d" % (hit - start)), free[0])
    text = "%s 0x%x field %s" % (label, start, path or "+%d" % (hit - start))
    if stale:
        return stale_owner(hit, "static", text, stale)
    if path and any(word in path for word in _BORROWING_CACHES):
        return Owner(hit, "static", text + " (a cache of borrowed pointers)", root=True,
                     label=label, edge=path, counted=False, detail="possible")
    return Owner(hit, "static", text, root=True, label=label, edge=path or "?")


def pyframe_ranges(thread_by_lwp):
    """scan.RangeIndex of 3.11+ interpreter frames' localsplus arrays (payload ('frame',
    frame, code, nlocalsplus, stacktop, thread label)) and of each thread's dead data stack
    (payload ('dead', thread label)); cached per stop. Empty on 3.10. Every frame of each
    chain counts, those the Python stack passes over (shim, incomplete) included: their
    slots hold references too."""
    cache = target.stop_cache()
    got = cache.get("owners.pyframes")
    if got is not None:
        return got
    lay = heap()
    ranges = []
    if lay.interpreter_frames:
        f = lay.iframe
        code_f = f.find("f_executable", "f_code")[1]
        ls = f.offset("localsplus")
        c = lay.code
        tstate = target.struct_layout("PyThreadState", "struct _ts")
        walk_layout = layout.layouts().walk
        total = 0
        for ts, ntid in thread_states():
            label = thread_by_lwp.get(ntid, "thread state 0x%x" % ts)
            walk = pyframes.FrameWalk(target.read, walk_layout, None)
            try:
                for frame, _ in walk.frames(ts, MAX_PYFRAMES - total, raw=True):
                    total += 1
                    raw = target.read(frame, f.size)
                    code = lay.untag(field_int(raw, code_f))
                    stacktop = lay.stacktop(raw, frame)
                    craw = target.read(code, c.size)
                    nlp = field_int(craw, c.field("co_nlocalsplus"), signed=True)
                    stack = field_int(craw, c.field("co_stacksize"), signed=True)
                    if 0 <= nlp < 1 << 16 and 0 <= stack < 1 << 16:
                        start = frame + ls
                        ranges.append((start, start + 8 * (nlp + stack),
                                       ("frame", frame, code, nlp, stacktop, label)))
                if tstate is not None and "datastack_top" in tstate:
                    top = target.read_u64(ts + tstate.offset("datastack_top"))
                    chunk = target.read_u64(ts + tstate.offset("datastack_chunk"))
                    if chunk and top:
                        size = target.read_u64(chunk + 8)  # _stack_chunk: previous, size
                        if chunk < top <= chunk + size < chunk + (1 << 32):
                            ranges.append((top, chunk + size, ("dead", label)))
            except MemoryReadError:
                continue
    got = scan.RangeIndex(ranges)
    cache["owners.pyframes"] = got
    return got


def pyframe_owner(hit, payload):
    if payload[0] == "dead":
        return stale_owner(hit, "pyframe",
                           "%s interpreter data stack, above its top" % payload[1],
                           "dead interpreter stack (above the data stack top of %s)" % payload[1])
    _, frame, code, nlp, stacktop, label = payload
    i = (hit - frame - heap().iframe.offset("localsplus")) // 8
    fname, file_ = code_name(code)
    where = "%s Python frame %s (%s)" % (label, fname, file_)
    if i < nlp:
        name, _ = localsplus_name(code, i)
        return Owner(hit, "pyframe", "%s: local '%s'" % (where, name),
                     label="%s() in %s" % (fname, label), edge=name, root=True)
    depth = i - nlp
    if stacktop >= 0:
        if i < stacktop:
            return Owner(hit, "pyframe", "%s: value stack [%d]" % (where, depth),
                         label="%s() in %s" % (fname, label), edge="stack[%d]" % depth,
                         root=True)
        return stale_owner(hit, "pyframe",
                           "%s: value stack [%d], above its top" % (where, depth),
                           "dead value stack slot (above the frame's stack top)")
    return Owner(hit, "pyframe", "%s: value stack [%d] (the frame is running: live or a "
                 "leftover)" % (where, depth), label="%s() in %s" % (fname, label),
                 edge="stack[%d]" % depth, root=True, counted=False, detail="possible")


def tagged_frame_refs(pyframes_index, targets):
    """{target: [Owner]} of the 3.14+ interpreter frame slots holding a target as a
    _PyStackRef tagged Py_TAG_REFCNT: a borrowed, deferred or immortal reference, which
    holds no count on the object, shown and not counted. The word is the address with its
    tag bit, so the search for the address itself does not see it. {} before 3.14."""
    lay = heap()
    if not lay.stack_refs or not targets:
        return {}
    want = set(targets)
    found = {}
    for start, end, payload in pyframes_index:
        if payload[0] != "frame":
            continue
        try:
            data = target.read(start, end - start)
        except MemoryReadError:
            continue
        for i, (word,) in enumerate(struct.iter_unpack("<Q", data)):
            if word & lay.stack_ref_tags != layout.STACK_REF_REFCNT or \
                    lay.untag(word) not in want:
                continue
            o = pyframe_owner(start + 8 * i, payload)
            o.text += " (a borrowed _PyStackRef, tagged Py_TAG_REFCNT: it holds no count)"
            o.counted, o.detail = False, "possible"
            found.setdefault(lay.untag(word), []).append(o)
    return found


# ---------------------------------------------------------------------------------------
# C globals
# ---------------------------------------------------------------------------------------
def symbol(addr, budget):
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


def static_owner(hit, sym):
    name, off, section, lib = sym
    var = name
    stale = None
    if off:
        path, stale = _member_path(name, off)
        var = "%s.%s" % (name, path) if path else "%s+%d" % (name, off)
    text = "C %s %s in %s (%s)" % (_linkage(name), var, lib, section)
    if stale:
        return stale_owner(hit, "static", text, stale)
    if any(word in var for word in _BORROWING_CACHES):
        return Owner(hit, "static", text + " (a cache of borrowed pointers)", root=True,
                     label="%s (%s)" % (name, lib), edge=var, counted=False,
                     detail="possible")
    return Owner(hit, "static", text, label="%s (%s)" % (name, lib), edge=var, root=True)


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
