#!/usr/bin/python3
"""`make bench`: the cost of a recorded Py_INCREF/Py_DECREF against an untraced one.

For each release interpreter found (Debian's /usr/bin/python3.11, pyenv 3.10-3.13, and the
Debian unstable 3.14 and 3.15 release builds and the free-threaded 3.13t debug build that
`make deps` prepares under ~/.cache/pyref, interpreters.json), builds bench/micro_ext.c twice into build/bench/<interpreter>/ — untraced (the
interpreter's Python.h) and traced (pyref's shim, `bin/pyref-config --cflags/--libs`) —
with the same compiler flags, then times both in one process, rounds interleaved
(bench/driver.py), and prints the median ns per transition of each and the difference:
the cost of recording one transition. The target: <= 2 ns per recorded transition (issue 21; it was 3 ns).

Extra rows, on the first interpreter only: the traced loop with a ring that fits in L2
(PYREF_RING_RECORDS=4096), with PYREF=off, and both builds at -O0 and at -Og (what users'
debug builds use) instead of -O2.

  bench/run.py              print the table
  bench/run.py --update     ... and rewrite the generated part of bench/RESULTS.md
"""
import argparse
import datetime
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, "build", "bench")
LIBPYREF = os.path.join(ROOT, "build", "libpyref.so")
PYREF_CONFIG = os.path.join(ROOT, "bin", "pyref-config")
RESULTS = os.path.join(HERE, "RESULTS.md")
SRC = os.path.join(HERE, "micro_ext.c")
TARGET_NS = 2.0
CFLAGS = ["-O2", "-g", "-fPIC", "-shared", "-Wall"]
BEGIN = "<!-- bench:begin (bench/run.py --update rewrites this part) -->"
END = "<!-- bench:end -->"


# ---------------------------------------------------------------------------------------
# Interpreters and builds
# ---------------------------------------------------------------------------------------
def interpreters():
    """[(label, executable, extra cflags)]: Debian's python3.11 (if its headers are
    installed), the newest pyenv 3.10, 3.11, 3.12, 3.13, then the prepared 3.14, 3.15 and
    3.13t of ~/.cache/pyref/interpreters.json (`make deps`; their pyconfig.h directory is
    the manifest's cflags)."""
    found = []
    if (os.path.exists("/usr/bin/python3.11")
            and os.path.exists("/usr/include/python3.11/Python.h")):
        found.append(("3.11 Debian", "/usr/bin/python3.11", []))
    for minor in (10, 11, 12, 13):
        hits = glob.glob(os.path.expanduser("~/.pyenv/versions/3.%d.*/bin/python3.%d"
                                            % (minor, minor)))
        hits = [h for h in hits if re.search(r"/3\.%d\.\d+/" % minor, h)]
        hits.sort(key=lambda h: [int(x) for x in re.search(r"/3\.(\d+)\.(\d+)/", h).groups()])
        if hits:
            ver = re.search(r"/(3\.\d+\.\d+)/", hits[-1]).group(1)
            found.append(("%s pyenv" % ver, hits[-1], []))
    return found + prepared()


MANIFEST = os.path.expanduser("~/.cache/pyref/interpreters.json")
PREPARED = (("3.14", "%s Debian sid"), ("3.15", "%s Debian sid"),
            ("3.13t", "%st free-threaded debug build"))


def prepared(ids=PREPARED):
    """[(label, executable, extra cflags)] of the manifest's interpreters among `ids` that
    exist; [] without the manifest."""
    try:
        with open(MANIFEST) as f:
            info = json.load(f)["interpreters"]
    except (OSError, ValueError, KeyError):
        return []
    out = []
    for ident, what in ids:
        i = info.get(ident)
        if i and os.path.exists(i["executable"]):
            out.append((what % i["version"], i["executable"],
                        list(i.get("cflags") or [])))
    return out


def py_eval(python, expr):
    return subprocess.check_output([python, "-c", "import sysconfig; print(%s)" % expr],
                                   text=True).strip()


