"""The watches of `pyref watch` (its command is commands/watch.py): a hardware
watchpoint on an object's reference count that logs every change (before -> after, the C
function and line that made it, optionally the Python stack, and with a traced build the
matching ring record) and lets the program run on, until a condition holds: the count
reaches N, drops below N, or the object is freed.

How a change is attributed. x86 data watchpoints trap *after* the writing instruction, so
the writer is the instruction that ends at the stop's pc: pyref looks up pc - 1 (in reverse
execution, under rr or `record full`, the stop is *at* the writer: pc itself). The line a
change is logged at is the user's: the first function, in the writer's inline chain and
then in the older frames, whose line is not in pyref's shim, a CPython header or the
interpreter (inferior/cframes.py change_sites) — the same on every build: an inlined
Py_INCREF (-O1, -O2), the out-of-line copy of object.h's Py_INCREF an -O0 build calls, the
shim's wrappers of a traced build. The log names what wrote (Py_INCREF) and, when it is
CPython itself (PyList_Append taking a reference, list_dealloc dropping one), where
inside CPython.

The stop() callback runs while gdb decides whether to stop: it only reads memory (one read
of the object's header, the ring when traced, the Python stack when asked), never calls
into the inferior, never changes breakpoints (an ended watch is deleted by a posted
event). Everything it prints is one line per change, written with gdb.write.

Each watch takes one x86 debug register (two on 3.13t: ob_ref_local and ob_ref_shared).
The kernel offers four, and gdb finds out that it ran out only when it resumes the
program; pyref counts the registers that enabled hardware watchpoints and hardware
breakpoints already hold and refuses the watch that would not fit, unless --software.

A traced build writes each INCREF's record just *after* the increment (and each DECREF's
just before the decrement), so an INCREF's ring record is looked up at the next change or
stop; a change inside CPython has no record.
"""
import re

import gdb

from pyref.errors import PyrefError, RingError
from pyref.inferior import layout, objects, pythreads, rings, target
from pyref.inferior.cframes import change_sites
from pyref.inferior.pythreads import plain
from pyref.inferior.target import MemoryReadError
from pyref.reader import decode, ringformat
from pyref.reader.text import escape

X86_DEBUG_REGISTERS = 4   # DR0-DR3 on x86 and x86-64
MAX_SITES = 1000          # distinct sites counted per watch for the summary


# ---------------------------------------------------------------------------------------
# Where a change was made
# ---------------------------------------------------------------------------------------
def _basename(path):
    return path.rsplit("/", 1)[-1] if path else "??"


def site_text(site, st=plain):
    """"file.c:LINE in func"; `st` a settings.Styler."""
    return "%s:%s in %s" % (st(_basename(site.file), "file"), site.line if site.line else "?",
                            st(site.func, "function"))


# ---------------------------------------------------------------------------------------
# The x86 debug-register budget
# ---------------------------------------------------------------------------------------
def registers_for(addr, length):
    """Debug registers an x86 watch of [addr, addr+length) takes: one per aligned 1-, 2-,
    4- or 8-byte piece, as gdb's x86 code splits it."""
    n = 0
    while length > 0:
        size = 8
        while size > 1 and (addr % size or size > length):
            size //= 2
        addr += size
        length -= size
        n += 1
    return n


def _bp_registers(bp):
    """Registers held by one enabled gdb breakpoint (0 for software ones)."""
    if not bp.enabled or not bp.is_valid():
        return 0
    if bp.type == gdb.BP_HARDWARE_BREAKPOINT:
        return 1
    if bp.type not in (gdb.BP_HARDWARE_WATCHPOINT, gdb.BP_READ_WATCHPOINT,
                       gdb.BP_ACCESS_WATCHPOINT):
        return 0
    mine = _by_breakpoint.get(bp.number)
    if mine is not None:
        return registers_for(*mine)
    # Someone else's watchpoint: its value's address and size, when it can be evaluated
    # here. gdb also watches the lvalues the expression reads (`watch *p` watches p too),
    # which gdb does not expose: count one more for an expression that dereferences
    # anything but a constant address. An estimate; gdb has the last word at resume.
    expr = bp.expression or ""
    n = 1
    try:
        value = gdb.parse_and_eval(expr)
        if value.address is not None:
            n = registers_for(int(value.address), value.type.sizeof)
    except (gdb.error, RuntimeError, TypeError):
        pass
    if not expr.startswith("-location") and any(op in expr for op in ("*", "->", "[")) \
            and not _CONSTANT_DEREF.match(expr):
        n += 1
    return n


