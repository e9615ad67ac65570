#!/usr/bin/python3
"""`make bench-compare`: pyref against the tools users compare it with, on one workload.

The workload is bench/workload_ext.c — an extension that builds and walks lists, tuples and
dicts from C and calls back into Python — run by bench/workload.py, which times PASSES
passes of it inside the process (interpreter start-up and valgrind's own start are not
counted). Every configuration is the same source and the same interpreter:

  untraced             the interpreter's Python.h, -O2 -g (the reference, 1.0x)
  pyref traced         pyref-config --cflags/--libs, default settings: reference counts,
                       the C-API origin records (NEW/BORROW/STEAL and the container AUX
                       records) and FREE records (the allocator hook)
  PYREF_PYCONTEXT=1    ... with the Python context (PYCTX records) on
  without item origins ... built with -DPYREF_ITEM_ORIGINS_OFF: PyTuple_GET_ITEM,
                       PyList_GET_ITEM, PyTuple_SET_ITEM, PyList_SET_ITEM not wrapped
  without origins      ... built with -DPYREF_CAPI_OFF: no C-API origin records
  refcounts only       ... built with -DPYREF_CAPI_OFF -DPYREF__HOOKS_OFF: Py_INCREF and
                       Py_DECREF records only (the issue's "recorded transition")
  ASan                 the untraced source with gcc -fsanitize=address, run with
                       PYTHONMALLOC=malloc, LD_PRELOAD=libasan (the interpreter is not
                       ASan-built) and ASAN_OPTIONS=detect_leaks=0
  PYTHONMALLOC=malloc  untraced, glibc malloc instead of pymalloc: the part of ASan's
                       ratio that is only the allocator switch
  python3.11d          Debian's debug interpreter, the untraced source built for it
  valgrind memcheck    untraced, PYTHONMALLOC=malloc, on a smaller workload (--valgrind-n),
                       its ratio against untraced runs of that same size
  PYREF=off            the default traced build run with PYREF=off (tracing compiled in,
                       switched off at start-up)
  -O0 / -Og            the untraced and the default traced build both at -O0 -g / -Og -g
                       (a user's debug build); the traced one's ratio is against the
                       untraced build of the same -O level

--python takes an executable or an interpreter id of ~/.cache/pyref/interpreters.json
(3.14, 3.15, ...: `make deps`); the id's section of RESULTS.md is its own. memray is not
measured: Debian packages no memray (only PyPI does).

Each round runs every configuration once, in a fresh process, right next to a fresh run of
the untraced build (the two in alternating order; the order of the configurations rotates
from round to round); a configuration's ratio in a round is its time over that untraced
run's, and the table gives the median, min and max over rounds. Times are the
process's CPU time per pass (--clock wall for wall time): on a shared machine a process
waiting for a CPU accrues wall time, not CPU time. Peak memory is the child's ru_maxrss
(os.wait4). For the traced builds, the ring's heads give the number of records per pass,
hence the cost added per record.

Analysis only (not in the default set; with --only): nofree (PYREF_FREES=0: the hook not
installed, the interest-table stores still made), table-l1 (a 16 KiB interest table: the
share of its cache misses; FREE records are lost to collisions), traced-l2 (a ring that
fits in L2: the share of the ring's memory traffic). --kinds counts the records per item by
kind; --callgrind counts instructions (deterministic, unlike the timings).

  bench/compare.py              print the table
  bench/compare.py --update     ... and rewrite its section of bench/RESULTS.md
  bench/compare.py --only untraced,traced --rounds 21   (a subset, more rounds)
"""
import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run import machine  # noqa: E402  (bench/run.py: the machine line)

BUILD = os.path.join(ROOT, "build", "bench", "compare")
LIBPYREF = os.path.join(ROOT, "build", "libpyref.so")
PYREF_CONFIG = os.path.join(ROOT, "bin", "pyref-config")
RESULTS = os.path.join(HERE, "RESULTS.md")
SRC = os.path.join(HERE, "workload_ext.c")
WORKLOAD = os.path.join(HERE, "workload.py")
CFLAGS = ["-O2", "-g", "-fPIC", "-shared", "-Wall"]
ASAN_CFLAGS = ["-fsanitize=address", "-fno-omit-frame-pointer"]
CPU_NOTE = ("CPU time (time.process_time around each pass) rather than wall time: on a "
            "shared machine a process waiting for a CPU accrues wall time, not CPU time; "
            "cache and memory-bandwidth interference from co-runners remain. ")
