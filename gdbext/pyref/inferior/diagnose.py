"""What `pyref why` reasons from, gathered from the target: (1) the object — the one named,
or the dead one found in the crashing thread's frames (an argument or local pointing at
freed memory, or at an object whose ring history ends in its deallocation), else the one
whose ring history holds the latest release without ownership; (2) its recorded
transitions, sites resolved; (3) the verdict from the gdb-free rules (rules/verdict.py);
(4) the report as a dict, the JSON of `pyref why --json` (commands/why.py writes its text).
The crash itself (signal, faulting address, the innermost frame of traced code) is read
from gdb's frames and $_siginfo (inferior/cframes.py); nothing is called in the inferior.
"""
from pyref import __version__
from pyref.errors import PyrefError
from pyref.inferior import cframes, objects, pycontext, pythreads, rings, target
from pyref.reader import evidence
from pyref.reader.sites import Site
from pyref.rules import events, verdict

SINGLETONS = objects.SINGLETON_SYMBOLS
MAX_RING_CANDIDATES = 5000


# ---------------------------------------------------------------------------------------
# Finding the object
# ---------------------------------------------------------------------------------------
def find_dead_object(ringset):
    """(addr, how) of the dead object the crash involves, or (None, None). Innermost frame
    first; an object whose ring history ends in its deallocation wins over one whose
    memory merely looks freed."""
    index = ringset.index() if ringset is not None and ringset.rings else {}
    weak = None
    for f in cframes.frames():
        fname = cframes.frame_name(f)
        for name, addr in cframes.pointer_symbols(f):
            if addr < 4096 or addr & 7:
                continue
            recs = index.get(addr)
            if recs and recs[-1].op_name in ("DEALLOC", "FREE"):
                return addr, "%s in %s: its ring history ends with %s" % (
                    name, fname, recs[-1].op_name)
            if weak is None:
                try:
                    info = objects.inspect(addr)
                except PyrefError:
                    continue
                if info.state == objects.FREED and (recs or info.type is not None
                                                    or "0xDD" in info.reason):
                    weak = addr, "%s in %s: %s" % (name, fname, info.reason)
    return weak if weak else (None, None)


def find_in_ring(ringset):
    """(addr, how) of the object whose recorded history holds the most recent release
    without ownership (a verdict with evidence), or (None, None). For a crash whose frames
    do not hold the dead object, or no crash at all."""
    best = None
    checked = 0
    for obj, recs in ringset.index().items():
        ops = {r.op_name for r in recs}
        if not ops & {"DECREF", "DEALLOC", "STEAL"}:
            continue
        singleton = singleton_name(obj)
        if not singleton and not ops & {"BORROW", "STEAL"} and \
                sum(r.op_name in ("DECREF", "DEALLOC") for r in recs) < 2:
            continue                     # no evidence possible: skip cheaply
        checked += 1
        if checked > MAX_RING_CANDIDATES:
            break
        for life in reversed(events.lifetimes(events_for(ringset, obj))):
            found = verdict.unowned_release(life, singleton)
            if found:
                if best is None or found[0].seq > best[1]:
                    best = (obj, found[0].seq)
                break
    if best is None:
        return None, None
    return best[0], ("no freed object in the crashing frames; the ring shows a release "
                     "without ownership")


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
    if expr:
        addr = target.eval_address(expr)
        how = "named"
    else:
        addr, how = find_dead_object(ringset)
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
    if addr is None:
        sig = crash.get("signal")
        fault = crash.get("address")
        if fault is not None and fault < 65536:
            report["verdict"] = "not-a-refcount-bug"
            report["summary"] = ("a NULL pointer dereference (fault at 0x%x); no argument "
                                 "or local of the crashing frames points at a freed "
                                 "object" % fault)
        elif sig is not None:
            report["verdict"] = "not-a-refcount-bug"
            report["summary"] = ("signal %d with no freed object among the arguments and "
                                 "locals of the crashing frames" % sig)
        else:
            report["summary"] = ("no freed object found in the current frames; name one: "
                                 "pyref why EXPR")
        return evidence.apply_to_verdict(report, ringset.caveats, None)

    state = objects.object_state(addr)
    report["object"] = {"address": "0x%x" % addr, "type": state["type"],
                        "state": state["state"], "reason": state["reason"],
                        "found": how}
    evs = events_for(ringset, addr) if ringset.rings else []
    freed_types = [t for t in (decode_type(e) for e in evs if e.op == "FREE") if t]
    if evs and evs[-1].op in events.ENDS_LIFE and state["state"] == objects.LIVE:
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
    v = verdict.analyze(evs, state=state["state"], singleton=singleton_name(addr),
                        target_minor=python_minor(), use_site=use)
    lines = pycontext.lines_by_seq(ringset, ringset.records_for(addr)) \
        if report["python_context"] else {}
    report["verdict"] = v.kind
    report["summary"] = v.summary
    report["why"] = v.why
    report["version_note"] = v.version_note
    report["missing"] += v.missing
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
