"""`pyref explain`: the reference rules of a C-API call, in plain words, where the user is.

The facts come from the C-API table, pyref.rules.capi (CPython's refcounts.dat for 3.11
and main, plus pyref's curated corrections), and for the reference-count macros and the
singletons (Py_CLEAR, Py_RETURN_NONE, Py_None: their rules differ between 3.11 and 3.12+)
from pyref.rules.macros, which takes precedence. With no NAME, the calls of the current C
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
from pyref.rules import capi, macros

RETURNS = {"new": "a new reference", "borrowed": "a borrowed reference", "none": "no object",
           "null": "always NULL (an error indicator)"}
MAX_CALLS = 200


def explain(name):
    """dict of facts for one name, or None when unknown."""
    m = macros.get(name)
    if m is not None:
        return {"name": name, "kind": m.kind, "form": m.form, "expands": m.expands,
                "rule": m.rule, "versions": [{"versions": v, "text": t}
                                             for v, t in m.versions],
                "recorded": m.recorded, "see": list(m.see)}
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
    if "form" in f:  # a macro, a singleton (rules/macros.py)
        out = [f["form"], "  %-9s %s" % ({"macro": "macro:", "singleton": "object:"}.get(
            f["kind"], "function:"), f["expands"]), "  rule:     " + f["rule"]]
        out += ["  %-9s %s" % (v["versions"] + ":", v["text"]) for v in f["versions"]]
        out.append("  pyref:    recorded as " + f["recorded"] if f["recorded"].isupper()
                   else "  pyref:    " + f["recorded"])
        if f["see"]:
            out.append("  see:      " + ", ".join(f["see"]))
        return "\n".join(out) + "\n"
    out = [f.get("signature") or f["name"]]
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


def _known_names():
    """Every name `pyref explain` knows, each once."""
    return list(dict.fromkeys(macros.names() + capi.names()))


def nearest(name, n=5):
    """Up to `n` known names nearest to `name`, best first, each once: the same name in
    another case, then with other underscores, then by similarity (of the lower-case
    names, more for the same prefix such as PyList_, or for containing each other; less
    for a private _Py name)."""
    low = name.lower()
    squash = low.replace("_", "")
    family = low.split("_", 1)[0] + "_" if "_" in low else None
    if family == "py_":
        family = None  # every macro's: says nothing
    scored = []
    for cand in _known_names():
        c = cand.lower()
        if c == low or c.replace("_", "") == squash:
            scored.append((3.0 if c == low else 2.0, cand))
            continue
        score = difflib.SequenceMatcher(None, low, c).ratio()
        if family and c.startswith(family):
            score += 0.1
        if low in c or c in low:
            score += 0.15
        if cand.startswith("_") and not name.startswith("_"):
            score -= 0.15
        if score >= 0.65:
            scored.append((score, cand))
    scored.sort(key=lambda sc: (-sc[0], sc[1]))
    return [cand for _, cand in scored[:n]]


def calls_in_current_function():
    """(function name, [api names]) of the selected frame's function: the C-API calls and
    macros it makes that the C-API table or rules/macros.py knows, at most MAX_CALLS."""
    func, names = cframes.calls_of_selected_function()
    known = [n for n in names if macros.get(n) is not None or capi.get(n) is not None]
    return func, known[:MAX_CALLS]


class Explain(commands.Subcommand):
    name = "explain"
    summary = ("Explain the reference rules of a C-API function, macro or singleton, in plain "
               "words.")
    details = """\
For NAME: what it returns (a new reference, a borrowed one and from which container, or no
object), which arguments it steals and whether also when it fails, and the rule the
caller must follow. For a reference-count macro (Py_INCREF, Py_CLEAR, Py_SETREF,
Py_RETURN_NONE, ...) or a singleton (Py_None, Py_True, ...): what it does with references
and how that differs between 3.11 and earlier and 3.12+, where the singletons are immortal.
Without NAME, stopped in a C function: every C-API call that function makes, each with
its rule (in a frame of pyref's shim or of a CPython header: the function that called
it). Unknown names get the nearest matches. The facts come from CPython's refcounts.dat
(3.11 and main) with pyref's curated corrections."""
    examples = ("pyref explain PyList_SetItem", "pyref explain PyTuple_GetItem",
                "pyref explain Py_RETURN_NONE", "pyref explain")
    completer = gdb.COMPLETE_NONE

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument("name", metavar="NAME", nargs="?",
                            help="a C-API function, macro or singleton (default: the "
                                 "calls of the current C function)")

    def complete(self, text, word):
        if text.strip().startswith("-"):
            return super().complete(text, word)
        return [n for n in _known_names() if n.startswith(word or "")]

    def run(self, args, from_tty):
        if args.name:
            facts = explain(args.name)
            if facts is None:
                near = nearest(args.name)
                raise PyrefError("%s is not a C-API function, macro or singleton pyref "
                                 "knows%s" % (args.name, "; did you mean %s?" % ", ".join(near)
                                              if near else ""))
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