TARGET_RATIO = 1.3
TARGET_NS = 2.0
SECTION = "## Workload comparison: pyref, ASan, valgrind (`make bench-compare`)"
BEGIN = "<!-- compare:begin (bench/compare.py --update rewrites this part) -->"
END = "<!-- compare:end -->"


# ---------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------
def py_eval(python, expr):
    return subprocess.check_output([python, "-c", "import sysconfig; print(%s)" % expr],
                                   text=True).strip()


class Builder:
    """Compiles bench/workload_ext.c for one interpreter into build/bench/compare/<python>/
    (or `outdir`), one module per kind; each method returns (module directory, module
    name, the compiler command as a user would type it: pyref-config as $(...))."""

    def __init__(self, python, outdir=None, extra=(), opt=None):
        """`extra`: flags every build takes (a prepared interpreter's pyconfig.h
        directory); `opt`: an -O flag in place of CFLAGS' -O2, in every build."""
        self.python, self.extra, self.opt = python, list(extra), opt
        if opt and not outdir:
            outdir = os.path.join(BUILD, re.sub(r"[^\w.]+", "-", python.strip("/")) + opt)
        self.dir = outdir or os.path.join(BUILD, re.sub(r"[^\w.]+", "-", python.strip("/")))
        os.makedirs(self.dir, exist_ok=True)
        self.suffix = py_eval(python, "sysconfig.get_config_var('EXT_SUFFIX')")
        self.include = py_eval(python, "sysconfig.get_paths()['include']")

    def _cc(self, modname, flags, libs=(), extra_objs=(), shown=None):
        """Runs gcc; `shown` maps the flag lists to the text shown for them."""
        out = os.path.join(self.dir, modname + self.suffix)
        cflags = [self.opt if (self.opt and f == "-O2") else f for f in CFLAGS]
        parts = [["gcc"] + cflags, list(flags) + self.extra, ["-DMODNAME=" + modname, SRC],
                 list(extra_objs), ["-o", out], list(libs)]
        p = subprocess.run(sum(parts, []), capture_output=True, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            raise subprocess.CalledProcessError(p.returncode, p.args, p.stdout, p.stderr)
        shown = shown or {}
        text = " ".join(shown.get(i) or " ".join(shlex.quote(os.path.relpath(x, ROOT)
                                                             if x.startswith(ROOT) else x)
                                                 for x in part)
                        for i, part in enumerate(parts) if part)
        return self.dir, modname, text

    def _pyref(self, what):
        args = ["--python", self.python, what] if what == "--cflags" else [what]
        flags = subprocess.check_output([PYREF_CONFIG] + args, text=True).split()
        return flags, "$(bin/pyref-config %s)" % " ".join(args)

    def untraced(self):
        return self._cc("workload_untraced", ["-I" + self.include])

    def asan(self):
        return self._cc("workload_asan", ASAN_CFLAGS + ["-I" + self.include],
                        ["-fsanitize=address"])

    def traced(self, modname="workload_traced", defines=()):
        (cflags, shown_c), (libs, shown_l) = self._pyref("--cflags"), self._pyref("--libs")
        return self._cc(modname, cflags + list(defines), libs, shown={
            1: " ".join([shown_c] + list(defines) + self.extra), 5: shown_l})

    def no_item_origins(self):
        """The traced build without the tuple/list item accessors' origin records."""
        return self.traced("workload_noitems", ["-DPYREF_ITEM_ORIGINS_OFF"])

    def no_origins(self):
        """The traced build without the C-API origin records."""
        return self.traced("workload_noorigins", ["-DPYREF_CAPI_OFF"])

    def refcounts_only(self):
        """The traced build without the C-API origin records and without the hooks (FREE
        capture, Python context): Py_INCREF/Py_DECREF records only. PYREF__HOOKS_OFF is
        pyref_hooks.h's internal switch."""
        return self.traced("workload_refcounts", ["-DPYREF_CAPI_OFF", "-DPYREF__HOOKS_OFF"])


def prepared_interpreter(ident):
    """(id, executable, extra cflags, its debug build's executable or None) of an
    interpreter id of ~/.cache/pyref/interpreters.json (`make deps`); exits when missing."""
    from run import MANIFEST
    try:
        with open(MANIFEST) as f:
            info = json.load(f)["interpreters"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit("bench-compare: --python %s: no manifest %s (%s)" % (ident, MANIFEST, e))
    i = info.get(ident)
    if not i or not os.path.exists(i["executable"]):
        sys.exit("bench-compare: --python %s: not prepared (known: %s)" % (
            ident, ", ".join(sorted(info))))
    d = info.get(ident + "d")
    return (ident, i["executable"], list(i.get("cflags") or []),
            d["executable"] if d and os.path.exists(d["executable"]) else None)


def libasan():
    path = subprocess.check_output(["gcc", "-print-file-name=libasan.so"], text=True).strip()
    return os.path.realpath(path) if os.path.isabs(path) else None


# ---------------------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------------------
class Config:
    """One way of running the workload. `size` is 'full' or 'small' (the valgrind size);
    `rounds` None means every round, else at most that many (valgrind)."""

    def __init__(self, key, label, python, module, env=None, wrapper=(), size="full",
                 rounds=None, traced=False, note="", ref=None):
        self.key, self.label, self.python, self.module = key, label, python, module
        # the key of the untraced configuration each run of this one is paired with
        self.ref = ref or ("untraced-small" if size == "small" else "untraced")
        self.env, self.wrapper, self.size = env or {}, list(wrapper), size
        self.rounds, self.traced, self.note = rounds, traced, note
        self.runs = []   # [{"cpu", "wall": s per pass, "maxrss": KiB, "records": n|None}]
        self.pairs = []  # [(own run, the reference's run next to it)], one per round


def configs(args):
    """[Config] for args.python, in table order, and the build commands (for RESULTS.md)."""
    py = args.python
    b = Builder(py, extra=args.extra_cflags)
    b0 = Builder(py, extra=args.extra_cflags, opt="-O0")
    bg = Builder(py, extra=args.extra_cflags, opt="-Og")
    commands = {}
    out = []

    def add(key, label, build, analysis=False, **kw):
        if (args.only and key not in args.only) or (analysis and not args.only):
            return
        try:
            moddir, modname, cmd = build()
        except subprocess.CalledProcessError as e:
            print("bench-compare: %s: build failed: %s" % (label, (e.stderr or "").strip()
                                                           .splitlines()[-1:]),
                  file=sys.stderr)
            return
        commands[key] = cmd
        out.append(Config(key, label, kw.pop("python", py), (moddir, modname), **kw))

    add("untraced", "untraced", b.untraced)
    add("traced", "pyref traced (default)", b.traced, traced=True)
    add("pyctx", "pyref traced, PYREF_PYCONTEXT=1", b.traced, traced=True,
        env={"PYREF_PYCONTEXT": "1"})
    add("noitems", "pyref without item origins (-DPYREF_ITEM_ORIGINS_OFF)",
        b.no_item_origins, traced=True, analysis=True)
    add("noorigins", "pyref without C-API origins (-DPYREF_CAPI_OFF)", b.no_origins,
        traced=True)
    add("refcounts", "pyref, refcounts only (also -DPYREF__HOOKS_OFF)", b.refcounts_only,
        traced=True)
    add("off", "pyref traced build, PYREF=off", b.traced, env={"PYREF": "off"})
    add("untraced-O0", "untraced -O0 -g (the -O0 row's reference)", b0.untraced,
        ref="untraced-O0")
    add("traced-O0", "pyref traced (default), -O0 -g", b0.traced, traced=True,
        ref="untraced-O0")
    add("untraced-Og", "untraced -Og -g (the -Og row's reference)", bg.untraced,
        ref="untraced-Og")
    add("traced-Og", "pyref traced (default), -Og -g", bg.traced, traced=True,
        ref="untraced-Og")
    # analysis only, with --only:
    add("nofree", "pyref traced, PYREF_FREES=0", b.traced, traced=True,
        env={"PYREF_FREES": "0"}, analysis=True)
    add("table-l1", "pyref traced, PYREF_FREE_TABLE=1024 (interest table in L1)", b.traced,
        traced=True, env={"PYREF_FREE_TABLE": "1024"}, analysis=True)
    add("traced-l2", "pyref traced, PYREF_RING_RECORDS=4096 (ring in L2)", b.traced,
        traced=True, env={"PYREF_RING_RECORDS": "4096"}, analysis=True)
    asan = libasan()
    if asan:
        add("asan", "ASan (gcc), PYTHONMALLOC=malloc", b.asan,
            env={"PYTHONMALLOC": "malloc", "LD_PRELOAD": asan,
                 "ASAN_OPTIONS": "detect_leaks=0"})
    add("malloc", "untraced, PYTHONMALLOC=malloc", b.untraced, env={"PYTHONMALLOC": "malloc"})
    dbg = args.debug_python
    if dbg and os.path.exists(dbg):
        add("debug", "%s (debug interpreter), untraced" % os.path.basename(dbg),
            Builder(dbg, extra=args.extra_cflags).untraced, python=dbg)
    if shutil.which("valgrind") and args.valgrind_rounds > 0:
        add("untraced-small", "untraced, valgrind's size", b.untraced, size="small")
        add("valgrind", "valgrind memcheck, PYTHONMALLOC=malloc", b.untraced,
            env={"PYTHONMALLOC": "malloc"}, size="small", rounds=args.valgrind_rounds,
            wrapper=["valgrind", "--tool=memcheck", "-q", "--error-exitcode=0"])
    return out, commands


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------
def run_once(cfg, n, args):
    """Runs the workload once in a fresh child; appends {"cpu", "wall" (means per pass),
    "maxrss", "records", "checksum"} to cfg.runs and returns it. Raises RuntimeError with
    the child's stderr on failure."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYREF", "ASAN_")) and k not in ("LD_PRELOAD", "PYTHONMALLOC")}
    env.update(cfg.env)
    moddir, modname = cfg.module
    cmd = cfg.wrapper + [cfg.python, WORKLOAD, moddir, modname, str(n), str(args.every),
                         str(args.passes), LIBPYREF]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        # ru_maxrss of this child alone (RUSAGE_CHILDREN would be the max over all of them)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        out, err = out.read(), err.read()
    if p.returncode != 0:
        raise RuntimeError("%s: exit %d\n%s" % (cfg.label, p.returncode, err[-3000:]))
    res = json.loads(out.strip().splitlines()[-1])
    run = {"wall": statistics.mean(res["seconds"]), "cpu": statistics.mean(res["cpu"]),
           "maxrss": ru.ru_maxrss,
           "records": (res["records"] / args.passes) if res["records"] is not None else None,
           "checksum": res["checksum"], "capacity": res.get("capacity")}
    cfg.runs.append(run)
    return run


def measure(cfgs, args):
    """Runs args.rounds rounds. In a round every configuration runs once right next to a
    run of its reference (the untraced build at its size), the two in alternating order,
    so that a ratio compares two runs seconds apart; the order of the configurations
    rotates from round to round. Returns the load averages seen (before, after)."""
    load0 = open("/proc/loadavg").read().split()[0]
    sizes = {"full": args.n, "small": args.valgrind_n}
    base = {c.key: c for c in cfgs if c.ref == c.key}
    for r in range(args.rounds):
        turn = [c for c in cfgs if c.key not in base and c.ref in base and (
            c.rounds is None or r < c.rounds)]
        k = r % max(1, len(turn))
        for i, cfg in enumerate(turn[k:] + turn[:k]):
            ref = base[cfg.ref]
            pair = (ref, cfg) if (r + i) % 2 == 0 else (cfg, ref)
            got = {c.key: run_once(c, sizes[c.size], args) for c in pair}
            cfg.pairs.append((got[cfg.key], got[ref.key]))
            if args.verbose:
                for c in pair:
                    run = got[c.key]
                    print("  round %d  %-48s cpu %8.1f ms  wall %8.1f ms  %7.1f MiB" % (
                        r + 1, c.label, run["cpu"] * 1e3, run["wall"] * 1e3,
                        run["maxrss"] / 1024.0), flush=True)
        if not args.verbose:
            print("bench-compare: round %d/%d done" % (r + 1, args.rounds), file=sys.stderr,
                  flush=True)
    return load0, open("/proc/loadavg").read().split()[0]


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------
def summarise(cfgs, clock):
    """Rows: per config the ratios of `clock` ('cpu' or 'wall') time to the reference run
    paired with it (measure())."""
    rows = []
    for c in cfgs:
        pairs = c.pairs or [(x, x) for x in c.runs]  # a reference: against itself
        if not pairs:
            continue
        own = [a for a, _ in pairs]
        row = dict(cfg=c, ratios=[a[clock] / b[clock] for a, b in pairs],
                   cpu=statistics.median(x["cpu"] for x in c.runs) * 1e3,
                   wall=statistics.median(x["wall"] for x in c.runs) * 1e3,
                   maxrss=statistics.median(x["maxrss"] for x in c.runs) / 1024.0)
        if c.traced:
            row["records"] = statistics.median(x["records"] for x in own)
            row["ns"] = statistics.median((a[clock] - b[clock]) / a["records"] * 1e9
                                          for a, b in pairs)
        rows.append(row)
    return rows


def checksums_agree(cfgs):
    """True when every run of one workload size computed the same checksum."""
    return all(len({x["checksum"] for c in cfgs if c.size == size for x in c.runs}) <= 1
               for size in ("full", "small"))


def transitions(rows):
    """Reference-count transitions per pass: the records of the refcounts-only build (its
    records are exactly the transitions), or None without that row."""
    return next((r["records"] for r in rows if r["cfg"].key == "refcounts"), None)


def table(rows, args):
    lines = ["| configuration | runs | CPU ms per pass | wall ms per pass | ratio median | "
             "min | max | peak RSS MiB | records per pass | records per transition | "
             "added ns per record |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    trans = transitions(rows)
    for r in rows:
        c = r["cfg"]
        size = "" if c.size == "full" else " (n = %d)" % args.valgrind_n
        lines.append("| %s%s | %d | %.1f | %.1f | **%.2f×** | %.2f× | %.2f× | %.1f | %s | %s "
                     "| %s |"
                     % (c.label, size, len(r["ratios"]), r["cpu"], r["wall"],
                        statistics.median(r["ratios"]),
            min(r["ratios"]), max(r["ratios"]), r["maxrss"],
            "%.2fM" % (r["records"] / 1e6) if "records" in r else "",
            "%.2f" % (r["records"] / trans) if "records" in r and trans else "",
            "%.2f" % r["ns"] if "ns" in r else ""))
    return "\n".join(lines)


def verdicts(rows):
    """One line per pyref build against the issue's targets (on the medians): the ratio
    for each, the cost per recorded transition for the refcounts-only build (the only one
    whose records are all transitions)."""
    out = []
    trans = transitions(rows)
    for r in rows:
        key = r["cfg"].key
        if key == "off":
            med = statistics.median(r["ratios"])
            out.append("- %s: %.2f× untraced (target ≤ 1.03×: %s)" % (
                r["cfg"].label, med, "met" if med <= 1.03 else "**missed**"))
            continue
        if key in ("traced-O0", "traced-Og"):
            med = statistics.median(r["ratios"])
            out.append("- %s: %.2f× the untraced build at the same -O level%s; %.2f ns "
                       "added per record" % (r["cfg"].label, med, (
                           " (target ≤ 1.5×: %s)" % ("met" if med <= 1.5 else "**missed**"))
                           if key == "traced-O0" else "", r["ns"]))
            continue
        if key not in ("traced", "noitems", "noorigins", "refcounts"):
            continue
        med = statistics.median(r["ratios"])
        line = "- %s: %.2f× untraced (target ≤ %.1f×: %s); %.2fM records per pass%s, %.2f ns " \
               "added per record" % (r["cfg"].label, med, TARGET_RATIO,
                                     "met" if med <= TARGET_RATIO else "**missed**",
                                     r["records"] / 1e6, " (%.2f per transition)" % (
                                         r["records"] / trans) if trans else "", r["ns"])
        if r["cfg"].key == "refcounts":
            line += " (target ≤ %.0f ns per recorded transition: %s)" % (
                TARGET_NS, "met" if r["ns"] <= TARGET_NS else "**missed**")
        out.append(line)
    return out


def block(rows, cfgs, commands, args, m, loads, cg_lines=None, kind_lines=None):
    """The generated part of RESULTS.md."""
    shared = max(float(x) for x in loads) >= 0.5 * int(m["nproc"])
    cmd_lines = ["- %s: `%s`" % (key, commands[key])
                 for key in ("untraced", "traced", "noitems", "noorigins", "refcounts", "asan",
                             "traced-O0", "traced-Og")
                 if key in commands]
    caps = sorted({x["capacity"] for c in cfgs if c.traced for x in c.runs
                   if x.get("capacity")})
    run_lines = []
    for c in cfgs:
        if c.env or c.wrapper:
            env = " ".join("%s=%s" % kv for kv in sorted(c.env.items()))
            run_lines.append("- %s: `%s`" % (c.label, " ".join(
                x for x in [env] + c.wrapper + [c.python, "bench/workload.py", "..."] if x)))
    parts = [
        "Measured %s on %s (%s CPUs), %s, Linux %s; load average %s before the run, %s "
        "after." % (m["date"], m["cpu"], m["nproc"], m["gcc"], m["kernel"], loads[0],
                    loads[1]),
        "",
        "Command: `/usr/bin/python3 bench/compare.py %s` (`make bench-compare` runs it "
        "without options): interpreter `%s`%s, workload `run(n=%d, callback, every=%d)`"
        ", %d passes per process, %d rounds (valgrind: %d round%s at n = %d)."
        % (" ".join(shlex.quote(a) for a in sys.argv[1:]), args.python,
           " (%s)" % args.python_id if args.python_id else "", args.n, args.every,
           args.passes, args.rounds,
           min(args.valgrind_rounds, args.rounds), "" if args.valgrind_rounds == 1 else "s",
           args.valgrind_n),
        "",
        table(rows, args),
        "",
        "Ring: %s records per thread (PYREF_RING_RECORDS unset: the default), 32 bytes a "
        "record. *records per transition* = records per pass over the refcounts-only "
        "build's (whose records are exactly the workload's reference-count transitions)."
        % (", ".join("%d (2^%d)" % (c, c.bit_length() - 1) for c in caps) or "?"),
        "",
        "*ratio* = the configuration's %s time per pass over that of an untraced run made "
        "right next to it (valgrind: an untraced run at its size), median / min / max over "
        "rounds. "
        "%s*CPU ms*, *wall ms* and *peak RSS* (the process's ru_maxrss) are medians over "
        "rounds. *added ns per record* = (traced − untraced) %s time per pass / records per "
        "pass, median over rounds: for *refcounts only* the cost of one recorded "
        "transition in this workload; for the others an average over records of every "
        "kind, which also carries the free hook's cost per deallocation. Checksums of all "
        "runs %s." % (
            args.clock, CPU_NOTE if args.clock == "cpu" else "", args.clock,
            "agree" if checksums_agree(cfgs) else "**DIFFER**"),
        "",
    ] + verdicts(rows) + ["", "Builds (from the repository's root):", ""] + \
        cmd_lines + ["", "Runs:", ""] + run_lines
    if kind_lines:
        parts += ["", "Records per workload item by kind (`--kinds`: one pass of n = 20000 "
                  "decoded from a ring that holds it all; AUX (attached) = the AUX slots "
                  "that follow a record: format 1's container after each BORROW or STEAL "
                  "with one, format 2's AUX ORIGIN after an origin that does not fit):", ""] + kind_lines
    if cg_lines:
        parts += ["", "Instructions (`--callgrind`: callgrind inside run() only, "
                  "deterministic):", ""] + cg_lines
    notes = [c for c in cfgs if c.note]
    if notes:
        parts += [""] + ["Note: %s — %s." % (c.label, c.note) for c in notes]
    if shared:
        parts += ["", "The load average was %s–%s on %s CPUs: other jobs shared the machine "
                  "during the run; each ratio pairs two runs made seconds apart so that slow "
                  "drift cancels, and min/max show the spread." % (
                      min(loads), max(loads), m["nproc"])]
    return "\n".join(parts)


def callgrind(cfgs, args):
    """Instructions per pass of each configuration that runs the workload natively (not
    ASan, not valgrind), counted by callgrind inside run() only (--toggle-collect), at
    n = args.callgrind_n, one pass: deterministic, unlike the timings. Returns table lines."""
    out = ["| configuration (callgrind, n = %d, one pass) | instructions | over untraced | "
           "records | instructions per record |" % args.callgrind_n,
           "|---|---:|---:|---:|---:|"]
    print("\n".join(out), flush=True)
    base = None
    for c in cfgs:
        if c.wrapper or c.size != "full" or c.key in ("asan", "debug", "malloc"):
            continue
        cg = os.path.join(BUILD, "callgrind.%s" % c.key)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYREF")}
        env.update(c.env)
        moddir, modname = c.module
        p = subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=run",
                            "--callgrind-out-file=" + cg, c.python, WORKLOAD, moddir, modname,
                            str(args.callgrind_n), str(args.every), "1", LIBPYREF],
                           capture_output=True, text=True, env=env)
        if p.returncode != 0:
            out.append("| %s | failed: %s | | | |" % (c.label, p.stderr.strip()[-200:]))
            continue
        with open(cg) as f:
            ir = int(re.search(r"^(?:summary|totals):\s*(\d+)", f.read(), re.M).group(1))
        recs = json.loads(p.stdout.strip().splitlines()[-1])["records"]
        if base is None:
            base = ir
        out.append("| %s | %.2fM | %+.2fM | %s | %s |" % (
            c.label, ir / 1e6, (ir - base) / 1e6, "%d" % recs if recs else "",
            "%.1f" % ((ir - base) / recs) if recs else ""))
        print(out[-1], flush=True)
    return out


KINDS_SCRIPT = r"""
import collections, ctypes, json, os, sys
sys.path[:0] = [sys.argv[1], sys.argv[3]]
mod = __import__(sys.argv[2])
from pyref.reader import decode
lib = ctypes.CDLL(sys.argv[4], mode=os.RTLD_NOLOAD)
n = int(sys.argv[5])
mod.run(n, lambda t: t[0] & 7, int(sys.argv[6]))
ring = decode.decode_ring(lambda a, k: ctypes.string_at(a, k),
                          ctypes.c_void_p.in_dll(lib, "pyref_ring").value)
kinds = collections.Counter()
for r in ring.records:
    kinds[r.op_name] += 1
    # ring slots only: a format-2 origin's container is the reader's (at the origin's pos)
    kinds["AUX (attached)"] += sum(1 for a in r.aux if a.pos != r.pos)
kinds["AUX (attached)"] += getattr(ring, "folded", 0)     # format 2's AUX ORIGIN slots
print(json.dumps({"kinds": kinds, "written": ring.written, "decoded": ring.decoded}))
"""


def record_kinds(cfg, args, n=20000):
    """{op name: records per item} of one pass of a traced configuration, decoded from a
    ring big enough to hold the whole pass (gdbext/pyref/reader/decode.py, no gdb)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYREF")}
    env.update(cfg.env)
    env["PYREF_RING_RECORDS"] = str(1 << (n * 128 - 1).bit_length())
    moddir, modname = cfg.module
    out = subprocess.check_output([cfg.python, "-c", KINDS_SCRIPT, moddir, modname,
                                   os.path.join(ROOT, "gdbext"), LIBPYREF, str(n),
                                   str(args.every)], env=env, text=True)
    res = json.loads(out.strip().splitlines()[-1])
    if res["written"] != res["decoded"]:
        raise RuntimeError("record_kinds: the ring did not hold the whole pass")
    return {k: v / n for k, v in res["kinds"].items()}


def kinds_table(cfgs, args):
    """Table lines: records per workload item by kind, for each traced configuration."""
    per = [(c, record_kinds(c, args)) for c in cfgs if c.traced and not c.wrapper]
    names = sorted({k for _, d in per for k in d},
                   key=lambda k: ["INCREF", "DECREF", "DEALLOC", "NEW", "BORROW",
                                  "STEAL", "FREE", "AUX (attached)", "AUX"].index(k)
                   if k in ("INCREF", "DECREF", "DEALLOC", "NEW", "BORROW", "STEAL", "FREE",
                            "AUX (attached)", "AUX") else 99)
    lines = ["| records per item | " + " | ".join(names) + " | all |",
             "|---|" + "---:|" * (len(names) + 1)]
    for c, d in per:
        lines.append("| %s | " % c.label + " | ".join("%.1f" % d.get(k, 0) for k in names)
                     + " | %.1f |" % sum(d.values()))
    return lines


def update_section(path, heading, begin, end, text):
    """Replaces the text between `begin` and `end` in the file at `path`; when the markers
    are missing, appends `heading`, then the markers around `text`. Everything outside the
    markers (other benchmarks' sections, hand-written analysis) is kept. Used by
    bench/gdb_bench.py too."""
    old = open(path).read() if os.path.exists(path) else ""
    if begin not in old or end not in old:
        old = old.rstrip("\n") + "\n\n%s\n\n%s\n%s\n" % (heading, begin, end)
    pre, rest = old.split(begin, 1)
    post = rest.split(end, 1)[1]
    with open(path, "w") as f:
        f.write(pre + begin + "\n" + text.rstrip("\n") + "\n" + end + post)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default="/usr/bin/python3.11",
                    help="interpreter: a path, or an id of ~/.cache/pyref/interpreters.json "
                         "(3.14, 3.15; its debug build, 3.14d, is the debug row) (default: "
                         "Debian's release python3.11)")
    ap.add_argument("--debug-python", default="/usr/bin/python3.11d",
                    help="debug interpreter for its row ('' to skip)")
    ap.add_argument("--n", type=int, default=100000, help="items per pass")
    ap.add_argument("--every", type=int, default=8, help="call back every N-th tuple")
    ap.add_argument("--passes", type=int, default=3, help="timed passes per process")
    ap.add_argument("--rounds", type=int, default=11, help="rounds")
    ap.add_argument("--valgrind-n", type=int, default=12500, help="items per valgrind pass")
    ap.add_argument("--valgrind-rounds", type=int, default=1, help="0 skips valgrind")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="time the ratios are taken of (default: the process's CPU time)")
    ap.add_argument("--only", type=lambda s: set(s.split(",")), default=None,
                    help="comma-separated keys: untraced,traced,pyctx,noitems,noorigins,"
                         "refcounts,"
                         "off,traced-O0,traced-Og,asan,malloc,debug,untraced-small,valgrind; analysis only: nofree,"
                         "table-l1,traced-l2")
    ap.add_argument("--callgrind", action="store_true",
                    help="also count instructions per configuration under callgrind")
    ap.add_argument("--callgrind-n", type=int, default=10000, help="items for --callgrind")
    ap.add_argument("--kinds", action="store_true",
                    help="also count the records per item by kind (decoded from a ring)")
    ap.add_argument("--update", action="store_true", help="rewrite bench/RESULTS.md's section")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every run")
    args = ap.parse_args()
    args.python_id, args.extra_cflags = None, []
    if os.path.sep not in args.python:
        args.python_id, args.python, args.extra_cflags, dbg = prepared_interpreter(args.python)
        if args.debug_python == ap.get_default("debug_python"):
            args.debug_python = dbg or ""
    if args.only:
        args.only |= {"untraced"} | ({"untraced-small"} if "valgrind" in args.only else set())
        args.only |= {"untraced" + k[6:] for k in args.only if k.startswith("traced-O")}

    subprocess.run(["make", "-s", "-C", ROOT, "all"], check=True)
    m = machine()
    t0 = time.time()
    cfgs, commands = configs(args)
    loads = measure(cfgs, args)
    rows = summarise(cfgs, args.clock)
    print()
    print(table(rows, args))
    print()
    for line in verdicts(rows):
        print(line)
    print("\nmake bench-compare: %s, %d rounds, n = %d, %.0f s; %s (%s CPUs); load average "
          "%s before, %s after" % (args.python, args.rounds, args.n, time.time() - t0,
                                   m["cpu"], m["nproc"], loads[0], loads[1]))
    kind_lines = None
    if args.kinds:
        kind_lines = kinds_table(cfgs, args)
        print()
        print("\n".join(kind_lines))
    cg_lines = None
    if args.callgrind and shutil.which("valgrind"):
        print()
        cg_lines = callgrind(cfgs, args)
    if not checksums_agree(cfgs):
        sys.exit("bench-compare: the builds disagree on the checksum")
    if args.update:
        section, begin, end = SECTION, BEGIN, END
        if args.python_id:  # each prepared interpreter has its own section
            section = "### The workload comparison on %s (`bench/compare.py --python %s`)" % (
                args.python_id, args.python_id)
            begin = BEGIN.replace("compare:", "compare-%s:" % args.python_id)
            end = END.replace("compare:", "compare-%s:" % args.python_id)
        update_section(RESULTS, section, begin, end, block(rows, cfgs, commands, args, m,
                                                           loads, cg_lines, kind_lines))
        print("bench-compare: wrote %s" % os.path.relpath(RESULTS, ROOT))


if __name__ == "__main__":
    main()