def build(label, python, shim=None, extra=(), opt=None):
    """Builds micro_untraced and micro_traced for `python`, both with `extra` flags and
    `opt` (an -O flag in place of CFLAGS' -O2); returns their directory. With `shim`, the
    traced build takes that directory's Python.h shim instead of pyref's (a prototype; the
    directory name gets its basename). Raises subprocess.CalledProcessError (with the
    compiler's output) on failure."""
    name = re.sub(r"[^\w.]+", "-", label) + ("-" + os.path.basename(shim) if shim else "")
    outdir = os.path.join(BUILD, name)
    os.makedirs(outdir, exist_ok=True)
    suffix = py_eval(python, "sysconfig.get_config_var('EXT_SUFFIX')")
    include = py_eval(python, "sysconfig.get_paths()['include']")
    if shim:
        cflags = ["-I" + shim, "-I" + os.path.join(ROOT, "c_helpers", "include"),
                  "-I" + include]
    else:
        cflags = subprocess.check_output([PYREF_CONFIG, "--python", python, "--cflags"],
                                         text=True).split()
    libs = subprocess.check_output([PYREF_CONFIG, "--libs"], text=True).split()
    untraced = os.path.join(outdir, "micro_untraced" + suffix)
    traced = os.path.join(outdir, "micro_traced" + suffix)
    flags = [opt if (opt and f == "-O2") else f for f in CFLAGS] + list(extra)
    cmds = [
        ["gcc"] + flags + ["-I" + include, "-DMODNAME=micro_untraced", SRC, "-o", untraced],
        ["gcc"] + flags + cflags + ["-DMODNAME=micro_traced", SRC, "-o", traced] + libs,
    ]
    for cmd in cmds:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    return outdir


def measure(python, moddir, pairs, rounds, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYREF")}
    full_env.update(env or {})
    out = subprocess.run([python, os.path.join(HERE, "driver.py"), moddir, LIBPYREF,
                          str(pairs), str(rounds)],
                         check=True, capture_output=True, text=True, env=full_env).stdout
    return json.loads(out.strip().splitlines()[-1])


CG_PAIRS = 20000
CG_SCRIPT = ("import sys; sys.path.insert(0, sys.argv[1]); m = __import__(sys.argv[2]); "
             "objs = [object() for _ in range(8)]; m.pairs(objs, 1000); "
             "m.pairs(objs, int(sys.argv[3]))")


def instructions(python, moddir, module, env=None):
    """Instructions per transition of `module`.pairs() under callgrind (inside pairs()
    only, --toggle-collect): deterministic, whatever else the machine runs. None without
    valgrind."""
    if not shutil.which("valgrind"):
        return None
    cg = os.path.join(moddir, "callgrind.%s" % module)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYREF")}
    full_env.update(env or {})
    counts = []
    for n in (CG_PAIRS, 2 * CG_PAIRS):  # the difference cancels the call's fixed cost
        subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=pairs",
                        "--callgrind-out-file=" + cg, python, "-c", CG_SCRIPT, moddir, module,
                        str(n)], check=True, capture_output=True, env=full_env)
        with open(cg) as f:
            counts.append(int(re.search(r"^(?:summary|totals):\s*(\d+)", f.read(),
                                        re.M).group(1)))
    return (counts[1] - counts[0]) / (2.0 * CG_PAIRS)


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------
def summarise(label, res, recording=True):
    """One table row from a driver result. The cost is the median over rounds of
    (traced - untraced) of the same round, so slow drift of the machine cancels."""
    u, t = res["untraced"], res["traced"]
    cost = statistics.median(b - a for a, b in zip(u, t))
    if recording:
        # every timed transition recorded, plus the same few C-API origin records per call
        # (PyArg_ParseTuple's and PyList_GET_ITEM's BORROW/AUX, the result's NEW)
        extra = res["recorded"] - res["expected"]
        ok = extra >= 0 and extra % res["rounds"] == 0 and extra // res["rounds"] < 64
        check = "all %d recorded" % res["expected"] if ok else "RECORDED %d OF %d" % (
            res["recorded"], res["expected"])
    else:
        ok = res["recorded"] == 0
        check = "none recorded" if ok else "RECORDED %d (want 0)" % res["recorded"]
    return dict(label=label, untraced=statistics.median(u), traced=statistics.median(t),
                cost=cost, best=min(t) - min(u), check=check, ok=ok)