_CONSTANT_DEREF = re.compile(r"^\s*\*\s*\([\w\s]+\*\s*\)\s*(0x[0-9a-fA-F]+|\d+)\s*$")


def registers_in_use():
    """(registers, [breakpoint numbers]) held by hardware breakpoints and watchpoints."""
    used, numbers = 0, []
    for bp in gdb.breakpoints():
        n = _bp_registers(bp)
        if n:
            used += n
            numbers.append(bp.number)
    return used, numbers


def _is_x86():
    try:
        name = gdb.selected_frame().architecture().name()
    except gdb.error:
        return False
    return name.startswith("i386")


# ---------------------------------------------------------------------------------------
# Watches
# ---------------------------------------------------------------------------------------
_watches = {}        # pyref watch id -> Watch (active ones)


_by_breakpoint = {}  # gdb breakpoint number -> (addr, length) of our watchpoints


_next_id = [1]


class Change:
    """One logged change of the count."""

    __slots__ = ("before", "after", "site", "writer", "in_interp", "thread", "stack",
                 "reverse", "ring", "ring_note", "printed")

    def __init__(self):
        self.site = self.writer = self.stack = self.ring = self.ring_note = None
        self.printed = False


class _Watchpoint(gdb.Breakpoint):
    """A gdb watchpoint on one refcount word; stop() hands the change to its Watch."""

    def __init__(self, spec, watch):
        super().__init__(spec, gdb.BP_WATCHPOINT, gdb.WP_WRITE, internal=False)
        self.watch = watch

    def stop(self):
        try:
            return self.watch.on_write()
        except Exception as e:  # never a traceback from inside gdb's stop machinery
            gdb.write("pyref watch %d: cannot log this change (%s: %s); stopping\n"
                      % (self.watch.id, type(e).__name__, " ".join(str(e).split())))
            return True


