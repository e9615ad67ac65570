"""`pyref why`: which line of C released a reference it did not own, or used a pointer after
its owner let it go.

Steps: (1) the object — the one named, or the dead one found in the crashing thread's
frames (an argument or local pointing at freed memory, or at an object whose ring history
ends in its deallocation); (2) its recorded transitions from the ring, sites resolved; (3)
the verdict from the gdb-free rules in verdict.py; (4) the report, as text or JSON.
The crash itself (signal, faulting address, the innermost frame of traced code) is read
from gdb's frames and $_siginfo; nothing is called in the inferior.
"""
import json

import gdb

from pyref import commands, decode, objects, ringcmd, target, verdict
from pyref.rules import events
from pyref.target import PyrefError

MAX_FRAMES = 64        # frames examined for the dead object and the crash site
MAX_SYMBOLS = 64       # arguments and locals examined per frame
SINGLETONS = objects.SINGLETON_SYMBOLS


# ---------------------------------------------------------------------------------------
# What the crash says
# ---------------------------------------------------------------------------------------
def _frames():
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


def _frame_where(f):
    """(file, line, function) of a frame, or None without debug info."""
    try:
        sal = f.find_sal()
        fn = f.function()
        if sal is None or sal.symtab is None or fn is None:
            return None
        return sal.symtab.filename, sal.line, fn.name
    except (gdb.error, RuntimeError):
        return None


def _pointer_symbols(f):
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


def find_dead_object(rs):
    """(addr, how) of the dead object the crash involves, or (None, None). Innermost frame
    first; an object whose ring history ends in its deallocation wins over one whose
    memory merely looks freed."""
    index = rs.index() if rs is not None and rs.rings else {}
    weak = None
    for f in _frames():
        where = _frame_where(f)
        fname = where[2] if where else (f.name() or "??")
        for name, addr in _pointer_symbols(f):
            if addr < 4096 or addr & 7:
                continue
            recs = index.get(addr)
            if recs and recs[-1].op_name in ("DEALLOC", "FREE"):
                return addr, "%s in %s(): its ring history ends with %s" % (
                    name, fname, recs[-1].op_name)
            if weak is None:
                try:
                    info = objects.inspect(addr)
                except PyrefError:
                    continue
                if info.state == objects.FREED and (recs or info.type is not None
                                                    or "0xDD" in info.reason):
                    weak = addr, "%s in %s(): %s" % (name, fname, info.reason)
    return weak if weak else (None, None)


MAX_RING_CANDIDATES = 5000


def find_in_ring(rs):
    """(addr, how) of the object whose recorded history holds the most recent release
    without ownership (a verdict with evidence), or (None, None). For a crash whose frames
    do not hold the dead object, or no crash at all."""
    best = None
    checked = 0
    for obj, recs in rs.index().items():
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
        for life in reversed(events.lifetimes(events_for(rs, obj))):
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
    for f in _frames():
        where = _frame_where(f)
        if where and where[0] in traced_files:
            return events.Event(seq=-1, op="USE", before=0, after=0,
                                site=decode.Site(f.pc(), where[0], where[1], where[2],
                                                 "crash"))
    return None


# ---------------------------------------------------------------------------------------
# Building the events and the verdict
# ---------------------------------------------------------------------------------------
def events_for(rs, addr):
    """The Events of one object, its sites resolved and its threads named."""
    return events.from_records(rs.records_for(addr), ringcmd.site_of,
                               lambda rec: ringcmd.thread_label(rs.ring_of(rec), rec))


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
    rs = ringcmd.ring_set(required=False)
    crash = crash_info()
    how = None
    if expr:
        addr = target.eval_address(expr)
        how = "named"
    else:
        addr, how = find_dead_object(rs)
        if addr is None and rs.rings:
            addr, how = find_in_ring(rs)
    report = {"pyref_version": _version(), "crash": crash, "ring": None,
              "verdict": "unknown", "object": None, "culprit": None, "origin": None,
              "freed_at": None, "evidence": [], "missing": [], "summary": ""}
    if rs.rings:
        r0 = rs.rings[0]
        report["ring"] = {"decoded": sum(r.decoded for r in rs.rings),
                          "overwritten": sum(r.overwritten for r in rs.rings),
                          "torn": sum(r.torn for r in rs.rings)}
    else:
        report["missing"].append("no pyref ring in the target: " +
                                 ("; ".join(rs.problems) or "the extension is not traced"))
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
        return report

    state = ringcmd.object_state(addr)
    report["object"] = {"address": "0x%x" % addr, "type": state["type"],
                        "state": state["state"], "reason": state["reason"],
                        "found": how}
    evs = events_for(rs, addr) if rs.rings else []
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
    report["verdict"] = v.kind
    report["summary"] = v.summary
    report["why"] = v.why
    report["version_note"] = v.version_note
    report["missing"] += v.missing
    if v.culprit is not None:
        report["culprit"] = _event_json(v.culprit)
    if v.origin is not None:
        kind = {"BORROW": "borrowed", "STEAL": "stolen", "NEW": "new",
                "INCREF": "incref"}.get(v.origin.op, v.origin.op.lower())
        report["origin"] = dict(_event_json(v.origin), kind=kind)
    if v.freed_at is not None:
        report["freed_at"] = ("inside CPython" if v.freed_at.file is None
                              else _event_json(v.freed_at))
        if v.freed_at.file is None and v.freed_at.thread:
            report["freed_thread"] = v.freed_at.thread
    report["evidence"] = [dict(_event_json(e), seq=e.seq, before=e.before, after=e.after,
                               thread=e.thread, note=note) for e, note in v.ledger]
    return report


