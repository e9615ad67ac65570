"""What the MARK records (pyref_mark, docs/ring-format.md "Marks") say of a leak report:
which test acquired each leaked reference, what grows with repetition, and how the
singletons' counts drifted over each test. Facts in (the marks as Ring.marks() gives them,
the leaked acquisitions as (site, Event) pairs), findings out; gdb-free.

Attribution: a reference belongs to the last mark before its acquisition in `seq` order
(one order over every thread). After `test:start ID` it is ID's; after `test:end ID` it
is no test's (collection, imports, session fixtures: "outside any test"); after a label
of the user's, it is that label's. Before the first mark it is no test's, unless the ring
wrapped: then the marks before it were overwritten and its test is unknown.

Repetition (--repeat N: the plugin runs each test N times, its marks say `ID #K`): a leak
repeats, a cache does not. For each test and acquiring line, the references leaked in
run K are counted; the line is reported when every run after the first leaked at least
one (the first may fill a cache, so it is not asked to), as "grows by M per run" with M
the fewest of runs 2..N; otherwise it is steady (listed apart, not a failure). References
acquired outside any test are not repeated, so they are not judged under --repeat; those
of unknown test (a wrapped ring) are, since nothing says they do not grow.

Singletons (≤ 3.11, where None, True, False... are counted): the plugin writes, before a
test's end mark, `test:drift NAME=DELTA...`: the change of sys.getrefcount() over the test
function's call. A drift of DRIFT_MIN or more either way, in every run (every run after the first,
under --repeat), is reported: "test_parent: None's count fell by 100" is a `return Py_None`
without Py_INCREF, which leaves no record in the ring.
"""
import os
import re
from bisect import bisect_left

# Smaller drifts are left alone: a test may keep a few references to None past its end
# (a global list, a cache), and the plugin measures the test function's call exactly.
DRIFT_MIN = 10
_RUN = re.compile(r"^(?P<test>.*) #(?P<k>\d+)$")


def parse(label):
    """(kind, test, run, extra) of a label: kind "start", "end", "drift" (extra: {name:
    delta}) or "label" (a label of the user's: test is the label itself); run is K of
    `#K` (1 without)."""
    kind, _, rest = label.partition(" ")
    if kind in ("test:start", "test:end"):
        m = _RUN.match(rest)
        test, run = (m.group("test"), int(m.group("k"))) if m else (rest, 1)
        return kind[5:], test, run, None
    if kind == "test:drift":
        deltas = {}
        for item in rest.split():
            name, _, d = item.partition("=")
            try:
                deltas[name] = int(d)
            except ValueError:
                continue
        return "drift", None, 1, deltas
    return "label", label, 1, None


class Timeline:
    """The marks of one report, in seq order, answering which test a seq belongs to."""

    def __init__(self, marks):
        marks = sorted(marks)
        self.seqs = [m[0] for m in marks]
        self.parsed = [parse(m[2]) for m in marks]
        self.repeat = max([p[2] for p in self.parsed if p[0] == "start"], default=1)

    def owner(self, seq):
        """(test, run) the record with this seq belongs to; (None, 0) outside any test."""
        i = bisect_left(self.seqs, seq) - 1
        while i >= 0 and self.parsed[i][0] == "drift":     # inside the test it ends
            i -= 1
        if i < 0:
            return None, 0
        kind, test, run, _ = self.parsed[i]
        if kind == "end":
            return None, 0
        return test, run

    def drifts(self):
        """{test: [{name: delta}, one per run]} from the drift marks."""
        out = {}
        for i, p in enumerate(self.parsed):
            if p[0] == "drift":
                test, run = self.owner(self.seqs[i] + 1)
                if test is not None:
                    out.setdefault(test, {})[run] = p[3]
        # a run without a drift mark had none
        return {t: [runs.get(k, {}) for k in range(1, max(max(runs), self.repeat) + 1)]
                for t, runs in out.items()}


def _site_key(site):
    return {"file": site[0], "line": site[1], "function": site[2], "api": site[3]}