class Watch:
    """A watch on one object: its gdb watchpoints, the count as last seen, the stop
    condition and the options of the log."""

    def __init__(self, addr, type_name, words, count, until, below, on_free, stack_depth,
                 summary):
        self.id = _next_id[0]
        _next_id[0] += 1
        self.addr, self.type_name, self.words = addr, type_name, words
        self.count = count
        self.until, self.below, self.on_free = until, below, on_free
        self.stack_depth, self.summary = stack_depth, summary
        self.breakpoints = []
        self.first = count            # the count when the watch was set
        self.nchanges = self.ups = self.downs = 0
        self.by_site = {}             # site text -> [changes, sum of deltas]
        self.ended = None             # why the watch ended, once it has
        self.rings = []               # ring header addresses (traced builds)
        self.pending = None           # a Change whose ring record is not written yet
        self.styler = lambda: plain   # a Styler for each log line (settings.styler)
        self.python_stack = bool      # whether to log the innermost Python frame

    # -- reading -----------------------------------------------------------------------
    def read_count(self):
        lay = layout.layouts()
        return objects.refcount_of(lay, target.read(self.addr, lay.header_size)).total

    def condition_text(self):
        parts = []
        if self.until is not None:
            parts.append("the count is %d" % self.until)
        if self.below is not None:
            parts.append("the count is below %d" % self.below)
        if self.on_free:
            parts.append("the object is freed")
        return "stops when " + " or ".join(parts) if parts else "logs only, never stops"

    def _condition_holds(self, count):
        if self.until is not None and count == self.until:
            return "the count reached %d" % count
        if self.below is not None and count < self.below:
            return "the count dropped below %d" % self.below
        if self.on_free and count == 0:
            return "the count reached 0: the object is being deallocated"
        return None

    # -- the stop() callback -----------------------------------------------------------
    def on_write(self):
        if self.ended:
            return False  # freed memory being reused; the watchpoint goes at the next event
        target.stop_cache().clear()  # the inferior ran since anything was cached
        reverse = _executing_backwards()
        try:
            now = self.read_count()
        except MemoryReadError:
            self._end("its memory is no longer readable")
            return False
        if now == self.count:
            return False
        if self.count == 0 and not reverse:
            # Dead since the last change: this is free() or a new object reusing the memory.
            self._end("0x%x was deallocated and its memory is being reused" % self.addr)
            return False
        c = Change()
        c.reverse = reverse
        # Forward, the trap comes after the writing instruction; backward, at it.
        c.before, c.after = (now, self.count) if reverse else (self.count, now)
        self.count = now
        pc = gdb.newest_frame().pc()
        c.site, c.writer, c.in_interp = change_sites(pc if reverse else pc - 1)
        c.thread = gdb.selected_thread()
        depth = self.stack_depth or (1 if self.python_stack() else 0)
        if depth:
            try:
                c.stack = pythreads.read_stack(c.thread, depth).frames
            except PyrefError as e:
                c.stack = e
        self._count_change(c)

        self.flush()  # the previous INCREF's record is written by now
        stopping = reverse or self._condition_holds(now) is not None
        if self._match_ring(c, later=False):
            self._print(c)
        elif stopping:
            c.ring_note = "ring record not written yet: the shim writes it just after the " \
                          "increment"
            self._print(c)
        else:
            self.pending = c  # an INCREF by traced code: printed with its record, later
        return self._decide(now, reverse)

    def _decide(self, now, reverse):
        """stop()'s answer after a change to `now`."""
        if reverse:
            return True  # reverse-continue: every change is a stop, one step back in time
        why = self._condition_holds(now)
        if why:
            gdb.write("pyref watch %d: stopped: %s\n" % (self.id, why))
            if self.summary:
                gdb.write(escape(self.summary_text()))
            return True
        return False

    def flush(self):
        """Prints the change that waited for its ring record."""
        if self.pending is not None:
            self._match_ring(self.pending, later=True)
            self._print(self.pending)
            self.pending = None

    # -- ring records --------------------------------------------------------------------
    def _match_ring(self, c, later):
        """Finds the ring record of change `c`. Returns False when it should be looked for
        again at the next change or stop: an INCREF by traced code, whose record the shim
        writes just after the increment. `later`: this is that second look.

        Only the newest records of the changing thread's ring are read (tail_records).
        The target's memory is as it was at the change (also when replaying under rr), so
        no bookkeeping of earlier matches is needed: a DECREF's record is the object's
        newest (written just before the decrement); a pending INCREF's record is the
        newest INCREF of the object's two newest count records (the next change may be a
        DECREF whose record is already written)."""
        if not self.rings:
            return True
        if c.in_interp:
            c.ring_note = "no ring record: changed inside CPython"
            return True
        up = c.after > c.before
        if up and c.reverse:
            c.ring_note = "its ring record is written just after the increment"
            return True
        if up and not later:
            return False
        lwp = c.thread.ptid[1] if c.thread is not None and c.thread.is_valid() else None
        for ring_addr in self.rings:
            try:
                recs = [r for r in tail_records(ring_addr, lwp) if r.obj == self.addr and
                        r.op in (ringformat.INCREF, ringformat.DECREF, ringformat.DEALLOC)]
            except (RingError, MemoryReadError) as e:
                c.ring_note = "ring unreadable: %s" % e
                return True
            window = recs[-2:] if up else recs[-1:]
            ops = (ringformat.INCREF,) if up else (ringformat.DECREF, ringformat.DEALLOC)
            for r in reversed(window):
                if r.op in ops and r.refcnt == c.before and r.after == c.after:
                    c.ring = r
                    return True
        c.ring_note = "no matching ring record"
        return True

    # -- output ------------------------------------------------------------------------
    def _print(self, c):
        if c.printed:
            return
        c.printed = True
        gdb.write(escape(self.change_text(c)))

    def change_text(self, c):
        """The log line of change `c`, then with --python-stack one line per frame.
        Without it (and `set pyref python-stack on`), the innermost Python frame ends the
        line."""
        st = self.styler()
        line = "pyref watch %d: %d -> %d  %s" % (self.id, c.before, c.after,
                                                 site_text(c.site, st))
        if c.in_interp:
            line += " (inside CPython: %s)" % (
                site_text(c.writer, st) if c.writer is c.site else "%s at %s:%s" % (
                    st(c.writer.func, "function"), st(_basename(c.writer.file), "file"),
                    c.writer.line if c.writer.line else "?"))
        elif c.site.inline and c.site.inline != c.site.func:
            line += " (%s)" % st(c.site.inline, "function")
        if c.thread is not None and len(c.thread.inferior.threads()) > 1:
            line += "  [thread %d]" % c.thread.num
        if c.after == 0:
            line += "  (count 0: the object is being deallocated)"
        if c.reverse:
            line += "  (reverse)"
        if c.ring is not None:
            line += "  ring #%d %s %s" % (c.ring.seq, c.ring.op_name,
                                          rings.site_text(c.ring.site))
        elif c.ring_note:
            line += "  (%s)" % c.ring_note
        full = bool(self.stack_depth)
        if not full and c.stack and not isinstance(c.stack, Exception):
            line += "  [%s]" % pythreads.short_text(c.stack[0], st)
        out = [line]
        if full and isinstance(c.stack, Exception):
            out.append("    (no Python stack: %s)" % c.stack)
        elif full:
            out += ["    " + pythreads.frame_text(fr, st) for fr in c.stack]
            if not c.stack:
                out.append("    (no Python frames)")
        return "\n".join(out) + "\n"

    def _count_change(self, c):
        self.nchanges += 1
        if c.after > c.before:
            self.ups += 1
        else:
            self.downs += 1
        key = site_text(c.site)
        if key in self.by_site or len(self.by_site) < MAX_SITES:
            n = self.by_site.setdefault(key, [0, 0])
            n[0] += 1
            n[1] += c.after - c.before

    def summary_text(self):
        out = ["pyref watch %d: %d change%s of 0x%x (%s): %d up, %d down, count %d -> %d"
               % (self.id, self.nchanges, "" if self.nchanges == 1 else "s", self.addr,
                  self.type_name, self.ups, self.downs, self.first, self.count)]
        for key, (n, delta) in self.by_site.items():
            out.append("  %+d in %d change%s at %s" % (delta, n, "" if n == 1 else "s", key))
        return "\n".join(out) + "\n"

    # -- ending ------------------------------------------------------------------------
    def _end(self, why, quiet=False):
        """Ends the watch from inside stop(): breakpoints are deleted by a posted event,
        since stop() must not delete breakpoints."""
        if self.ended:
            return
        self.ended = why
        _watches.pop(self.id, None)
        if not quiet:
            gdb.write("pyref watch %d ends: %s\n" % (self.id, why))
            if self.summary:
                gdb.write(escape(self.summary_text()))
        gdb.post_event(self.delete_breakpoints)

    def delete_breakpoints(self):
        for bp in self.breakpoints:
            if bp.is_valid():
                _by_breakpoint.pop(bp.number, None)  # so _on_breakpoint_deleted ignores it
                bp.delete()
        self.breakpoints = []

    def delete(self, why):
        """Ends the watch from a command or an event handler (not from stop())."""
        self.flush()
        self.ended = self.ended or why
        _watches.pop(self.id, None)
        self.delete_breakpoints()


