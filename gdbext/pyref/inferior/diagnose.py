"""What `pyref why` reasons from, gathered from the target: (1) the object — the one named,
or the dead one found in the crashing thread's frames (an argument or local pointing at
freed memory, or at an object whose ring history ends in its deallocation), else the one
whose ring history holds the latest release without ownership; (2) its recorded
transitions, sites resolved; (3) the verdict from the gdb-free rules (rules/verdict.py);
(4) the report as a dict, the JSON of `pyref why --json` (commands/why.py writes its text).
The crash itself (signal, faulting address, the innermost frame of traced code) is read
from gdb's frames and $_siginfo (inferior/cframes.py); nothing is called in the inferior.
"""
import gdb

from pyref import __version__
from pyref.errors import PyrefError
from pyref.inferior import (cframes, layout, objects, pycontext, pythreads, rings, sources,
                             target)
from pyref.reader import columnar, evidence, ringformat
from pyref.reader.sites import Site, read_cstring
from pyref.rules import cpython, events, leaks, verdict

SINGLETONS = objects.SINGLETON_SYMBOLS
MAX_RING_CANDIDATES = 5000
MAX_MESSAGE = 512          # bytes of one of CPython's messages read from a frame
# Signals of a crash (SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGSEGV): a dead object among the
# crashing frames' pointers was being used; a breakpoint's SIGTRAP is no use of anything.
CRASH_SIGNALS = (4, 6, 7, 8, 11)
# The singleton a CPython function deallocating one names (its fatal error names no
# object).
DEALLOC_SINGLETON = {"none_dealloc": "_Py_NoneStruct",
                     "notimplemented_dealloc": "_Py_NotImplementedStruct"}


# ---------------------------------------------------------------------------------------
# CPython's own evidence
# ---------------------------------------------------------------------------------------
def frame_arguments(f):
    """{name: value} of a frame's arguments: char pointers read as strings (bounded),
    other pointers and integers as ints; what cannot be read is left out."""
    out = {}
    try:
        block = f.block()
    except (gdb.error, RuntimeError):
        return out
    while block is not None and block.function is None:
        block = block.superblock
    if block is None:
        return out
    for sym in block:
        if not sym.is_argument:
            continue
        try:
            v = sym.value(f)
            if v.is_optimized_out:
                continue
            t = v.type.strip_typedefs()
            if t.code == gdb.TYPE_CODE_PTR:
                p = int(v) & ((1 << 64) - 1)
                if t.target().strip_typedefs().code == gdb.TYPE_CODE_INT and \
                        t.target().strip_typedefs().sizeof == 1:
                    out[sym.name] = read_cstring(target.read, p, MAX_MESSAGE) if p else None
                else:
                    out[sym.name] = p
            elif t.code in (gdb.TYPE_CODE_INT, gdb.TYPE_CODE_ENUM):
                out[sym.name] = int(v)
        except (gdb.error, RuntimeError, ValueError, PyrefError):
            continue
    return out


def cpython_evidence():
    """cpython.Evidence from the crashed thread's frames (a fatal error's message,
    _PyObject_AssertFailed's arguments), or None. Read from gdb's frames: nothing is
    called in the inferior."""
    found = []
    for f in cframes.frames():
        name = f.name()
        if name in (cpython.ASSERT_FAILED, cpython.NEGATIVE) or name in cpython.FATAL:
            ev = cpython.classify(name, frame_arguments(f))
            if ev is not None:
                if ev.obj is None and ev.where in DEALLOC_SINGLETON:
                    ev.obj = target.symbol_address(DEALLOC_SINGLETON[ev.where])
                found.append(ev)
    return cpython.strongest(found)


# ---------------------------------------------------------------------------------------
# Finding the object
# ---------------------------------------------------------------------------------------
MAX_TUPLE_CHECK = 64       # items of a tuple read to tell a dead one


