"""The corpus's score of one answer: from a case's expectation and pyref's JSON output to
ok / wrong / unknown / false-blame (the rules are in tests/bugs/README.md).

Reads only what `pyref why --json` (or `bin/pyref-postmortem --json`) and
`pyref leaks --json` print, and only a few of their fields: `verdict` and `culprit`
(`file`, `line`) of the first, `groups` (`file`, `line`) of the second. A missing field
is no answer, never an error. Nothing here knows how pyref reaches its answer. No gdb.
"""
import os
from dataclasses import dataclass, field

# The expected kinds, by family: a verdict of the family at the right line is right.
# Leak kinds are answered by `pyref leaks` rows; every over-release and use-after-free
# kind by a `pyref why` verdict, whichever of its words pyref chooses.
RELEASE_VERDICTS = frozenset({"double-release", "premature-free", "use-after-free"})
FAMILY = {
    "leak": frozenset({"leak"}),
    "double-release": RELEASE_VERDICTS,
    "borrowed-decref": RELEASE_VERDICTS,
    "steal-then-decref": RELEASE_VERDICTS,
    "borrowed-return": RELEASE_VERDICTS,
    "premature-release": RELEASE_VERDICTS,
    "use-after-free": RELEASE_VERDICTS,
    "stolen-kept": RELEASE_VERDICTS,
    "borrowed-kept": RELEASE_VERDICTS,
    "none": frozenset(),
}
KINDS = tuple(FAMILY)
# `pyref why` verdicts that claim no refcount bug.
NO_BUG = frozenset({"unknown", "not-a-refcount-bug"})
# Fields of an expectation that name lines by marker; every line they name is part of
# the bug's story (a claim there is not a claim on correct code).
MARKER_FIELDS = ("culprit", "acquire", "lost", "origin")
LIST_FIELDS = ("also", "involved")
SCORES = ("ok", "wrong", "unknown", "false-blame")


@dataclass
class Claim:
    """One thing pyref said is a bug: a verdict, and the line it names (None: no line)."""
    kind: str
    file: str = None
    line: int = None
    command: str = "why"          # why | leaks
    label: str = ""               # the line as the table shows it
    grade: str = ""               # right | wrong | false | none (a verdict without a line)


@dataclass
class Score:
    score: str                    # one of SCORES
    verdict: str                  # the deciding answer's kind, or pyref's verdict
    line: str                     # the deciding answer's line, as a marker when it is one
    claims: list = field(default_factory=list)


def marker_set(expect, names):
    out = []
    for f in names:
        v = expect.get(f)
        if v is None:
            continue
        out += [v] if isinstance(v, str) else list(v)
    return out


def right_markers(expect):
    """The markers of the lines a right answer may name: the line to change and its
    equals (`also`); for a leak also where the lost reference was acquired and the path
    that lost it."""
    names = ["culprit", "also"] + (["acquire", "lost"] if expect["kind"] == "leak" else [])
    return marker_set(expect, names)


def involved_markers(expect):
    return marker_set(expect, MARKER_FIELDS + LIST_FIELDS)


def claims_of(why, leaks, primary, control):
    """The claims in pyref's output. `primary` is the command that answers the case
    (why or leaks); a confident not-a-refcount-bug from it on a real bug is a claim (it
    sends the user away from the bug), from the other command or on a control it is not."""
    out = []
    if isinstance(why, dict):
        verdict = why.get("verdict")
        c = why.get("culprit")
        if isinstance(c, dict) and c.get("line") is not None:
            out.append(Claim(str(verdict), c.get("file"), c.get("line"), "why"))
        elif verdict and verdict not in NO_BUG:
            out.append(Claim(str(verdict), None, None, "why"))
        elif verdict == "not-a-refcount-bug" and primary == "why" and not control:
            out.append(Claim(verdict, None, None, "why"))
    if isinstance(leaks, dict):
        for g in leaks.get("groups") or ():
            if isinstance(g, dict):
                out.append(Claim("leak", g.get("file"), g.get("line"), "leaks"))
    return out


def score(expect, lines, source, why=None, leaks=None, primary=None):
    """The Score of pyref's answer (`why`, `leaks`: the parsed JSON, None when the
    command was not run or printed none) on a case.

    expect   the case's expectation (expect.toml; `kind`, markers)
    lines    {marker: line} of the case's source
    source   the case's C file name (a claim elsewhere is never on the case's code)
    primary  why | leaks: the command that answers the case (default: leaks for a leak)
    """
    kind = expect["kind"]
    control = kind == "none"
    primary = primary or ("leaks" if kind == "leak" else "why")
    right = {lines[m] for m in right_markers(expect)}
    involved = {lines[m] for m in involved_markers(expect)}
    marker_of = {v: k for k, v in lines.items()}
    claims = claims_of(why, leaks, primary, control)
    for c in claims:
        here = c.file is not None and os.path.basename(str(c.file)) == source
        if c.line is None:
            c.label = "-"
        elif here:
            c.label = ":%s" % c.line + (" @" + marker_of[c.line] if c.line in marker_of else "")
        else:
            c.label = "%s:%s" % (os.path.basename(str(c.file or "?")), c.line)
        if control or (here and c.line not in involved):
            c.grade = "false"
        elif c.line is None:
            c.grade = "none" if c.kind in FAMILY[kind] else "wrong"
        elif here and c.kind in FAMILY[kind] and c.line in right:
            c.grade = "right"
        else:
            c.grade = "wrong"
    # the primary command's claims first: they are what the table shows when grades tie
    ordered = sorted(claims, key=lambda c: c.command != primary)
    for grade, name in (("false", "false-blame"), ("wrong", "wrong"), ("right", "ok")):
        hit = [c for c in ordered if c.grade == grade]
        if hit:
            return Score(name, "%s (%s)" % (hit[0].kind, hit[0].command), hit[0].label, claims)
    if control:
        return Score("ok", _verdict(why, leaks, primary), "-", claims)
    return Score("unknown", _verdict(why, leaks, primary), "-", claims)


def _verdict(why, leaks, primary):
    """What pyref said when it named nothing: the primary command's verdict."""
    if primary == "leaks":
        if isinstance(leaks, dict):
            return "no leak (leaks)"
        return "no answer"
    if isinstance(why, dict):
        return "%s (why)" % why.get("verdict", "?")
    return "no answer"