def decode_type(event):
    """Type name of a FREE event's type pointer (its `before` field), or None."""
    try:
        t = objects.type_info(event.before & ((1 << 64) - 1))
        return t.name if t.valid else None
    except PyrefError:
        return None


def _event_json(e):
    return {"op": e.op, "file": e.file, "line": e.line, "function": e.func, "api": e.api}


def _version():
    from pyref import __version__
    return __version__


# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------
def _where(d):
    """Site.short() of an event's JSON, or the text that stands for it."""
    if d is None:
        return "?"
    if isinstance(d, str):
        return d
    return decode.Site(0, d.get("file") or "?", d.get("line"), d.get("function")).short()


def format_report(rep):
    out = []
    obj = rep.get("object")
    if obj:
        out.append("object:   %s %s, %s%s" % (obj["address"], obj["type"] or "(type unknown)",
                                              obj["state"],
                                              ": " + obj["reason"] if obj["reason"] else ""))
        if obj.get("found") and obj["found"] != "named":
            out.append("found:    " + obj["found"])
    out.append("verdict:  %s" % rep["verdict"])
    if rep["summary"]:
        out.append("          " + rep["summary"])
    if rep.get("culprit"):
        c = rep["culprit"]
        out.append("culprit:  %s  %s" % (_where(c), c.get("api") or c["op"]))
    if rep.get("origin"):
        o = rep["origin"]
        out.append("origin:   %s by %s at %s" % (o["kind"], o.get("api") or o["op"], _where(o)))
    if rep.get("freed_at"):
        fa = _where(rep["freed_at"])
        if rep.get("freed_thread"):
            fa += " on " + rep["freed_thread"]
        out.append("freed:    " + fa)
    if rep.get("version_note"):
        out.append("versions: " + rep["version_note"])
    if rep["evidence"]:
        out.append("ledger:")
        rows = compress_ledger(rep["evidence"])
        if len(rows) > 40:
            out.append("  (%d earlier entries not shown)" % (len(rows) - 40))
        for first, last, n in rows[-40:]:
            if first["op"] == "FREE":
                change = "freed"
            else:
                change = "%d -> %d" % (first["before"], last["after"])
            op = first["op"] + (" x%d" % n if n > 1 else "")
            out.append("  %8d  %-12s %-14s %-32s %s" % (
                first["seq"], op, change, _where(first) if first["file"] else "inside CPython",
                last["note"]))
    for m in rep["missing"]:
        out.append("missing:  " + m)
    return "\n".join(out) + "\n"


def compress_ledger(evidence):
    """[(first, last, count)]: runs of the same operation at the same site (a loop) as one
    entry."""
    rows = []
    for e in evidence:
        if rows and rows[-1][0]["op"] == e["op"] and rows[-1][0]["file"] == e["file"] and \
                rows[-1][0]["line"] == e["line"] and e["op"] != "DEALLOC":
            first, _, n = rows[-1]
            rows[-1] = (first, e, n + 1)
        else:
            rows.append((e, e, 1))
    return rows


class Why(commands.Subcommand):
    name = "why"
    summary = "Explain a crash: the line that released a reference it did not own, and why."
    rest_argument = "expr"
    details = """\
Without EXPR, finds the dead object itself: an argument or local of the crashing
thread's frames that points at freed memory, or at an object whose recorded history ends
in its deallocation. Prints the object, where it was freed, the ledger of its references
(who acquired each: new, borrowed, stolen, INCREF; who released it) and the verdict:
premature-free, double-release, use-after-free, not-a-refcount-bug or unknown, with the
culprit line and the origin of the reference. Where evidence is missing (ring wrapped,
untraced code) it says so instead of guessing."""
    examples = ("pyref why", "pyref why item", "pyref why --json")
    completer = gdb.COMPLETE_EXPRESSION

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("expr", metavar="EXPR", nargs="?",
                            help="the object (default: found in the crashing frames)")

    def run(self, args, from_tty):
        rep = diagnose(args.expr or None)
        if args.json:
            self.write(json.dumps(rep, indent=1) + "\n")
        else:
            self.write(format_report(rep))
