"""`pyref why`: which line of C released a reference it did not own, or used a pointer after
its owner let it go. inferior/diagnose.py gathers the evidence and runs the rules; this
module writes the report."""
import json

import gdb

from pyref import commands
from pyref.inferior import diagnose, pycontext, pythreads
from pyref.reader.sites import Site


def _where(d):
    """Site.short() of an event's JSON, or the text that stands for it."""
    if d is None:
        return "?"
    if isinstance(d, str):
        return d
    return Site(0, d.get("file") or "?", d.get("line"), d.get("function")).short()


def _py(d):
    """The Python line of an event's JSON, as a suffix ('' when not recorded)."""
    return pythreads.json_suffix(d.get("python")) if isinstance(d, dict) else ""


def format_report(rep):
    out = []
    obj = rep.get("object")
    if obj:
        out.append("object:   %s %s, %s%s" % (obj["address"], obj["type"] or "(type unknown)",
                                              obj["state"],
                                              ": " + obj["reason"] if obj["reason"] else ""))
        if obj.get("found") and obj["found"] != "named":
            out.append("found:    " + obj["found"])
    if rep.get("cpython"):
        out.append("cpython:  " + rep["cpython"]["message"])
    out.append("verdict:  %s" % rep["verdict"])
    if rep["summary"]:
        out.append("          " + rep["summary"])
    if rep.get("harm"):
        out.append("harm:     " + rep["harm"])
    if rep.get("culprit"):
        c = rep["culprit"]
        out.append("culprit:  %s  %s%s" % (_where(c), c.get("api") or c["op"], _py(c)))
    if rep.get("origin"):
        o = rep["origin"]
        out.append("origin:   %s by %s at %s%s" % (o["kind"], o.get("api") or o["op"],
                                                  _where(o), _py(o)))
    if rep.get("freed_at"):
        fa = _where(rep["freed_at"]) + _py(rep["freed_at"])
        if rep.get("freed_thread"):
            fa += " on " + rep["freed_thread"]
        out.append("freed:    " + fa)
    if rep.get("used_at"):
        out.append("used:     %s%s" % (_where(rep["used_at"]), _py(rep["used_at"])))
    for m in rep.get("suspect") or ():
        out.append("suspect:  " + m)
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
            out.append("  %8d  %-12s %-14s %-32s %s%s" % (
                first["seq"], op, change, _where(first) if first["file"] else "inside CPython",
                last["note"], _py(first)))
    for m in rep["missing"]:
        out.append("missing:  " + m)
    if rep["evidence"] and not rep.get("python_context"):
        out.append("python:   " + pycontext.HINT)
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
    reports_caveats = True
    summary = "Explain a crash: the line that released a reference too many or too soon, and why."
    rest_argument = "expr"
    details = """\
Without EXPR, finds the dead object itself: an argument or local of the crashing
thread's frames that points at freed memory, or at an object whose recorded history ends
in its deallocation, or the one CPython's own check names (a fatal error, a failed
refcount assertion). Prints the object, where it was freed, the ledger of its references
(who acquired each: new, borrowed, stolen, INCREF; who released it) and the verdict:
premature-free, double-release, use-after-free, not-a-refcount-bug or unknown, with the
culprit line and the origin of the reference. A culprit needs evidence of harm (freed and
then used, a count below zero, CPython's word): a release that merely looks unowned is
listed as a suspicion. Where evidence is missing (ring wrapped, untraced code) it says so
instead of guessing."""
    examples = ("pyref why", "pyref why item", "pyref why --json")
    completer = gdb.COMPLETE_EXPRESSION

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("expr", metavar="EXPR", nargs="?",
                            help="the object (default: found in the crashing frames)")

    def run(self, args, from_tty):
        rep = diagnose.diagnose(args.expr or None)
        if args.json:
            self.write(json.dumps(rep, indent=1) + "\n")
        else:
            self.write(format_report(rep))


def register():
    commands.install(Why)