def verdict(r):
    """Against the target (TARGET_NS), on the median; says so when only the best round met it
    (the machine was shared: see the load average)."""
    if r["cost"] <= TARGET_NS:
        return "met"
    return "missed (best round met)" if r["best"] <= TARGET_NS else "**missed**"


def table(rows):
    head = ("| interpreter | untraced ns/transition | traced ns/transition | "
            "recording cost ns/transition | best-round cost | target ≤ 2 ns | "
            "instructions added per transition | check |")
    lines = [head, "|---|---:|---:|---:|---:|---|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append("| %s | — | — | — | — | — | — | %s |" % (r["label"], r["error"]))
            continue
        lines.append("| %s | %.2f | %.2f | %.2f | %.2f | %s | %s | %s |" % (
            r["label"], r["untraced"], r["traced"], r["cost"], r["best"],
            "" if r.get("info") else verdict(r),
            "—" if r.get("instr") is None else "%.1f" % r["instr"], r["check"]))
    return "\n".join(lines)


def machine():
    def out(cmd):
        try:
            return subprocess.check_output(cmd, text=True, stderr=subprocess.DEVNULL).strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"
    lscpu = out(["lscpu"])

    def field(name):
        m = re.search(r"^%s:\s*(.*)$" % name, lscpu, re.M)
        return m.group(1).strip() if m else "?"
    cpu = "%s (family %s model %s; L2 %s)" % (field("Model name"), field("CPU family"),
                                              field("Model"), field("L2 cache"))
    return dict(cpu=cpu, nproc=out(["nproc"]),
                gcc=out(["gcc", "--version"]).splitlines()[0],
                kernel=out(["uname", "-r"]),
                load=open("/proc/loadavg").read().split()[0],
                date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))


