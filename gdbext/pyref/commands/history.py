"""`pyref history`: every recorded transition of one object, oldest first, cut into its
lifetimes (rules/events.py), each with the Python line that ran it when the ring records
Python context (PYREF_PYCONTEXT=1, inferior/pycontext.py), then the object's state now."""
import json

from pyref import commands
from pyref.commands import settings
from pyref.errors import PyrefError
from pyref.inferior import objects, pycontext, pythreads, rings, target
from pyref.rules import capi, events


def history(ringset, addr, limit=None):
    """(lifetimes, shown, total): the object's records split into lifetimes, keeping only
    the last `limit` records when given. ringset.ring_of(record) gives each record's ring."""
    recs = ringset.records_for(addr)
    total = len(recs)
    if limit is not None and total > limit:
        recs = recs[-limit:]
    return events.lifetimes(recs), len(recs), total


def record_dict(ringset, rec):
    s = rings.site_of(rec.site)
    d = {"seq": rec.seq, "thread": rings.thread_label(ringset.ring_of(rec), rec),
         "op": rec.op_name, "before": rec.refcnt, "after": rec.after,
         "immortal": bool(rec.immortal), "file": s.file if s else None,
         "line": s.line if s else None, "function": s.func if s else None,
         "api": s.api if s else None,
         "python": pythreads.frame_json(pycontext.python_line(ringset, rec))}
    return d


def _type_name(addr):
    try:
        t = objects.type_info(addr)
        return t.name if t.valid else "type 0x%x" % addr
    except PyrefError:
        return "type 0x%x" % addr


def record_line(ringset, rec):
    """One line of `pyref history`: seq, thread, op, count change, site, the Python line
    that ran it (when recorded), rule."""
    ring = ringset.ring_of(rec)
    flags = " immortal" if rec.immortal else ""
    flags += pythreads.json_suffix(pythreads.frame_json(pycontext.python_line(ringset, rec)))
    if rec.shared:
        flags += " (not the owner thread: ob_ref_shared)"
    if rec.op_name in ("NEW", "BORROW", "STEAL"):
        s = rings.site_of(rec.site)
        rule = s and s.api and capi.rule(s.api)
        if rule:
            flags += "  [%s: %s]" % (s.api, rule)
    if rec.op_name == "FREE":
        change = "freed (%s)" % _type_name(rec.refcnt & 0xFFFFFFFFFFFFFFFF)
    else:
        change = "%d -> %d" % (rec.refcnt, rec.after)
    return "  %8d  %-14s %-8s %-16s %s%s" % (rec.seq, rings.thread_label(ring, rec),
                                             rec.op_name, change, rings.site_text(rec.site),
                                             flags)


def history_json(ringset, addr, lifetimes, shown, total, obj_state):
    lifetimes = [[record_dict(ringset, r) for r in life] for life in lifetimes]
    incomplete = ringset.caveats.for_object(addr)
    return json.dumps({
        "address": "0x%x" % addr, "transitions": total, "shown": shown,
        "lifetimes": lifetimes, "complete": incomplete is None, "incomplete": incomplete,
        "caveats": ringset.caveats.to_json(),
        "python_context": pycontext.recorded(ringset), "object": obj_state}, indent=1)


class History(commands.Subcommand):
    name = "history"
    reports_caveats = True
    summary = "Show every recorded reference-count transition of an object, oldest first."
    rest_argument = "expr"
    details = """\
One line per transition: sequence number, thread, operation, count before -> after, the
C site file:line (function) and, when the program ran with PYREF_PYCONTEXT=1, the Python
line that called it ([py file.py:LINE in func]). When the address was freed and reused,
each lifetime is shown apart. Then the object's state now (as pyref show reports it)."""
    examples = ("pyref history op", "pyref history -n 20 0x7ffff7a1b2c0",
                "pyref history --json item")

    def add_arguments(self, parser):
        parser.add_argument("-n", type=int, default=None, metavar="N",
                            help="show only the last N transitions")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("expr", metavar="EXPR",
                            help="a GDB expression for the object's address")

    def run(self, args, from_tty):
        if args.n is not None and args.n <= 0:
            raise PyrefError("-n wants a positive number")
        target.require_target()
        addr = target.eval_address(args.expr)
        ringset = rings.ring_set()
        lifetimes, shown, total = history(
            ringset, addr, args.n if args.n is not None else settings.records())
        state = objects.object_state(addr)
        if args.json:
            self.write(history_json(ringset, addr, lifetimes, shown, total, state) + "\n")
            return
        out = []
        incomplete = ringset.caveats.for_object(addr)
        if not total and incomplete:
            out.append("history unknown: %s (no transition of 0x%x among the %d records "
                       "that could be read)" % (incomplete, addr,
                                                sum(r.decoded for r in ringset.rings)))
        elif not total:
            out.append("no transitions of 0x%x in the ring" % addr)
            if rings.empty_note(ringset):
                out.append("(%s)" % rings.empty_note(ringset))
            covered = sum(r.decoded for r in ringset.rings)
            if any(r.overwritten for r in ringset.rings):
                out.append("(the ring wrapped: it holds the last %d transitions only)" %
                           covered)
        else:
            out.append("%d transition%s of 0x%x%s" % (
                total, "" if total == 1 else "s", addr,
                ", last %d shown" % shown if shown < total else ""))
            for i, life in enumerate(lifetimes, 1):
                if len(lifetimes) > 1:
                    out.append("lifetime %d%s" % (i, " (current)" if i == len(lifetimes)
                                                  and life[-1].op_name not in
                                                  ("DEALLOC", "FREE") else ""))
                out.append("  %8s  %-14s %-8s %-16s %s" % ("seq", "thread", "op", "count",
                                                           "site"))
                for rec in life:
                    out.append(record_line(ringset, rec))
        st = "now: %s" % state["state"]
        if state["type"]:
            st += ", %s" % state["type"]
        if state["refcount"] is not None:
            st += ", refcount %s" % state["refcount"]
        if state["reason"]:
            st += " (%s)" % state["reason"]
        out.append(st)
        if total and incomplete:
            out.append("history incomplete: " + incomplete)
        out += ringset.caveats.lines("\n".join(out))
        if total and pycontext.hint(ringset):
            out.append("(%s)" % pycontext.hint(ringset))
        self.write("\n".join(out) + "\n")


def register():
    commands.install(History)