def _executing_backwards():
    """True while gdb executes in reverse (rr replay, `record full`). reverse-continue and
    friends change gdb's direction without changing the `exec-direction` setting's text,
    which is all gdb.parameter() reads; `show exec-direction` reports the direction
    itself."""
    try:
        return gdb.execute("show exec-direction", to_string=True).strip().startswith("Rev")
    except gdb.error:
        return False


# ---------------------------------------------------------------------------------------
# The newest ring records of one thread
# ---------------------------------------------------------------------------------------
TAIL_RECORDS = 32   # newest records of a thread's ring examined per change


_slots = {}  # (ring_addr, lwp) -> index of the thread's descriptor, as last found


def tail_records(ring_addr, lwp):
    """The newest TAIL_RECORDS records (decode.Record, oldest first, decode.tail) of the
    ring of thread `lwp` (its kernel thread id) in the ring set at `ring_addr`; [] when
    that thread never recorded. Reads the header, the thread's descriptor (its slot is
    remembered; the whole table only when it moved) and the newest records. Raises
    RingError or MemoryReadError."""
    h = ringformat.parse_header(target.read(ring_addr, ringformat.HEADER_FIXED),
                                ring_addr)
    t = None
    index = _slots.get((ring_addr, lwp))
    if index is not None and index < h.max_threads:
        off = h.thread_table_off + index * h.thread_desc_size
        one = ringformat.parse_threads(target.read(ring_addr, off + h.thread_desc_size),
                                       h, partial=True)[index]
        t = one if one.ring and one.os_tid == lwp else None
    if t is None:
        threads = ringformat.parse_threads(target.read(ring_addr, h.header_size), h)
        t = next((t for t in threads if t.ring and t.os_tid == lwp), None)
        if t is None or not t.head:
            return []
        _slots[(ring_addr, lwp)] = t.index
    return decode.tail(target.read, h, t, TAIL_RECORDS)


