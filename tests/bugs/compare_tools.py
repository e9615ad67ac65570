#!/usr/bin/env python3
"""pyref, AddressSanitizer and valgrind memcheck side by side on the bug corpus: a
markdown table (case | pyref | ASan | valgrind) of what each reports and which line of
the case's own code it names.

Usage: compare_tools.py [--python EXE] [--tools-python EXE] [--pyref-json FILE]
                        [-j N] [--keep DIR] [--fixed] [CASE ...]

  --python EXE        pyref's interpreter (run.py's default, python3.11d)
  --tools-python EXE  the interpreter ASan and valgrind run under (default: pyenv's 3.11
                      release build, else /usr/bin/python3.11): untraced, as they are used
  --pyref-json FILE   pyref's column from a `run.py --json FILE` run instead of a new run
  --fixed             also the fixed twins (by default the bugs and the explicit controls)

ASan: the case built untraced with gcc -fsanitize=address -fno-omit-frame-pointer, run
with LD_PRELOAD of gcc's libasan (the interpreter is not ASan-built), PYTHONMALLOC=malloc
(every object is a malloc block ASan tracks), detect_leaks=1 (LeakSanitizer reports at
exit) and handle_abort=1 (a report on abort() too). ASan's default unwinder follows frame
pointers, which the interpreters here are built without: a "freed by" or allocation
stack that passes through the interpreter often stops before the extension's frame.
Its DWARF unwinder (fast_unwind_on_malloc=0) reaches the extension in allocation and
leak stacks, but on these interpreters it ends a use-after-free report at "freed by"
with an internal error (CHECK failed: asan_descriptions.cpp "res.trace != 0"; gcc 12's
libasan and clang 14's runtime alike). So each case runs under ASan twice, once with
each unwinder, and the cell merges the two reports. valgrind: the untraced build under
`valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite`, PYTHONMALLOC=malloc.

For each tool a cell says what it reported first that involves the case's source (its
kind), and the lines of the case it names: in the error's own stack (at), in the stack
that freed the block (freed), where the block was allocated (alloc), in a leak report
(leak). A line is shown by its marker; ✓ marks a line a right answer may name
(tests/bugs/README.md). Reports that name no line of the case (CPython's own start-up
noise under valgrind, leaks of the interpreter at exit) are counted, not shown.
"""
import argparse
import concurrent.futures
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402
import scoring  # noqa: E402

pyreftest = run.pyreftest
ASAN_CFLAGS = ["-fsanitize=address", "-fno-omit-frame-pointer"]
# Two runs under ASan, their reports merged: the default unwinder (frame pointers) and
# the DWARF one (see the module's comment).
ASAN_RUNS = ("detect_leaks=1:handle_abort=1",
             "detect_leaks=1:handle_abort=1:fast_unwind_on_malloc=0")
VALGRIND = ["valgrind", "--tool=memcheck", "--leak-check=full",
            "--show-leak-kinds=definite", "--num-callers=40", "--error-exitcode=0"]
TIMEOUT = 600


def default_tools_python():
    hits = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11.*/bin/python3.11")))
    return hits[-1] if hits else "/usr/bin/python3.11"


# ---------------------------------------------------------------------------------------
# Reading the tools' reports
# ---------------------------------------------------------------------------------------
ASAN_FRAME = re.compile(r"^\s*#\d+ 0x[0-9a-f]+ in (\S+) (\S+?):(\d+)(?::\d+)?\s*$")
VG_FRAME = re.compile(r"^==\d+==\s+(?:at|by) 0x[0-9A-F]+: (\S+) \((\S+?):(\d+)\)\s*$")


def case_lines(frames, source):
    """The lines of `source` (a basename) among (function, file, line) frames, in order."""
    return [int(n) for _, f, n in frames if os.path.basename(f) == source]


def parse_asan(text, source):
    """{'kind', 'at', 'freed', 'alloc', 'leaks', 'other'} from ASan/LSan output: the error
    (its kind, the case's lines in its stack and in the freed-by and allocation stacks),
    the case's lines in leak reports, and how many leak reports name no line of it."""
    out = {"kind": None, "at": [], "freed": [], "alloc": [], "leaks": [], "other": 0}
    section = None
    frames = []

    def close():
        nonlocal frames
        lines = case_lines(frames, source)
        if section in ("at", "freed", "alloc"):
            out[section] += lines
        elif section == "leak":
            if lines:
                out["leaks"].append(lines[0])
            else:
                out["other"] += 1
        frames = []

    for ln in text.splitlines():
        m = re.search(r"ERROR: AddressSanitizer: (attempting [\w-]+|[\w-]+)", ln)
        if m and out["kind"] is None:
            close()
            out["kind"], section = m.group(1), "at"
            continue
        if re.search(r"^(freed by thread|previously allocated by thread|allocated by thread)",
                     ln.strip()):
            close()
            section = "freed" if ln.strip().startswith("freed") else "alloc"
            continue
        if re.match(r"^(Direct|Indirect) leak of", ln):
            close()
            section = "leak"
            continue
        m = ASAN_FRAME.match(ln)
        if m and section:
            frames.append(m.groups())
        elif not ln.strip() and frames:
            close()
            if section != "leak":
                section = None
    close()
    if out["kind"] is None and (out["leaks"] or out["other"]):
        out["kind"] = "leak"
    return out


