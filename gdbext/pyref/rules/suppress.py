"""Suppressions and thresholds of `pyref-run` (bin/pyref-run): which rows of a `pyref leaks`
report (its JSON, commands/leaks.py) a CI run does not count. gdb-free.

A suppression file, in the spirit of LeakSanitizer's: one rule a line, `#` starts a
comment, blank lines are ignored.

    leak:PATTERN            the function, the C file (its path, or its base name) or the
                            C-API call of the acquiring line matches PATTERN
    leak:FILE:LINE          the acquiring line itself (FILE: path or base name)

PATTERN is a shell glob (`*`, `?`, `[...]`): `leak:encode_*`, `leak:*/vendor/*`. A row that
any rule matches, or whose count is below --min-refs, is left out and counted under
"suppressed".
"""
import fnmatch
import os
import re

from pyref.errors import PyrefError
from pyref.rules import marks

_LINE_RULE = re.compile(r"^(?P<file>.+):(?P<line>\d+)$")


class Rule:
    def __init__(self, text, where):
        self.text = text
        self.where = where               # "FILE:N" of the rule, for messages
        m = _LINE_RULE.match(text)
        self.file, self.line = (m.group("file"), int(m.group("line"))) if m else (None, None)

    def matches(self, row):
        """Whether a report row ({"file", "line", "function", "api"}) is suppressed."""
        f = row.get("file") or ""
        names = (f, os.path.basename(f))
        if self.line is not None:
            return row.get("line") == self.line and \
                any(fnmatch.fnmatchcase(n, self.file) for n in names)
        return any(fnmatch.fnmatchcase(n, self.text) for n in
                   names + (row.get("function") or "", row.get("api") or "") if n)

    def __repr__(self):
        return "leak:" + self.text


def parse(text, name="<suppressions>"):
    """[Rule] of a suppression file's text. A line that is not `leak:SOMETHING` raises
    PyrefError naming the file and line."""
    rules = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        kind, sep, pattern = line.partition(":")
        if kind.strip() != "leak" or not sep or not pattern.strip():
            raise PyrefError("%s:%d: want leak:FUNCTION, leak:FILE or leak:FILE:LINE, got %r"
                             % (name, n, line))
        rules.append(Rule(pattern.strip(), "%s:%d" % (name, n)))
    return rules


def load(path):
    try:
        with open(path) as f:
            return parse(f.read(), path)
    except OSError as e:
        raise PyrefError("cannot read the suppression file %s: %s" % (path, e.strerror)) \
            from None


def _keep(row, rules, min_refs, suppressed):
    for r in rules:
        if r.matches(row):
            key = repr(r)
            suppressed[key] = suppressed.get(key, 0) + row["count"]
            return False
    if row["count"] < min_refs:
        suppressed["below --min-refs"] = suppressed.get("below --min-refs", 0) + row["count"]
        return False
    return True


def apply(rep, rules=(), min_refs=1):
    """The report `rep` (a `pyref leaks --json` dict) without the rows the rules suppress
    or that leak fewer than `min_refs` references: groups, the per-test rows ("tests",
    rules/marks.py) and the totals follow; rep["suppressed"] = {rule: references left out},
    rep["failing"] = the findings that fail the run (0: clean).
    Returns a new dict; `rep` is not changed."""
    out = dict(rep)
    suppressed = {}
    groups = [g for g in rep["groups"] if _keep(g, rules, min_refs, suppressed)]
    out["groups"] = groups
    out["total"] = sum(g["count"] for g in groups)
    out["sites"] = len({(g["file"], g["line"], g["function"], g["api"]) for g in groups})
    out["more_groups"] = rep.get("more_groups", 0) if groups else 0
    tests = rep.get("tests")
    if tests:
        out["tests"] = dict(tests, leaks=[t for t in tests["leaks"]
                                          if _keep(t, rules, min_refs, {})])
        tests = out["tests"]
    out["suppressed"] = suppressed
    # what fails a CI run: every leaked reference and the singletons' drifts, or under
    # --repeat what marks.failing() counts
    if tests and tests["repeat"] > 1:
        out["failing"] = marks.failing(tests)
    else:
        out["failing"] = out["total"] + (len(tests["drift"]) if tests else 0)
    return out