# ---------------------------------------------------------------------------------------
# Events: a watch does not outlive its process or its gdb watchpoints
# ---------------------------------------------------------------------------------------
def _quietly(handler):
    """An event handler that reports its own failure in one line: an exception escaping
    a gdb event handler would print a Python traceback."""
    def run(*args):
        try:
            handler(*args)
        except Exception as e:
            gdb.write("pyref watch: %s: %s\n" % (type(e).__name__, " ".join(str(e).split())))
    run.__doc__ = handler.__doc__
    return run


@_quietly
def _on_stop(event):
    """At a stop, print what was waiting for a ring record."""
    for w in list(_watches.values()):
        w.flush()


@_quietly
def _on_exited(event):
    """The process exited or was killed: its objects are gone, and a new run must not
    trip over watchpoints on their old addresses."""
    for w in list(_watches.values()):
        w.delete("the process ended")
        gdb.write("pyref watch %d ends: the process ended\n" % w.id)
        if w.summary:
            gdb.write(escape(w.summary_text()))


@_quietly
def _on_breakpoint_deleted(bp):
    """The user deleted one of our gdb watchpoints (`delete N`): the watch ends now; a
    sibling watchpoint (3.13t has two) is deleted by a posted event, not from inside this
    handler."""
    if _by_breakpoint.pop(bp.number, None) is None:
        return
    for w in list(_watches.values()):
        if any(b is bp for b in w.breakpoints):
            w.breakpoints = [b for b in w.breakpoints if b is not bp]
            w.flush()
            w.ended = "its gdb watchpoint %d was deleted" % bp.number
            _watches.pop(w.id, None)
            gdb.write("pyref watch %d ends: %s\n" % (w.id, w.ended))
            if w.breakpoints:
                gdb.post_event(w.delete_breakpoints)


_connected = []


def _connect_events():
    if _connected:
        return
    gdb.events.stop.connect(_on_stop)
    gdb.events.exited.connect(_on_exited)
    gdb.events.breakpoint_deleted.connect(_on_breakpoint_deleted)
    _connected.append(True)


# ---------------------------------------------------------------------------------------
# Creating a watch
# ---------------------------------------------------------------------------------------
def _words(lay, addr):
    """[(addr, size, what)] of the refcount words to watch, as DWARF sizes them: the
    64-bit ob_refcnt (3.10-3.13), the 32-bit one (3.14+), ob_ref_local and ob_ref_shared
    (3.13t)."""
    return [(addr + off, size, name) for name, off, size in lay.count_words]


_C_TYPES = {1: "unsigned char", 2: "unsigned short", 4: "unsigned int", 8: "long long"}


