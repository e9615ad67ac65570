"""`pyref explain`: the reference rules of a C-API call, in plain words, where the user is.

The facts come from the C-API table, pyref.rules.capi (CPython's refcounts.dat for 3.11
and main, plus pyref's curated corrections). With no NAME, the calls of the current C
frame's function (inferior/cframes.py): the C-API functions it calls (from its machine
code: one disassembly of the function, no inferior call) and the calls the shim recorded
sites for in it (macros such as PyTuple_GET_ITEM leave no call instruction).
"""
import difflib
import json

import gdb

from pyref import commands
from pyref.errors import PyrefError
from pyref.inferior import cframes, target
from pyref.rules import capi

# The reference-count macros are not in refcounts.dat as rules a caller follows.
MACROS = {
    "Py_INCREF": "takes a new reference: you own it and must release it (Py_DECREF) when done",
    "Py_XINCREF": "as Py_INCREF, and does nothing for NULL",
    "Py_NewRef": "Py_INCREF, then returns the object: you own the result",
    "Py_XNewRef": "as Py_NewRef, and returns NULL for NULL",
    "Py_DECREF": "releases one reference you own; never one you borrowed or gave away "
                 "(stolen); the object may be freed here and must not be used after",
    "Py_XDECREF": "as Py_DECREF, and does nothing for NULL",
    "Py_CLEAR": "Py_XDECREF, after setting the variable to NULL first (safe against "
                "re-entry through __del__)",
    "Py_SETREF": "stores a new owned reference and releases the old one (after the store)",
    "Py_XSETREF": "as Py_SETREF, and the old value may be NULL",
}
RETURNS = {"new": "a new reference", "borrowed": "a borrowed reference", "none": "no object",
           "null": "always NULL (an error indicator)"}
MAX_CALLS = 200


def explain(name):
    """dict of facts for one name, or None when unknown."""
    if name in MACROS:
        return {"name": name, "kind": "macro", "rule": MACROS[name], "returns": None,
                "steals": [], "container": None, "versions": [], "notes": [],
                "recorded": "INCREF" if "INC" in name or "New" in name else "DECREF"}
    api = capi.get(name)
    if api is None:
        return None
    return {
        "name": name, "kind": "function",
        "signature": "%s(%s)" % (name, ", ".join(
            (t + n if t.endswith("*") else "%s %s" % (t, n)) if t else n
            for t, n in api.params)),
        "returns": api.returns, "returns_text": RETURNS.get(api.returns, api.returns),
        "container": api.container, "index": api.index,
        "steals": [{"arg": s.arg, "on_failure": bool(s.steals_on_failure)}
                   for s in api.steals],
        "rule": api.rule, "notes": list(api.notes), "versions": list(api.versions),
        "since": api.since, "until": api.until, "limited": api.limited,
        "recorded": list(api.recorded), "via": api.via}


def format_facts(f):
    out = [f.get("signature") or f["name"]]
    if f["kind"] == "macro":
        out.append("  a reference-count macro (recorded by the shim as %s)" % f["recorded"])
        out.append("  rule:     " + f["rule"])
        return "\n".join(out) + "\n"
    ret = f["returns_text"]
    if f["returns"] == "borrowed":
        ret += " owned by %s" % (f["container"].upper() if f["container"] else
                                 "the interpreter or another object")
    out.append("  returns:  " + ret)
    for s in f["steals"]:
        out.append("  steals:   %s — %s" % (s["arg"].upper(), "even when the call fails"
                                            if s["on_failure"] else
                                            "only when the call succeeds"))
    out.append("  rule:     " + f["rule"])
    for n in f["notes"]:
        out.append("  note:     " + n)
    where = ", ".join(f["versions"]) or "pyref's curated table"
    if f["since"]:
        where += "; since %s" % f["since"]
    if f["until"]:
        where += "; removed in %s" % f["until"]
    if f["limited"]:
        where += "; limited API since %s" % f["limited"]
    out.append("  data:     " + where)
    if f["recorded"]:
        out.append("  pyref:    recorded as %s" % "/".join(f["recorded"]))
    elif f["via"]:
        out.append("  pyref:    a macro over %s, recorded under that name" % f["via"])
    return "\n".join(out) + "\n"


def nearest(name, n=5):
    names = capi.names() + sorted(MACROS)
    lower = {x.lower(): x for x in names}
    hits = [lower[name.lower()]] if name.lower() in lower else []
    hits += [x for x in difflib.get_close_matches(name, names, n=n, cutoff=0.6)
             if x not in hits]
    if len(hits) < n:
        hits += [x for x in names if name.lower() in x.lower() and x not in hits][:n - len(hits)]
    return hits[:n]


def calls_in_current_function():
    """(function name, [api names]) of the selected frame's function: the C-API calls and
    macros it makes that the table or MACROS knows, at most MAX_CALLS."""
    func, names = cframes.calls_of_selected_function()
    known = [n for n in names if n in MACROS or capi.get(n) is not None]
    return func, known[:MAX_CALLS]


class Explain(commands.Subcommand):
    name = "explain"
    summary = "Explain the reference rules of a C-API function or macro, in plain words."
    details = """\
For NAME: what it returns (a new reference, a borrowed one and from which container, or no
object), which arguments it steals and whether also when it fails, and the rule the
caller must follow. Without NAME, stopped in a C function: every C-API call that function
makes, each with its rule. Unknown names get the nearest matches. The facts come from
CPython's refcounts.dat (3.11 and main) with pyref's curated corrections."""
    examples = ("pyref explain PyList_SetItem", "pyref explain PyTuple_GetItem",
                "pyref explain")
    completer = gdb.COMPLETE_NONE

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument("name", metavar="NAME", nargs="?",
                            help="a C-API function or macro (default: the calls of the "
                                 "current C function)")

    def complete(self, text, word):
        if text.strip().startswith("-"):
            return super().complete(text, word)
        return [n for n in capi.names() + sorted(MACROS) if n.startswith(word or "")]

    def run(self, args, from_tty):
        if args.name:
            facts = explain(args.name)
            if facts is None:
                near = nearest(args.name)
                raise PyrefError("%s is not in the C-API table%s" % (
                    args.name, "; did you mean %s?" % ", ".join(near) if near else ""))
            self.write(json.dumps(facts, indent=1) + "\n" if args.json
                       else format_facts(facts))
            return
        target.require_target()
        func, names = calls_in_current_function()
        facts = [explain(n) for n in names]
        if args.json:
            self.write(json.dumps({"function": func, "calls": facts}, indent=1) + "\n")
            return
        if not facts:
            self.write("%s() makes no C-API call that changes reference ownership\n" % func)
            return
        self.write("C-API calls in %s():\n" % func)
        for f in facts:
            self.write("  %-28s %s\n" % (f["name"], f["rule"]))


def register():
    commands.install(Explain)
