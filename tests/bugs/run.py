#!/usr/bin/env python3
"""Scores pyref on the bug corpus (`make diagnose`): each case of tests/bugs/cases/ built
traced, run to its observation point, diagnosed by pyref from the outside (its JSON
output), scored by tests/bugs/scoring.py. One line per case, then totals.

Usage: run.py [--python EXE] [-j N] [--json FILE] [--markdown FILE] [--keep DIR] [CASE ...]

  --python EXE  the interpreter (default /usr/bin/python3.11d); a release build runs
                every case with PYTHONMALLOC=debug, so that a freed object is poisoned
  -j N          cases run at once (default 2)
  --json FILE   also write every row, with pyref's JSON, to FILE
  --markdown FILE  also write the table as markdown (tests/bugs/BASELINE.md)
  --keep DIR    keep each case's build, core and gdb output under DIR
  CASE          only these cases (a case's name, or NAME/fixed for its fixed twin)

Observations (a case's expect.toml `observe`):
  core   the driver crashes; the kernel's core goes to `bin/pyref-postmortem --json`
  live   the driver runs under gdb to a stop (`stop`: a function, default Py_FinalizeEx,
         where the script has finished and nothing is finalized yet; or `@marker`, a
         breakpoint on that line of the case); `pyref why --json` and
         `pyref leaks --json` run on the stopped process
  gcore  the same stop, `gcore`, and both commands on the core
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))          # tests/: pyreftest
sys.path.insert(0, HERE)
import pyreftest  # noqa: E402
import scoring  # noqa: E402

CASES = os.path.join(HERE, "cases")
POSTMORTEM = os.path.join(pyreftest.ROOT, "bin", "pyref-postmortem")
DEFAULT_PYTHON = "/usr/bin/python3.11d"
OBSERVATIONS = ("core", "live", "gcore")
DEFAULT_STOP = "Py_FinalizeEx"
TIMEOUT = 300


class Case:
    """One directory of tests/bugs/cases: NAME.c, driver.py, expect.toml."""

    def __init__(self, name):
        self.name = name
        self.dir = os.path.join(CASES, name)
        with open(os.path.join(self.dir, "expect.toml"), "rb") as f:
            self.expect = tomllib.load(f)
        self.source = os.path.join(self.dir, name + ".c")
        self.driver = os.path.join(self.dir, "driver.py")
        self.lines = pyreftest.marker_lines(self.source)
        check_expect(self)

    def rows(self):
        """The case's runs: one per observation, and the fixed twin (a control) when the
        source has one."""
        obs = self.expect.get("observe", "core")
        obs = [obs] if isinstance(obs, str) else list(obs)
        out = [Row(self, o, False, len(obs) > 1) for o in obs]
        if "fixed" in self.expect:
            out.append(Row(self, self.expect["fixed"], True, False))
        return out


def check_expect(case):
    """A clear error for a malformed expectation: an unknown kind, a marker the source
    lacks, an observation that does not exist."""
    e = case.expect
    where = os.path.join(case.dir, "expect.toml")
    if e.get("kind") not in scoring.FAMILY:
        raise SystemExit("%s: kind must be one of %s" % (where, ", ".join(scoring.KINDS)))
    if e["kind"] != "none" and not e.get("culprit"):
        raise SystemExit("%s: a bug needs its culprit marker" % where)
    stop = e.get("stop", "")
    for m in scoring.involved_markers(e) + ([stop[1:]] if stop.startswith("@") else []):
        if m not in case.lines:
            raise SystemExit("%s: marker @%s is not in %s" % (where, m, case.source))
    obs = e.get("observe", "core")
    for o in ([obs] if isinstance(obs, str) else obs) + ([e["fixed"]] if "fixed" in e else []):
        if o not in OBSERVATIONS:
            raise SystemExit("%s: observe %r is not one of %s" % (where, o, OBSERVATIONS))


class Row:
    """One run of a case: its observation, and whether it is the fixed twin (built with
    -DFIXED, expected healthy)."""

    def __init__(self, case, observe, fixed, suffix):
        self.case, self.observe, self.fixed = case, observe, fixed
        self.name = case.name + ("/fixed" if fixed else (":" + observe if suffix else ""))
        self.expect = dict(case.expect)
        if fixed:
            self.expect = {"kind": "none", "python": case.expect.get("python"),
                           "build": case.expect.get("build")}

    def expected_label(self):
        e = self.expect
        if e["kind"] == "none":
            return "none"
        return "%s :%d @%s" % (e["kind"], self.case.lines[e["culprit"]], e["culprit"])


# ---------------------------------------------------------------------------------------
# Interpreters
# ---------------------------------------------------------------------------------------
def version_ok(spec, version):
    """Whether (major, minor) meets a spec like ">=3.12", "<=3.11", ">=3.10,<3.13"."""
    for part in (spec or "").split(","):
        m = re.fullmatch(r"\s*(<=|>=|==|<|>)\s*(\d+)\.(\d+)\s*", part)
        if not part.strip():
            continue
        if not m:
            raise SystemExit("bad python spec %r" % spec)
        want = (int(m.group(2)), int(m.group(3)))
        ok = {"<=": version <= want, ">=": version >= want, "==": version == want,
              "<": version < want, ">": version > want}[m.group(1)]
        if not ok:
            return False
    return True


def applies(row, info):
    """None when the row runs on this interpreter, else why not."""
    major, minor, debug = info
    spec = row.expect.get("python")
    if not version_ok(spec, (major, minor)):
        return "needs python %s" % spec
    build = row.expect.get("build")
    if build == "debug" and not debug:
        return "needs a debug interpreter"
    if build == "release" and debug:
        return "needs a release interpreter"
    return None


# ---------------------------------------------------------------------------------------
# Running one row
# ---------------------------------------------------------------------------------------
def case_env(row, info):
    """The driver's environment: a fixed hash seed (with address randomization off, see
    observe_core, a case crashes the same way on every run)."""
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    if not info[2]:
        env["PYTHONMALLOC"] = "debug"
    env.update({k: str(v) for k, v in row.case.expect.get("env", {}).items()})
    return env


def json_after(text, marker):
    """The JSON object printed after `echo @@ marker` (pyref prints `{` and `}` on lines of
    their own), or None."""
    part = text.split("@@ %s\n" % marker, 1)
    if len(part) < 2:
        return None
    body = part[1].split("\n@@ ", 1)[0]
    m = re.search(r"^\{$.*?^\}$", body, re.S | re.M)
    if not m:
        return None
    try:
        return json.loads(m.group(0))
    except ValueError:
        return None


COMMANDS = ["echo @@ why\\n", "pyref why --json", "echo @@ leaks\\n", "pyref leaks --json",
            "echo @@ end\\n"]


def observe_core(row, python, moddir, work, env):
    try:                           # setarch -R: no address randomization (gdb's default)
        core, proc = pyreftest.run_to_core("setarch", ["-R", python, row.case.driver, moddir],
                                           cwd=work, env=env, timeout=TIMEOUT)
    except AssertionError as e:
        return None, None, "no crash: %s" % str(e).splitlines()[0]
    p = subprocess.run([POSTMORTEM, "--json", python, core], capture_output=True, text=True,
                       timeout=TIMEOUT)
    out = p.stdout + p.stderr
    log(work, "postmortem", (proc.stderr or "")[-4000:] + "\n---\n" + out)
    try:
        why = json.loads(p.stdout) if p.stdout.strip() else None
    except ValueError:
        why = None
    return why, None, None if why is not None else "postmortem printed no JSON"


def stop_location(case):
    """The gdb location of a case's stop: a function, or `@marker` for a line of its
    source."""
    stop = case.expect.get("stop", DEFAULT_STOP)
    if stop.startswith("@"):
        return "%s:%d" % (os.path.basename(case.source), case.lines[stop[1:]])
    return stop


def observe_stop(row, python, moddir, work, env):
    stop = stop_location(row.case)
    pre = ["set environment %s %s" % kv for kv in env.items()] + [
        "set breakpoint pending on", "break " + stop, "run"]
    args = ["--args", python, row.case.driver, moddir]
    if row.observe == "live":
        out = pyreftest.gdb_batch(pre + COMMANDS, args=args, cwd=work, timeout=TIMEOUT)
    else:
        core = os.path.join(work, "core.gcore")
        first = pyreftest.gdb_batch(pre + ["gcore " + core, "kill"], args=args, cwd=work,
                                    timeout=TIMEOUT, load_pyref=False)
        if not os.path.exists(core):
            log(work, "gdb", first)
            return None, None, "gcore wrote no core"
        out = first + "\n---\n" + pyreftest.gdb_batch(COMMANDS, args=[python, core],
                                                      cwd=work, timeout=TIMEOUT)
    log(work, "gdb", out)
    if not re.search(r"^(Thread \S+ \"[^\"]*\" hit )?Breakpoint 1(\.\d+)?, ", out, re.M):
        m = re.search(r"^Program (received signal \S+|terminated with signal \S+|exited.*)",
                      out, re.M)
        return None, None, "did not stop at %s (%s)" % (stop, m.group(1) if m else "?")
    ran = out.split("@@ why", 1)[0]
    if "Traceback (most recent call last):" in ran:    # the driver failed before its stop
        tail = [ln for ln in ran.splitlines() if ln.strip()]
        return None, None, "the driver raised: %s" % (tail[-1] if tail else "?")
    why, leaks = json_after(out, "why"), json_after(out, "leaks")
    err = None if why is not None or leaks is not None else "pyref printed no JSON"
    return why, leaks, err


def log(work, name, text):
    with open(os.path.join(work, name + ".log"), "w") as f:
        f.write(text)


def run_row(row, python, info, keep=None):
    """Builds, runs and scores one row: a dict with name, expected, score, verdict, line,
    seconds, and pyref's JSON (why, leaks); `error` when the case did not reproduce."""
    t0 = time.monotonic()
    res = {"name": row.name, "expected": row.expected_label(), "kind": row.expect["kind"],
           "observe": row.observe, "why": None, "leaks": None, "error": None}
    skip = applies(row, info)
    if skip:
        res.update(score="skip", verdict="-", line="-", error=skip, seconds=0.0)
        return res
    if keep:                                   # one directory per row, named after it
        work = os.path.join(keep, re.sub(r"[/:]", "-", row.name))
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
    else:
        work = tempfile.mkdtemp(prefix="pyref-bug-")
    try:
        moddir = os.path.join(work, "mod")
        os.mkdir(moddir)
        flags = list(row.case.expect.get("cflags", ())) + (["-DFIXED"] if row.fixed else [])
        pyreftest.build_ext(row.case.source, python, moddir, extra_cflags=flags)
        env = case_env(row, info)
        obs = observe_core if row.observe == "core" else observe_stop
        why, leaks, err = obs(row, python, moddir, work, env)
    except (AssertionError, subprocess.SubprocessError, OSError) as e:
        why, leaks, err = None, None, "%s: %s" % (type(e).__name__, str(e).splitlines()[0])
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    res.update(why=why, leaks=leaks, error=err, seconds=round(time.monotonic() - t0, 1))
    if err:
        res.update(score="error", verdict="-", line="-")
        return res
    s = scoring.score(row.expect, row.case.lines, os.path.basename(row.case.source),
                      why=why, leaks=leaks)
    res.update(score=s.score, verdict=s.verdict, line=s.line,
               claims=[{"kind": c.kind, "line": c.label, "command": c.command,
                        "grade": c.grade} for c in s.claims])
    return res