def parse_valgrind(text, source):
    """The same fields from memcheck's output: the first error whose stacks (the error's,
    the block's free and allocation) name a line of the case, else the first invalid
    access or free, else a fatal signal; 'definitely lost' records. Invalid accesses and
    leaks naming no line of the case are counted in 'other'."""
    out = {"kind": None, "at": [], "freed": [], "alloc": [], "leaks": [], "other": 0,
           "signal": None}
    blocks, cur = [], None
    for ln in text.splitlines():
        body = re.sub(r"^==\d+== ?", "", ln)
        if not ln.startswith("=="):
            continue
        if not body.strip():
            cur = None
            continue
        m = VG_FRAME.match(ln)
        if m and cur is not None:
            cur["stacks"][-1][1].append(m.groups())
            continue
        if body.startswith(" "):      # a sub-header: Address ... free'd, Block was alloc'd
            if cur is not None:
                what = "freed" if "free'd" in body else "alloc" if "alloc'd" in body else None
                if what:
                    cur["stacks"].append((what, []))
            continue
        cur = {"head": body.strip(), "stacks": [("at", [])]}
        blocks.append(cur)
    first_invalid = None
    for b in blocks:
        head = b["head"]
        lines = {w: case_lines(fr, source) for w, fr in b["stacks"]}
        m = re.match(r"Process terminating with default action of signal \d+ \((\w+)\)", head)
        if m:
            out["signal"] = m.group(1)
            if out["kind"] is None and lines.get("at"):
                out["kind"], out["at"] = m.group(1), lines["at"]
            continue
        if "definitely lost" in head:
            if lines.get("at"):
                out["leaks"].append(lines["at"][0])
            else:
                out["other"] += 1
            continue
        if not re.match(r"(Invalid|Conditional jump|Use of uninitialised|Mismatched|"
                        r"Source and destination|Syscall param)", head):
            continue
        kind = re.sub(r" of size \d+", "", head)
        if any(lines.values()):
            if out["kind"] is None:
                out["kind"] = kind
                for w in ("at", "freed", "alloc"):
                    out[w] = lines.get(w, [])
        elif not head.startswith(("Conditional jump", "Use of uninitialised")):
            out["other"] += 1       # the interpreter's start-up reads of getrandom() data
            first_invalid = first_invalid or kind     # are not counted
    if out["kind"] is None:
        out["kind"] = first_invalid or out["signal"] or ("leak" if out["leaks"] else None)
    return out


def cell(rep, case):
    """A table cell: kind, then the case's named lines (by marker, ✓ on a right line)."""
    if rep is None:
        return "n/a"
    if rep.get("error"):
        return "error: " + rep["error"]
    marker = {v: k for k, v in case.lines.items()}
    right = {case.lines[m] for m in scoring.right_markers(case.expect)} \
        if case.expect["kind"] != "none" else set()

    def name(n):
        s = "@" + marker[n] if n in marker else ":%d" % n
        return s + (" ✓" if n in right else "")

    parts = []
    for w in ("at", "freed", "alloc"):
        if rep.get(w):
            parts.append("%s %s" % (w, name(rep[w][0])))
    if rep.get("leaks"):
        uniq = sorted(set(rep["leaks"]), key=rep["leaks"].index)
        parts.append("leak " + ", ".join(name(n) for n in uniq[:3]))
    kind = rep.get("kind") or "no report"
    text = kind + (": " + "; ".join(parts) if parts else
                   " (names no line of the case)" if rep.get("kind") else "")
    if rep.get("other"):
        text += " (+%d not naming the case)" % rep["other"]
    return text