def update_results(text_block):
    """Replaces the generated block of bench/RESULTS.md (creating the file if needed) and
    keeps everything outside it (the hand-written analysis)."""
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            old = f.read()
    else:
        old = "# pyref micro benchmark results\n\n%s\n%s\n" % (BEGIN, END)
    if BEGIN not in old or END not in old:
        old = old.rstrip("\n") + "\n\n%s\n%s\n" % (BEGIN, END)
    pre, rest = old.split(BEGIN, 1)
    post = rest.split(END, 1)[1]
    with open(RESULTS, "w") as f:
        f.write(pre + BEGIN + "\n" + text_block.rstrip("\n") + "\n" + END + post)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--update", action="store_true", help="rewrite bench/RESULTS.md")
    ap.add_argument("--pairs", type=int, default=250000, help="INCREF/DECREF pairs per round")
    ap.add_argument("--rounds", type=int, default=61, help="rounds per build")
    ap.add_argument("--interpreters", default=None,
                    help="comma-separated label substrings (e.g. 3.11,3.14): only those")
    args = ap.parse_args()

    subprocess.run(["make", "-s", "-C", ROOT, "all"], check=True)
    m = machine()  # the load average before this run adds its own
    rows = []
    pys = interpreters()
    if args.interpreters:
        want = args.interpreters.split(",")
        pys = [p for p in pys if any(w in p[0] for w in want)]
    if not pys:
        sys.exit("bench: no interpreter found (/usr/bin/python3.11 with headers, or pyenv)")
    for i, (label, python, extra) in enumerate(pys):
        try:
            moddir = build(label, python, extra=extra)
        except subprocess.CalledProcessError as e:
            rows.append(dict(label=label, error="build failed: %s" % (
                (e.stderr or "").strip().splitlines() or ["?"])[-1]))
            print(rows[-1]["error"], file=sys.stderr)
            continue
        rows.append(summarise(label, measure(python, moddir, args.pairs, args.rounds)))
        base = instructions(python, moddir, "micro_untraced")
        if base is not None:
            rows[-1]["instr"] = instructions(python, moddir, "micro_traced") - base
        print(table(rows[-1:]).splitlines()[-1], flush=True)
        if i == 0:  # how the figure moves with the ring's size, and when recording is off
            variants = [("%s, ring of 4096 (fits L2)" % label, {"PYREF_RING_RECORDS": "4096"},
                      True),
                     ("%s, PYREF=off" % label, {"PYREF": "off"}, False)]
            for xlabel, env, recording in variants:
                r = summarise(xlabel, measure(python, moddir, args.pairs, args.rounds, env),
                              recording)
                r["info"] = True
                if base is not None:
                    r["instr"] = instructions(python, moddir, "micro_traced", env) - base
                rows.append(r)
                print(table(rows[-1:]).splitlines()[-1], flush=True)
            # a debug build of the extension: both builds at the user's -O level. At -O0
            # the shim calls an -O2 copy of the recording path; PYREF_O0_INLINE keeps it
            # inline, i.e. compiled at -O0 (what that copy saves)
            for opt, defs, what in (("-O0", [], ""),
                                    ("-O0", ["-DPYREF_O0_INLINE"],
                                     ", -DPYREF_O0_INLINE (recording inlined at -O0)"),
                                    ("-Og", [], "")):
                xlabel = "%s, both builds %s -g%s" % (label, opt, what)
                odir = build(label + opt + "".join(defs), python, extra=extra + defs,
                             opt=opt)
                r = summarise(xlabel, measure(python, odir, args.pairs, args.rounds))
                r["info"] = True
                obase = instructions(python, odir, "micro_untraced")
                if obase is not None:
                    r["instr"] = instructions(python, odir, "micro_traced") - obase
                rows.append(r)
                print(table(rows[-1:]).splitlines()[-1], flush=True)

    shared = float(m["load"]) >= 0.5 * int(m["nproc"])
    note = ("Load average %s on %s CPUs before the run: other processes shared the CPUs, so "
            "the medians are inflated and the best-round column is the closer figure."
            % (m["load"], m["nproc"])) if shared else ""
    block = "\n".join([
        "Measured %s on %s (%s CPUs), %s, Linux %s; load average %s before the run."
        % (m["date"], m["cpu"], m["nproc"], m["gcc"], m["kernel"], m["load"]),
        "",
        "Command: `/usr/bin/python3 bench/run.py %s` (`make bench` runs it without "
        "options): %d rounds of %d pairs per build, untraced and traced rounds "
        "interleaved in one process per interpreter. Extension flags: `gcc %s` (the -O0 and "
        "-Og rows: that flag in place of -O2, in both builds; at -O0 the shim calls an -O2 "
        "copy of the recording path unless `-DPYREF_O0_INLINE`), plus "
        "`pyref-config --python PY --cflags` / `--libs` for the traced build (and the "
        "manifest's include directory for the ~/.cache/pyref interpreters)."
        % (" ".join(sys.argv[1:]), args.rounds, args.pairs, " ".join(CFLAGS)),
        "",
        table(rows),
        "",
        "ns/transition = elapsed / (2 × pairs), medians over rounds. *recording cost* = "
        "median over rounds of (traced − untraced) in the same round; *best-round cost* = "
        "fastest traced round − fastest untraced round (least disturbed by other load); "
        "*instructions added per transition* = traced − untraced instructions per "
        "transition inside the timed loop, counted by callgrind (deterministic: the firmer "
        "figure on a shared machine); "
        "*check* = the ring's heads grew by exactly the number of transitions the traced "
        "loop made.",
    ] + (["", note] if note else []))
    print()
    print(table(rows))
    print("\nmake bench: %d rounds x %d pairs; %s (%s CPUs); load average %s before the run"
          % (args.rounds, args.pairs, m["cpu"], m["nproc"], m["load"]))
    if note:
        print(note)
    if args.update:
        update_results(block)
        print("bench: wrote %s" % os.path.relpath(RESULTS, ROOT))
    if any("error" in r for r in rows):
        sys.exit("bench: a build failed")
    if any(not r["ok"] for r in rows):
        sys.exit("bench: a traced build did not record every transition")


if __name__ == "__main__":
    main()