# ---------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------
def all_cases():
    return [Case(n) for n in sorted(os.listdir(CASES))
            if os.path.isfile(os.path.join(CASES, n, "expect.toml"))]


def all_rows(names=()):
    rows = [r for c in all_cases() for r in c.rows()]
    if names:
        wanted = set(names)
        rows = [r for r in rows if r.name in wanted or r.case.name in wanted]
        missing = wanted - {r.name for r in rows} - {r.case.name for r in rows}
        if missing:
            raise SystemExit("no such case: %s" % ", ".join(sorted(missing)))
    return rows


FORMAT = "%-32s %-36s %-26s %-22s %s"


def print_row(r):
    print(FORMAT % (r["name"], r["expected"], r["verdict"], r["line"],
                    r["score"] + ("  (%s)" % r["error"] if r.get("error") else "")),
          flush=True)


def totals(results):
    """Counts per score, for the bugs and for the controls (fixed twins included)."""
    out = {}
    for part, pick in (("bugs", lambda r: r["kind"] != "none"),
                       ("controls", lambda r: r["kind"] == "none")):
        rs = [r for r in results if pick(r) and r["score"] != "skip"]
        counts = {s: sum(r["score"] == s for r in rs) for s in scoring.SCORES + ("error",)}
        counts["total"] = len(rs)
        out[part] = counts
    return out