def pyref_cell(res, case):
    if res is None:
        return "n/a"
    if res["score"] in ("skip", "error"):
        return "%s (%s)" % (res["score"], res.get("error"))
    verdict = res["verdict"].replace(" (why)", "").replace(" (leaks)", "")
    line = res["line"]
    return "%s%s → **%s**" % (verdict, "" if line == "-" else " " + line, res["score"])


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------
def run_tool(tool, row, python, keep):
    """Builds the case untraced (with ASan for 'asan') and runs its driver under the tool:
    the parsed report, or {'error': ...}."""
    case = row.case
    info = pyreftest.py_version(python)
    if run.applies(row, info):
        return {"error": run.applies(row, info)}
    work = os.path.join(keep, "%s-%s" % (row.name.replace("/", "-"), tool)) if keep else \
        tempfile.mkdtemp(prefix="pyref-tools-")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "mod"))
    try:
        flags = list(case.expect.get("cflags", ())) + (["-DFIXED"] if row.fixed else [])
        if tool == "asan":
            flags += ASAN_CFLAGS
        pyreftest.build_ext(case.source, python, os.path.join(work, "mod"), traced=False,
                            extra_cflags=flags)
        env = dict(os.environ, PYTHONMALLOC="malloc", PYTHONHASHSEED="0",
                   PYTHONDONTWRITEBYTECODE="1")
        cmd = [python, case.driver, os.path.join(work, "mod")]
        source = os.path.basename(case.source)
        if tool == "valgrind":
            return parse_valgrind(run_logged(VALGRIND + cmd, work, env, tool), source)
        reps = [parse_asan(run_logged(cmd, work, dict(env, LD_PRELOAD=libasan(),
                                                      ASAN_OPTIONS=opts),
                                      "asan%d" % i), source)
                for i, opts in enumerate(ASAN_RUNS)]
        return merge(*reps)
    except (AssertionError, subprocess.SubprocessError, OSError) as e:
        return {"error": "%s: %s" % (type(e).__name__, str(e).splitlines()[0])}
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def run_logged(cmd, work, env, name):
    """Runs cmd; its stderr (the tool's report), with stdout kept in WORK/NAME.log."""
    p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                       timeout=TIMEOUT)
    with open(os.path.join(work, name + ".log"), "w") as f:
        f.write(p.stdout + "\n---\n" + p.stderr)
    return p.stderr


def merge(fast, slow):
    """One report of two ASan runs: each field from the run that has it (the error's own
    stack from either, freed-by from the default unwinder, leaks from the DWARF one)."""
    out = dict(fast)
    out["kind"] = fast["kind"] if fast["kind"] not in (None, "leak") else \
        slow["kind"] or fast["kind"]
    for f in ("at", "freed", "alloc"):
        out[f] = fast[f] or slow[f]
    out["leaks"] = slow["leaks"] or fast["leaks"]
    out["other"] = slow["other"] if slow["leaks"] else fast["other"]
    return out


def libasan():
    return subprocess.check_output(["gcc", "-print-file-name=libasan.so"], text=True).strip()


def table(rows, pyref, asan, vg, python, tools_python):
    out = ["| case | pyref | ASan | valgrind |", "|---|---|---|---|"]
    for r in rows:
        out.append("| %s | %s | %s | %s |" % (
            r.name, pyref_cell(pyref.get(r.name), r.case), cell(asan.get(r.name), r.case),
            cell(vg.get(r.name), r.case)))
    out.append("")
    out.append("pyref: %s, traced build; ASan and valgrind: %s, untraced build." % (
        python, tools_python))
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=run.DEFAULT_PYTHON)
    ap.add_argument("--tools-python", default=default_tools_python())
    ap.add_argument("--pyref-json", metavar="FILE")
    ap.add_argument("-j", type=int, default=2, dest="jobs")
    ap.add_argument("--keep", metavar="DIR")
    ap.add_argument("--fixed", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write the parsed reports")
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args(argv)
    for exe in ("valgrind", "gcc"):
        if not shutil.which(exe):
            raise SystemExit("compare_tools.py: %s is not installed (make deps)" % exe)
    rows = [r for r in run.all_rows(args.cases) if args.fixed or not r.fixed]
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    if args.pyref_json:
        with open(args.pyref_json) as f:
            pyref = {r["name"]: r for r in json.load(f)["results"]}
    else:
        pyref = {r["name"]: r for r in run.run_all(rows, args.python, args.jobs, args.keep,
                                                   echo=False)}
    asan, vg = {}, {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        futs = {ex.submit(run_tool, t, r, args.tools_python, args.keep): (t, r.name)
                for r in rows for t in ("asan", "valgrind")}
        for f in concurrent.futures.as_completed(futs):
            tool, name = futs[f]
            (asan if tool == "asan" else vg)[name] = f.result()
            print("  %-8s %s" % (tool, name), file=sys.stderr, flush=True)
    sys.stdout.write(table(rows, pyref, asan, vg, args.python, args.tools_python))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"asan": asan, "valgrind": vg}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