def dead_tuple(info):
    """Why a live-looking tuple is a dead one, or None. CPython keeps freed tuples on a
    free list, type and memory intact, their first item slot reused as the list's link:
    a tuple whose items are a NULL and freed objects, or freed objects only, was freed
    (its items released) and not built again; the link is NULL or the next freed tuple.
    A tuple still being built has NULL slots too, but its filled ones are live."""
    if info.type is None or info.type.name != "tuple" or info.body is None:
        return None
    lay = layout.layouts()
    try:
        n = info.body.i64(lay.ob_size)
        if not 0 < n <= MAX_TUPLE_CHECK:
            return None
        ptrs = target.read_ptrs(info.addr + layout.need("PyTupleObject").offset("ob_item"),
                                n)
    except (PyrefError, gdb.error):
        return None
    freed = nulls = 0
    for i, p in enumerate(ptrs):
        if not p:
            nulls += 1
            continue
        if i == 0 and _is_tuple(p):
            continue                 # the free list's link to the next freed tuple
        try:
            item = objects.inspect(p)
        except PyrefError:
            item = None
        if item is not None and item.state == objects.LIVE:
            rc = item.refcount
            if rc is not None and (rc.immortal or rc.total >= leaks.NEAR_IMMORTAL):
                continue             # a static object (a small int): alive for good
            return None
        freed += 1
    if not freed:
        return None
    return ("a tuple whose items are freed objects%s: freed onto CPython's tuple free list "
            "(the first slot links the list), its items released" % (
                " and a NULL" if nulls else ""))


def _is_tuple(addr):
    try:
        info = objects.inspect(addr)
    except PyrefError:
        return False
    return info.type is not None and info.type.name == "tuple"


MAX_DEAD_CONTAINERS = 256  # most recent traced DEALLOCs searched for a frame's item pointer


def _item_storage(addr):
    """(start, end, type name) of the item pointers of the list or tuple at `addr` as its memory reads
    now, or None: a list's separate item array (ob_item, ob_size slots), a tuple's items
    inside the object. A dead list on CPython's free list keeps both fields (list_dealloc
    frees the array but clears neither), so a pointer into the freed array still finds it."""
    try:
        info = objects.inspect(addr)
    except PyrefError:
        return None
    if info.type is None or info.type.name not in ("list", "tuple"):
        return None
    lay = layout.layouts()
    try:                             # read raw: a dead object has no body to read through
        n = target.read_i64(addr + lay.ob_size)
        if not 0 < n < 1 << 32:
            return None
        if info.type.name == "tuple":
            start = addr + layout.need("PyTupleObject").offset("ob_item")
        else:
            start = target.read_u64(addr + layout.need("PyListObject").offset("ob_item"))
    except (PyrefError, gdb.error):
        return None
    return (start, start + 8 * n, info.type.name) if start else None


def dead_container_of(ringset, pointers):
    """(addr, how) of a list or tuple freed by traced code (its last ring record is a
    DEALLOC) whose item storage a frame's pointer points into, or (None, None): the
    pointer a function took with PySequence_Fast_ITEMS, PyList_GET_ITEM's array or
    &PyTuple_GET_ITEM(t, 0) is a pointer to the container, whose items died with it.
    Only the MAX_DEAD_CONTAINERS most recent traced DEALLOCs are looked at."""
    if ringset is None or not ringset.rings or not pointers:
        return None, None
    dead = []
    seen = set()
    for ring in ringset.rings:
        for obj in columnar.newest_traced_deallocs(ring):   # no Record per slot
            if obj not in seen:
                seen.add(obj)
                dead.append(obj)
                if len(dead) >= MAX_DEAD_CONTAINERS:
                    break
    if not dead:
        return None, None
    last = ringset.records_of(set(dead))
    for obj in dead:
        recs = last.get(obj)
        if not recs or recs[-1].op_name not in ("DEALLOC", "FREE"):
            continue                 # the address holds a newer object now
        span = _item_storage(obj)
        if span is None:
            continue
        for fname, name, p in pointers:
            if span[0] <= p < span[1]:
                return obj, ("%s in %s points into the item storage of this %s, freed by "
                             "traced code (its ring history ends with %s)" % (
                                 name, fname, span[2], recs[-1].op_name))
    return None, None