def summary_lines(results):
    t = totals(results)
    out = []
    for part in ("bugs", "controls"):
        c = t[part]
        right = 100.0 * c["ok"] / c["total"] if c["total"] else 0.0
        out.append("%-9s %3d: ok %d (%.0f%%), wrong %d, unknown %d, false-blame %d%s" % (
            part, c["total"], c["ok"], right, c["wrong"], c["unknown"], c["false-blame"],
            ", error %d" % c["error"] if c["error"] else ""))
    skipped = [r["name"] for r in results if r["score"] == "skip"]
    if skipped:
        out.append("skipped   %3d: %s" % (len(skipped), ", ".join(skipped)))
    return out


GRADE_MARK = {"right": "✓", "wrong": "~", "false": "✗", "none": "·"}


def markdown(results):
    """The rows and totals as a markdown table (tests/bugs/BASELINE.md), with every claim
    pyref made on the row and its grade (✓ right, ~ wrong, ✗ false, · no line)."""
    out = ["| case | expected | verdict | line | score | all claims |",
           "|---|---|---|---|---|---|"]
    for r in results:
        score = r["score"] + (" (%s)" % r["error"] if r.get("error") else "")
        claims = ", ".join("%s %s %s" % (c["kind"], c["line"], GRADE_MARK[c["grade"]])
                           for c in r.get("claims") or ())
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            r["name"], r["expected"], r["verdict"], r["line"], score, claims or "-"))
    return "\n".join(out + [""] + summary_lines(results)) + "\n"


def run_all(rows, python, jobs=2, keep=None, echo=True):
    info = pyreftest.py_version(python)
    pyreftest.ensure_runtime()
    if echo:
        print(FORMAT % ("case", "expected", "verdict", "line", "score"), flush=True)
    results = [None] * len(rows)
    shown = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        futs = {ex.submit(run_row, r, python, info, keep): i for i, r in enumerate(rows)}
        for f in concurrent.futures.as_completed(futs):
            results[futs[f]] = f.result()
            while echo and shown < len(rows) and results[shown] is not None:  # in order
                print_row(results[shown])
                shown += 1
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=DEFAULT_PYTHON)
    ap.add_argument("-j", type=int, default=2, dest="jobs")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--keep", metavar="DIR")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table as markdown")
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args(argv)
    python = shutil.which(args.python) or args.python
    if not os.path.exists(python):
        raise SystemExit("run.py: no interpreter %s" % args.python)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    rows = all_rows(args.cases)
    t0 = time.monotonic()
    results = run_all(rows, python, args.jobs, args.keep)
    print("\n%s, %d rows in %.0f s" % (python, len(rows), time.monotonic() - t0))
    for line in summary_lines(results):
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": python, "results": results, "totals": totals(results)},
                      f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