def by_test(marks, leaked, wrapped=False):
    """The "tests" part of a `pyref leaks` report, or None without marks.

    marks: [(seq, thread, label, whole)] (Ring.marks() of every ring);
    leaked: [((file, line, function, api), Event)], the leaked acquisitions;
    wrapped: whether the ring lost its oldest records (then marks older than those it holds
        are gone too, and what was acquired before its oldest mark has no known test).
    Returns {"repeat": N, "leaks": rows that count (tests' leaks, or what grows under
    --repeat), "steady": rows that did not grow, "outside": references acquired outside
    any test, "unknown": references acquired before the oldest mark of a wrapped ring,
    "drift": [{"test", "name", "deltas"}]}; a row is {"test", "file", "line", "function",
    "api", "count", "runs" (per run), "per_run" (under --repeat)}."""
    if not marks:
        return None
    tl = Timeline(marks)
    counts = {}
    outside = unknown = 0
    for site, e in leaked:
        test, run = tl.owner(e.seq)
        if test is None:
            if wrapped and e.seq < tl.seqs[0]:
                unknown += 1
            else:
                outside += 1
            continue
        runs = counts.setdefault((test, site), [0] * tl.repeat)
        runs[min(run, tl.repeat) - 1] += 1
    rows, steady = [], []
    for (test, site), runs in counts.items():
        row = dict(_site_key(site), test=test, count=sum(runs), runs=runs)
        if tl.repeat > 1:
            row["per_run"] = min(runs[1:])
            (rows if row["per_run"] > 0 else steady).append(row)
        else:
            rows.append(row)
    order = (lambda r: (-r["count"], r["test"], r["file"] or "", r["line"] or 0))
    rows.sort(key=order)
    steady.sort(key=order)
    drift = []
    for test, runs in sorted(tl.drifts().items()):
        judged = runs[1:] if len(runs) > 1 else runs
        for name in sorted({n for r in runs for n in r}):
            deltas = [r.get(name, 0) for r in runs]
            tail = [r.get(name, 0) for r in judged]
            if all(d >= DRIFT_MIN for d in tail) or all(d <= -DRIFT_MIN for d in tail):
                drift.append({"test": test, "name": name, "deltas": deltas})
    return {"repeat": tl.repeat, "leaks": rows, "steady": steady, "outside": outside,
            "unknown": unknown, "drift": drift}


def failing(tests):
    """How many findings of by_test() fail a CI run under --repeat: the rows that grow,
    what a wrapped ring leaves without a known test (it may grow; nothing says it does
    not), and the drifts."""
    if not tests:
        return 0
    return sum(r["count"] for r in tests["leaks"]) + tests["unknown"] + len(tests["drift"])


def row_site(r):
    """'file.c:LINE (API)' of a row: the file's base name, as the leak table shows it."""
    s = "%s:%s" % (os.path.basename(r["file"]), r["line"]) if r["file"] else "inside CPython"
    return s + (" (%s)" % r["api"] if r["api"] else "")


def text_lines(tests):
    """The per-test lines of `pyref leaks` (and pyref-run) for by_test()'s dict."""
    if not tests:
        return []
    out = []
    rep = tests["repeat"]
    if tests["leaks"]:
        out.append("by test%s:" % (" (each run %d times; what grows with each run)" % rep
                                   if rep > 1 else ""))
        for r in tests["leaks"]:
            if rep > 1:
                out.append("  %s: grows by %d refs per run from %s (runs: %s)" % (
                    r["test"], r["per_run"], row_site(r), " ".join(map(str, r["runs"]))))
            else:
                out.append("  %s: %d refs from %s" % (r["test"], r["count"], row_site(r)))
    for r in tests["steady"]:
        out.append("  steady, not a leak: %s: %d refs from %s in the first run only (runs: "
                   "%s): a cache" % (r["test"], r["count"], row_site(r),
                                     " ".join(map(str, r["runs"]))))
    if tests["outside"]:
        out.append("  outside any test: %d refs (collection, imports, session fixtures)%s"
                   % (tests["outside"], "; not repeated, not judged" if rep > 1 else ""))
    if tests["unknown"]:
        out.append("  test unknown: %d refs acquired before the oldest mark the ring still "
                   "holds (a larger --ring keeps more)" % tests["unknown"])
    for d in tests["drift"]:
        last = d["deltas"][-1]
        out.append("  %s: %s's count %s by %d%s (no record in the ring: a reference "
                   "returned or dropped without Py_INCREF/Py_DECREF)" % (
                       d["test"], d["name"], "fell" if last < 0 else "rose", abs(last),
                       " in each run (%s)" % " ".join("%+d" % x for x in d["deltas"])
                       if len(d["deltas"]) > 1 else ""))
    return out