def find_dead_object(ringset):
    """(addr, how, dead) of the dead object the crash involves, or (None, None, None).
    Innermost frame first; an object whose ring history ends in its deallocation wins
    over one whose memory merely looks freed. `dead`, when not None, says why an object
    that looks live is a dead one (dead_tuple())."""
    pointers = [(cframes.frame_name(f), name, addr) for f in cframes.frames()
                for name, addr in cframes.pointer_symbols(f)
                if not (addr < 4096 or addr & 7)]
    # One pass over the rings for every pointer of the frames, not a decode of them all.
    index = ringset.records_of({a for _, _, a in pointers}) \
        if ringset is not None and ringset.rings else {}
    weak = None
    for fname, name, addr in pointers:
        recs = index.get(addr)
        if recs and recs[-1].op_name in ("DEALLOC", "FREE"):
            return addr, "%s in %s: its ring history ends with %s" % (
                name, fname, recs[-1].op_name), None
        if weak is None:
            try:
                info = objects.inspect(addr)
            except PyrefError:
                continue
            if info.state == objects.FREED and (recs or info.type is not None
                                                or "0xDD" in info.reason):
                weak = addr, "%s in %s: %s" % (name, fname, info.reason), None
            elif info.state == objects.LIVE and recs:
                dead = dead_tuple(info)
                if dead:
                    weak = addr, "%s in %s: %s" % (name, fname, dead), dead
    if weak is None or not index.get(weak[0]):
        # a freed block without history (an item array, an item): a pointer into the
        # storage of a container traced code freed is a pointer to that container
        addr, how = dead_container_of(ringset, pointers)
        if addr is not None:
            return addr, how, None
    return weak if weak else (None, None, None)


def _may_show_harm(recs, singleton):
    """Whether an object's records (decode.Records, no site resolved) can show harm that
    analyze() would name a culprit for: a count below zero (a singleton's at zero), a
    record on dead memory after a lifetime ended, or a lifetime with a borrow or a steal
    that a traced DEALLOC ended. One pass over the raw fields, cutting lifetimes as
    events.lifetimes() does: most objects of a full ring pass none of the tests and are
    never resolved."""
    rf = ringformat
    ended = False                    # the previous record ended a lifetime
    lent = False                     # the running lifetime has a BORROW or a STEAL
    for r in recs:
        op, before, flags = r[4], r[2], r[5]
        after = before + r[3]
        if not flags & rf.IMMORTAL and (after < 0 or singleton is not None and after <= 0
                                        and op in (rf.DECREF, rf.DEALLOC)):
            return True
        if ended:
            if op in (rf.FREE, rf.STEAL):
                continue             # the end's own FREE, or the steal that freed it
            if op != rf.NEW and not 0 < before < verdict.SANE_COUNT:
                return True          # a use of dead memory
            ended = False
        if op == rf.NEW and before == 1:
            lent = False
        elif op in (rf.BORROW, rf.STEAL):
            lent = True
        elif op == rf.DEALLOC:
            if lent:
                return True
            ended, lent = True, False
        elif op == rf.FREE:
            ended, lent = True, False
    return False


def find_in_ring(ringset):
    """(addr, how) of the object whose recorded history shows harm with a culprit (freed
    and used after, freed by a borrower or a thief, a count below zero), the most recent
    culprit first, or (None, None). For a crash whose frames do not hold the dead object,
    or no crash at all. A release the ownership rules find odd, without harm, is no
    reason to pick an object."""
    best = None
    checked = 0
    singles = {target.symbol_address(sym): name for sym, name in SINGLETONS.items()}
    complete = not any(r.overwritten for r in ringset.rings)
    # Only the objects a column test on the raw rings cannot rule out (a superset of those
    # _may_show_harm passes), and the singletons, get their Records built.
    found = ringset.records_of(ringset.harm_candidates(verdict.SANE_COUNT.bit_length() - 1)
                               | {a for a in singles if a})
    for obj in ringset.first_seen_order(found):
        recs = found[obj]
        singleton = singles.get(obj)
        if not _may_show_harm(recs, singleton) and not (complete and singleton):
            continue
        checked += 1
        if checked > MAX_RING_CANDIDATES:
            break
        v = verdict.analyze(events_for(ringset, obj), state="live", singleton=singleton,
                            complete=complete)
        if v.culprit is not None and (best is None or v.culprit.seq > best[1]):
            best = (obj, v.culprit.seq)
    if best is None:
        return None, None
    return best[0], ("no freed object in the crashing frames; the ring shows harm done "
                     "to this one")


def traced_use_site(traced_files):
    """Event for the innermost frame whose source file is one the ring's sites name: where
    traced code was when the process crashed (the use of a dangling pointer)."""
    for f in cframes.frames():
        where = cframes.frame_where(f)
        if where and where[0] in traced_files:
            return events.Event(seq=-1, op="USE", before=0, after=0,
                                site=Site(f.pc(), where[0], where[1], where[2],
                                                 "crash"))
    return None