def create(addr, until=None, below=None, on_free=False, software=False, stack_depth=0,
           summary=False, styler=None, python_stack=None):
    """Creates and returns a Watch on the object at `addr`. `styler()` gives the Styler of
    each log line and `python_stack()` says whether to log the innermost Python frame
    (the command passes the settings' own). Raises PyrefError with the reason when it
    cannot: no live process, not a live object, immortal, out of debug registers."""
    kind = target.require_target()
    if kind == "core":
        raise PyrefError("pyref watch needs a running process: this is a core file, whose "
                         "memory never changes (pyref history shows what the ring recorded)")
    try:
        info = objects.inspect(addr)
    except MemoryReadError:
        raise PyrefError("cannot read memory at 0x%x: no object there" % addr) from None
    if info.state != objects.LIVE:
        raise PyrefError("0x%x is %s%s: nothing to watch" % (
            addr, info.state, ": " + info.reason if info.reason else ""))
    if info.refcount.immortal:
        raise PyrefError("0x%x (%s) is immortal: its reference count never changes (%s), so "
                         "there is nothing to watch" % (addr, info.type.name, info.refcount))
    lay = layout.layouts()
    words = _words(lay, addr)
    count = info.refcount.total
    if until is not None and below is not None and until < below:
        raise PyrefError("--until %d is below --below %d: the count drops below %d before "
                         "it can reach %d; give one of them" % (until, below, below, until))

    hw_on = bool(gdb.parameter("can-use-hw-watchpoints"))
    if not software:
        if not hw_on:
            raise PyrefError("hardware watchpoints are off (set can-use-hw-watchpoints 0): "
                             "turn them on, or ask for a slow software watchpoint with "
                             "--software")
        if _is_x86():
            need = sum(registers_for(a, n) for a, n, _ in words)
            used, numbers = registers_in_use()
            if used + need > X86_DEBUG_REGISTERS:
                raise PyrefError(
                    "all %d x86 debug registers are in use (%d held by hardware "
                    "breakpoints/watchpoints %s; this watch needs %d): delete one (pyref "
                    "watch delete ID, or delete N), or ask for a software watchpoint with "
                    "--software (slow: gdb single-steps the program)"
                    % (X86_DEBUG_REGISTERS, used, ", ".join(map(str, numbers)), need))

    _connect_events()
    w = Watch(addr, info.type.name, words, count, until, below, on_free, stack_depth,
              summary)
    w.rings = _ring_addresses()
    w.styler = styler or w.styler
    w.python_stack = python_stack or w.python_stack
    try:
        for a, n, _ in words:
            spec = "*(%s *) 0x%x" % (_C_TYPES[n], a)
            if software:
                gdb.execute("set can-use-hw-watchpoints 0", to_string=True)
            try:
                bp = _Watchpoint(spec, w)
            finally:
                if software and hw_on:
                    gdb.execute("set can-use-hw-watchpoints 1", to_string=True)
            w.breakpoints.append(bp)
            _by_breakpoint[bp.number] = (a, n)
            if not software and bp.type != gdb.BP_HARDWARE_WATCHPOINT:
                raise PyrefError("gdb could not make a hardware watchpoint here; ask for a "
                                 "software one with --software (slow)")
    except (PyrefError, gdb.error, RuntimeError):
        w.delete_breakpoints()
        raise
    _watches[w.id] = w
    return w


def _ring_addresses():
    """Header addresses of the rings of a traced build, or [] (checked once per watch)."""
    try:
        ringset = rings.ring_set(required=False)
    except PyrefError:
        return []
    return [r.addr for r in ringset.rings]


# ---------------------------------------------------------------------------------------
# Listing and deleting
# ---------------------------------------------------------------------------------------
def list_text():
    if not _watches:
        return "no pyref watches\n"
    rows = [("ID", "object", "type", "count", "changes", "gdb", "condition")]
    for w in sorted(_watches.values(), key=lambda w: w.id):
        bps = ",".join(str(bp.number) for bp in w.breakpoints if bp.is_valid())
        hw = all(bp.type == gdb.BP_HARDWARE_WATCHPOINT for bp in w.breakpoints
                 if bp.is_valid())
        rows.append((str(w.id), "0x%x" % w.addr, w.type_name, str(w.count),
                     str(w.nchanges), "%s (%s)" % (bps, "hw" if hw else "sw"),
                     w.condition_text()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "".join("  ".join(c.ljust(wd) for c, wd in zip(r, widths)) + "  " + r[-1] + "\n"
                   for r in rows)


def delete(ids):
    if not ids:
        ids = sorted(_watches)
        if not ids:
            return "no pyref watches\n"
    out = []
    for i in ids:
        w = _watches.get(i)
        if w is None:
            raise PyrefError("no pyref watch %d (see pyref watch list)" % i)
        numbers = ", ".join(str(bp.number) for bp in w.breakpoints if bp.is_valid())
        w.delete("deleted")
        out.append("pyref watch %d deleted (gdb watchpoint %s)" % (i, numbers))
        if w.summary:
            out.append(w.summary_text().rstrip("\n"))
    return "\n".join(out) + "\n"