# ---------------------------------------------------------------------------------------
# Building the events and the verdict
# ---------------------------------------------------------------------------------------
def events_for(ringset, addr):
    """The Events of one object, its sites resolved and its threads named."""
    return events.from_records(ringset.records_for(addr), rings.site_of,
                               lambda rec: rings.thread_label(ringset.ring_of(rec), rec))


def python_minor():
    """The target interpreter's minor version from Py_Version (3.11+); 10 when absent."""
    v = target.symbol_u64("Py_Version")
    if v:
        return (v & 0xFFFFFFFF) >> 16 & 0xFF
    return 10


def singleton_name(addr):
    for sym, name in SINGLETONS.items():
        if target.symbol_address(sym) == addr:
            return name
    return None


def diagnose(expr=None):
    """The full report as a dict (the JSON of `pyref why --json`)."""
    target.require_target()
    target.check_executable()    # another interpreter's symbols would make any verdict up
    ringset = rings.ring_set(required=False)
    crash = cframes.crash_info()
    how = None
    said = None if expr else cpython_evidence()
    in_frames = False
    dead = aside = None
    if expr:
        addr = target.eval_address(expr)
        how = "named"
    elif said is not None and said.obj:
        addr, how = said.obj, "named by CPython: " + said.text
    else:
        addr, how, dead = find_dead_object(ringset)
        in_frames = addr is not None
        fault = crash.get("address")
        if addr is not None and not dead and fault is not None and fault < 65536 and \
                not (ringset.rings and ringset.records_for(addr)):
            # a fault at NULL is not a read of that object, and traced code never touched
            # it: a freed-looking value in a frame (an outer frame's register gdb cannot
            # restore, a stale local) is an aside, not the crash's subject
            aside, addr, in_frames = how, None, False
        if addr is None and ringset.rings:
            addr, how = find_in_ring(ringset)
    report = {"pyref_version": __version__, "crash": crash, "ring": None,
              "verdict": "unknown", "object": None, "culprit": None, "origin": None,
              "freed_at": None, "evidence": [], "missing": [], "summary": "",
              "python_context": bool(ringset.rings) and pycontext.recorded(ringset)}
    if rings.empty_note(ringset):
        report["missing"].append(rings.empty_note(ringset))
    if ringset.rings:
        report["ring"] = {"decoded": sum(r.decoded for r in ringset.rings),
                          "overwritten": sum(r.overwritten for r in ringset.rings),
                          "torn": sum(r.torn for r in ringset.rings)}
    else:
        report["missing"].append(rings.no_ring_text(ringset))
    if said is not None:
        report["cpython"] = {"kind": said.kind, "message": said.text,
                             "object": "0x%x" % said.obj if said.obj else None}
    if addr is None and said is not None:
        v = verdict.analyze([], cpython=said)
        report.update(verdict=v.kind, summary=v.summary, why=v.why, harm=v.harm)
        report["missing"] += v.missing
        return evidence.apply_to_verdict(report, ringset.caveats, None)
    if addr is None:
        sig = crash.get("signal")
        fault = crash.get("address")
        if fault is not None and fault < 65536:
            report["verdict"] = "not-a-refcount-bug"
            report["summary"] = ("a NULL pointer dereference (fault at 0x%x); no argument "
                                 "or local of the crashing frames points at a freed "
                                 "object" % fault if aside is None else
                                 "a NULL pointer dereference (fault at 0x%x); %s, but the "
                                 "ring has no record of it" % (fault, aside))
        elif sig is not None:
            ring = ", and no harm done to any object in the ring" if ringset.rings else ""
            report["verdict"] = "not-a-refcount-bug"
            report["summary"] = (
                ("stopped, not crashed (signal %d): no freed object among the arguments "
                 "and locals of the current frames" if sig not in CRASH_SIGNALS else
                 "signal %d with no freed object among the arguments and locals of the "
                 "crashing frames") % sig + ring)
        else:
            report["summary"] = ("no freed object found in the current frames; name one: "
                                 "pyref why EXPR")
        return evidence.apply_to_verdict(report, ringset.caveats, None)

    state = objects.object_state(addr)
    if dead:
        state.update(state="freed", reason=dead)
    single = singleton_name(addr)
    if single and state["state"] != objects.LIVE:
        # a singleton is a static object: a count at or below zero is an over-release,
        # never a free (CPython aborts in none_dealloc rather than free it)
        state.update(state=objects.LIVE, reason="%s is a static object, never freed: its "
                     "count (%s) says it was released more often than referenced" % (
                         single, state.get("refcount")))
    report["object"] = {"address": "0x%x" % addr, "type": state["type"],
                        "state": state["state"], "reason": state["reason"],
                        "found": how}
    evs = events_for(ringset, addr) if ringset.rings else []
    freed_types = [t for t in (decode_type(e) for e in evs if e.op == "FREE") if t]
    lives = events.lifetimes(evs)
    if lives and len(lives) > 1 and events.end_of(lives[-1]) is None and \
            state["state"] == objects.LIVE and not verdict.poisoned(
                next((e for e in lives[-1] if e.file is not None), lives[-1][0])):
        # a live object: the earlier lifetimes at its address were other objects
        report["earlier_lifetimes"] = len(lives) - 1
        report["missing"].append(
            "%d earlier lifetime%s at this address (other objects, freed) left out: "
            "`pyref history` shows them" % (len(lives) - 1, "" if len(lives) == 2 else "s"))
        evs = lives[-1]
    elif evs and events.end_of(lives[-1]) is not None and state["state"] == objects.LIVE:
        # the recorded free is the truth about this object; the memory holds another now
        report["object"]["reason"] = ("its memory was reused after the recorded free: it "
                                      "now holds a %s" % state["type"])
        report["object"]["state"] = "freed"
        report["object"]["type"] = freed_types[0] if freed_types else None
    if not report["object"]["type"]:
        report["object"]["type"] = freed_types[0] if freed_types else None
    # the crash frame that used the object is traced code that had recorded it
    traced_files = {e.file for e in evs if e.file}
    use = traced_use_site(traced_files) if not expr else None
    crashed_on = in_frames and crash.get("signal") in CRASH_SIGNALS
    v = verdict.analyze(evs, state=state["state"], singleton=singleton_name(addr),
                        target_minor=python_minor(), use_site=use, crashed_on=crashed_on,
                        cpython=said if said is not None and said.obj == addr else None,
                        complete=bool(ringset.rings) and
                        not any(r.overwritten for r in ringset.rings),
                        source=sources.Sources(ringset))
    lines = pycontext.lines_by_seq(ringset, ringset.records_for(addr)) \
        if report["python_context"] else {}
    report["verdict"] = v.kind
    report["summary"] = v.summary
    report["why"] = v.why
    report["version_note"] = v.version_note
    report["harm"] = v.harm
    report["suspect"] = v.suspect
    report["missing"] += v.missing
    if v.used_at is not None:
        report["used_at"] = _event_json(v.used_at, lines)
    if v.culprit is not None:
        report["culprit"] = _event_json(v.culprit, lines)
    if v.origin is not None:
        kind = {"BORROW": "borrowed", "STEAL": "stolen", "NEW": "new",
                "INCREF": "incref"}.get(v.origin.op, v.origin.op.lower())
        report["origin"] = dict(_event_json(v.origin, lines), kind=kind)
    if v.freed_at is not None:
        report["freed_at"] = ("inside CPython" if v.freed_at.file is None
                              else _event_json(v.freed_at, lines))
        if v.freed_at.file is None and v.freed_at.thread:
            report["freed_thread"] = v.freed_at.thread
    report["evidence"] = [dict(_event_json(e, lines), seq=e.seq, before=e.before,
                               after=e.after, thread=e.thread, note=note)
                          for e, note in v.ledger]
    return evidence.apply_to_verdict(report, ringset.caveats, addr)


def decode_type(event):
    """Type name of a FREE event's type pointer (its `before` field), or None."""
    try:
        t = objects.type_info(event.before & ((1 << 64) - 1))
        return t.name if t.valid else None
    except PyrefError:
        return None


def _event_json(e, lines):
    """An event's JSON; `python` the Python line that ran it ({seq: PyFrame} `lines`, the
    object's records' with PYREF_PYCONTEXT=1)."""
    return {"op": e.op, "file": e.file, "line": e.line, "function": e.func, "api": e.api,
            "python": pythreads.frame_json(lines.get(e.seq))}
