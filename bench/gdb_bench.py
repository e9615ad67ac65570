#!/usr/bin/python3
"""The GDB side of `make bench`: what pyref's commands cost on a full 2^20-record ring.

Builds bench/workload_ext.c through pyref's shim for Debian's release python3.11 (whose
debug info python3.11-dbg installs), runs a program that fills a ring of 2^20 records per
thread (PYREF_RING_RECORDS=1048576: 32 MiB) with the workload's records — one pass that
wraps it several times over, then 32 slices of workload sized to fill 90 % of the ring,
with two INCREF/DECREF pairs of one sentinel object after each slice, so the sentinel's
records are spread over the ring — and leaks one reference to each of three objects; then
it aborts and the kernel (or gcore) writes the core. Each figure comes from fresh
`gdb -batch -nx` sessions on that core, timed inside gdb with time.perf_counter() around
gdb.execute():

  pyref history SENTINEL   twice in a session: the first is cold (pyref has decoded
                           nothing yet: the ring's read and decode are part of it), the
                           second warm (the decoded ring is cached for the session)
  pyref leaks              the same, in a session of its own (cold, then warm)
  owners scan              bench/bench_scan.py (GB/s of the `pyref owners` scan on a
                           1 GB heap, live and from a core)

and, to say where the time goes, the phases of a cold `pyref history` one by one (the
decode, the targeted byte search Ring.records_for that the command uses, and what a
command that needs every object pays on top: the full Record list and the index).

The OS page cache holds the core (it was just written): "cold" means pyref's caches, not
the disk's. Targets: history <= 1 s cold; scan >= 1 GB/s.

  bench/gdb_bench.py              print the table
  bench/gdb_bench.py --update     ... and rewrite its section of bench/RESULTS.md (and
                                  bench_scan.py's, which it runs with --update)
  bench/gdb_bench.py --no-scan    without bench_scan.py (it builds a 1 GiB process)
  bench/gdb_bench.py --threads 64 every command (ring, history, why, leaks --no-scan,
                                  leaks, owners) on a core of 64 threads + main, each wrapping
                                  its PYREF_RING_RECORDS=65536 ring (--ring-records), one
                                  fresh gdb each, seconds and peak RSS (/usr/bin/time -v);
                                  --core build/bench/gdb/core reuses the core;
                                  --before REV also times REV's gdbext/ (unpacked with
                                  `git archive`), command by command, on the same core
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import compare  # noqa: E402  (Builder, update_section)
from run import machine  # noqa: E402
from pyreftest import LOADER, run_to_core  # noqa: E402

OUT = os.path.join(ROOT, "build", "bench", "gdb")
RING_RECORDS = 1 << 20
SENTINEL_PAIRS = 2     # INCREF/DECREF pairs of the sentinel between two slices
SLICES = 32            # slices of workload after the wrap
WRAP_N = 100000        # items of the first pass (30-90 records each: the ring wraps 3-9x)
HISTORY_TARGET_S = 1.0
SCAN_TARGET_GBS = 1.0
SECTION = "## GDB side: history, leaks and the owners scan on a full ring (`make bench`)"
BEGIN = "<!-- gdb:begin (bench/gdb_bench.py --update rewrites this part) -->"
END = "<!-- gdb:end -->"

TARGET = r'''
import ctypes, json, os, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[3])
import workload_traced as wl
from driver import ring_heads          # bench/driver.py: records written so far

def callback(t):
    return t[0] & 7

lib = ctypes.CDLL(sys.argv[4], mode=os.RTLD_NOLOAD)
sentinel = ["the sentinel"]          # a list: a GC object, alive at the crash
leaked = [bytearray(b"leak %%d" %% i) for i in range(3)]
h0 = ring_heads(lib)[0]
wl.run(%(wrap_n)d, callback, 8)      # the ring wraps: every slot holds a record
h1, capacity = ring_heads(lib)
per_item = (h1 - h0) / %(wrap_n)d     # records per workload item with this shim
slice_n = max(1, int(0.9 * capacity / %(slices)d / per_item))
for i in range(%(slices)d):          # the sentinel's records spread over 90%% of the ring
    wl.run(slice_n, callback, 8)
    wl.hold(sentinel, %(pairs)d)
for o in leaked:
    wl.keep(o)                       # one reference never given back: `pyref leaks` finds it
with open(sys.argv[2], "w") as f:
    json.dump({"sentinel": id(sentinel), "leaked": [id(o) for o in leaked],
               "written": ring_heads(lib)[0] - h0, "per_item": per_item,
               "slice_n": slice_n}, f)
os.abort()
''' % dict(wrap_n=WRAP_N, slices=SLICES, pairs=SENTINEL_PAIRS)

# Runs inside gdb: each command timed; one JSON line on stdout.
GDB_SCRIPT = r"""
import json, time, gdb
res = []
for cmd in %(commands)r:
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        out, err = gdb.execute(cmd, to_string=True), None
    except gdb.error as e:
        out, err = "", str(e)
    res.append({"command": cmd, "seconds": time.perf_counter() - t0,
                "cpu": time.process_time() - c0,
                "first_line": out.split("\n", 1)[0], "lines": out.count("\n"),
                "error": err, "output": out[:20000]})
print("PYREF_BENCH " + json.dumps(res))
"""

# Runs inside gdb: the phases of a cold `pyref history`, each from scratch.
PHASES_SCRIPT = r"""
import json, time, gdb
from pyref.inferior import target
from pyref.reader import decode
obj = %(obj)d
res = {}
def timed(key, f):
    t0 = time.perf_counter()
    out = f()
    res[key] = time.perf_counter() - t0
    return out
addr = target.symbol_u64("pyref_ring")
ring = timed("decode (read, classify; AUX attached on demand)",
             lambda: decode.decode_ring(target.read, addr))
found = timed("Ring.records_for (byte search: what `pyref history` uses)",
              lambda: ring.records_for(obj))
timed("Ring.records (every Record: what `pyref leaks` and the index need)",
      lambda: ring.records)
index = timed("decode.build_index", lambda: decode.build_index(ring))
res["agree"] = [len(found), len(index.get(obj, []))]
print("PYREF_BENCH " + json.dumps(res))
"""

# The many-threads core: THREADS threads each fill a ring of THREAD_RING records (with the
# main thread's ring: THREADS + 1 rings, about 4.2 M decoded records at the defaults), then
# the main thread writes the sentinel's records and the leaks, and aborts.
THREADS = 64
THREAD_RING = 1 << 16
TARGET_THREADS = r"""
import ctypes, json, os, sys, threading
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[3])
import workload_traced as wl
from driver import ring_heads

def callback(t):
    return t[0] & 7

lib = ctypes.CDLL(sys.argv[4], mode=os.RTLD_NOLOAD)
sentinel = ["the sentinel"]
leaked = [bytearray(b"leak %%d" %% i) for i in range(3)]
big = [None] * 10000000              # pyref owners finds big->ob_item[5000000]
big[5000000] = sentinel
go = threading.Barrier(%(threads)d + 1)
done = threading.Barrier(%(threads)d + 1)

def fill():
    go.wait()
    wl.run(%(per_thread)d, callback, 8)   # wraps this thread's ring
    done.wait()
    done.wait()                          # alive (and registered) at the abort

ts = [threading.Thread(target=fill) for _ in range(%(threads)d)]
for t in ts:
    t.start()
go.wait()
done.wait()
wl.run(%(per_thread)d, callback, 8)
wl.hold(sentinel, 2)
for o in leaked:
    wl.keep(o)
with open(sys.argv[2], "w") as f:
    json.dump({"sentinel": id(sentinel), "leaked": [id(o) for o in leaked],
               "written": ring_heads(lib)[0], "per_item": 0, "slice_n": 0}, f)
os.abort()
"""


def make_threads_core(python, threads, ring_records):
    """The many-threads core (TARGET_THREADS); returns (core, facts)."""
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    moddir, _, _ = compare.Builder(python, os.path.join(OUT, "ext")).traced()
    script = os.path.join(OUT, "target.py")
    facts_path = os.path.join(OUT, "facts.json")
    # ~85 records a workload item: 2x the ring each, so every thread's ring wraps
    per_thread = max(1, 2 * ring_records // 85)
    with open(script, "w") as f:
        f.write(TARGET_THREADS % dict(threads=threads, per_thread=per_thread))
    core, _ = run_to_core(python, [script, moddir, facts_path, HERE, compare.LIBPYREF], OUT,
                          env={"PYREF_RING_RECORDS": str(ring_records)}, timeout=1200)
    facts = json.load(open(facts_path))
    facts["core_bytes"] = os.path.getsize(core)
    return core, facts


def timed_command(python, core, command, loader=LOADER):
    """(seconds inside gdb, peak RSS in MiB of the whole gdb process, first output line) of
    one command in a fresh gdb on the core (/usr/bin/time -v gives the RSS), pyref loaded
    from `loader`."""
    res, _ = gdb_run(python, core, GDB_SCRIPT % {"commands": [command]}, "one",
                     wrap=["/usr/bin/time", "-v"], loader=loader)
    return res


def unpack_gdbext(rev):
    """The loader of revision `rev`'s gdbext/, unpacked with `git archive` under OUT."""
    dest = os.path.join(OUT, "before-" + re.sub(r"[^\w.-]", "_", rev))
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "gdbext"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return os.path.join(dest, "gdbext", os.path.basename(LOADER))


def _timeless(out):
    """A command's output without the memory scan's statistics (its seconds and GB/s,
    which change from run to run, and the MiB its passes read)."""
    return re.sub(r"read \d+(\.\d+)? MiB", "read N MiB",
                  re.sub(r"\d+(\.\d+)? (s|GB/s)\b", "T", out))


def _cell(r, s):
    """The output column of one command's result."""
    out = ("error: " + r["error"]) if r["error"] else "`%s` (%d lines)" % (
        r["first_line"].strip()[:70], r["lines"])
    if r["command"].startswith("pyref owners"):
        # item 5 of issue 21: the 10 M-item list's item [5000000] is named as an owner
        item = re.search(r"list 0x[0-9a-f]+ item \[5000000\]", r["output"])
        out += "; names `%s`" % item.group(0) if item else \
            "; **does not name big->ob_item[5000000]**"
    return out.replace(s, "SENTINEL")


def threads_main(args):
    """--threads N: every command on the N-thread core, one fresh gdb each."""
    subprocess.run(["make", "-s", "-C", ROOT, "all"], check=True)
    if args.core:
        core, facts = args.core, json.load(open(os.path.join(OUT, "facts.json")))
    else:
        core, facts = make_threads_core(args.python, args.threads, args.ring_records)
    s = "0x%x" % facts["sentinel"]
    print("gdb-bench: core %s, %.0f MiB, %d threads x %d records, sentinel %s" % (
        core, os.path.getsize(core) / 2**20, args.threads, args.ring_records, s), flush=True)
    cmds = ["pyref ring", "pyref history " + s, "pyref why", "pyref leaks --no-scan",
            "pyref leaks", "pyref owners " + s]
    print("load average %s before the run" % open("/proc/loadavg").read().split()[0])
    if args.before:
        before = unpack_gdbext(args.before)
        rev = subprocess.check_output(["git", "-C", ROOT, "rev-parse", "--short",
                                       args.before], text=True).strip()
        print("before = %s (%s), after = this tree (%s)\n" % (args.before, rev, ROOT))
        print("| command | before s | before MiB | after s | after MiB | time ratio | "
              "≤ 5 s, ≤ 500 MiB after | outputs |\n"
              "|---|---:|---:|---:|---:|---:|---|---|")
    else:
        print("| command | seconds | CPU s | peak RSS MiB | ≤ 5 s, ≤ 500 MiB | output |\n"
              "|---|---:|---:|---:|---|---|")
    for c in cmds:
        r = timed_command(args.python, core, c)[0]
        met = "met" if r["seconds"] <= 5 and r["rss_mib"] <= 500 else "**missed**"
        if args.before:
            b = timed_command(args.python, core, c, loader=before)[0]
            for which, x in (("before", b), ("after", r)):
                with open(os.path.join(OUT, "%s-%d.txt" % (which, cmds.index(c))), "w") as f:
                    f.write(x["output"])
            same = "same" if _timeless(b["output"]) == _timeless(r["output"]) else \
                "**differ**: before %s, after %s" % (_cell(b, s), _cell(r, s))
            print("| `%s` | %.2f | %.0f | %.2f | %.0f | %.1f× | %s | %s |" % (
                c.replace(s, "SENTINEL"), b["seconds"], b["rss_mib"], r["seconds"],
                r["rss_mib"], b["seconds"] / max(r["seconds"], 1e-6), met, same),
                flush=True)
            continue
        print("| `%s` | %.2f | %.2f | %.0f | %s | %s |" % (
            c.replace(s, "SENTINEL"), r["seconds"], r["cpu"], r["rss_mib"], met,
            _cell(r, s)), flush=True)
    print("\ngdb-bench: load average %s after" % open("/proc/loadavg").read().split()[0])


# ---------------------------------------------------------------------------------------
# The core
# ---------------------------------------------------------------------------------------
def make_core(python):
    """Builds the traced module, runs the target to its abort; returns (core, facts)."""
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    moddir, _, _ = compare.Builder(python, os.path.join(OUT, "ext")).traced()
    script = os.path.join(OUT, "target.py")
    facts_path = os.path.join(OUT, "facts.json")
    with open(script, "w") as f:
        f.write(TARGET)
    env = {"PYREF_RING_RECORDS": str(RING_RECORDS)}
    core, _ = run_to_core(python, [script, moddir, facts_path, HERE, compare.LIBPYREF], OUT,
                          env=env, timeout=600)
    facts = json.load(open(facts_path))
    facts["core_bytes"] = os.path.getsize(core)
    return core, facts


def gdb_run(python, core, script_text, name, wrap=(), loader=LOADER):
    """Runs gdb on the core with pyref loaded (from `loader`), then the script
    `script_text`; returns (the script's PYREF_BENCH result, wall seconds of the whole gdb
    process)."""
    path = os.path.join(OUT, "%s.py" % name)
    with open(path, "w") as f:
        f.write(script_text)
    cmd = list(wrap) + ["gdb", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set width 0",
           "-ex", "set debuginfod enabled off", "-x", loader, "-x", path, python, core]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    for line in p.stdout.splitlines():
        if line.startswith("PYREF_BENCH "):
            res = json.loads(line[len("PYREF_BENCH "):])
            if rss and isinstance(res, list):
                for r in res:
                    r["rss_mib"] = int(rss.group(1)) / 1024
            return res, wall
    raise RuntimeError("gdb gave no result:\n%s\n%s" % (p.stdout[-3000:], p.stderr[-3000:]))


def gdb_session(python, core, commands):
    """Times `commands` in one fresh gdb on the core; ([result per command], wall)."""
    return gdb_run(python, core, GDB_SCRIPT % {"commands": list(commands)}, "session")


# ---------------------------------------------------------------------------------------
# The owners scan (bench/bench_scan.py)
# ---------------------------------------------------------------------------------------
def scan_figure(update):
    """(bench/bench_scan.py's output lines, {"live": scan cell, "core": scan cell})."""
    path = os.path.join(HERE, "bench_scan.py")
    p = subprocess.run([sys.executable, path] + (["--update"] if update else []),
                       capture_output=True, text=True, timeout=1800, cwd=ROOT)
    lines = [ln for ln in p.stdout.strip().splitlines() if ln.strip()]
    if p.returncode != 0:
        lines.append("bench_scan.py exited %d: %s" % (p.returncode, p.stderr.strip()[-300:]))
    cells, cols = {}, None
    for ln in lines:
        row = [c.strip() for c in ln.strip().strip("|").split("|")]
        if "scan" in row and "target" in row:
            cols = row
        elif cols and len(row) == len(cols) and row[0] in ("live", "core"):
            cells[row[0]] = row[cols.index("scan")]
    return lines, cells


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------
def row(what, xs, target=None, note=""):
    med, lo, hi = statistics.median(xs), min(xs), max(xs)
    verdict = ""
    if target is not None:
        verdict = "≤ %g s: %s" % (target, "met" if med <= target else "**missed**")
    return "| %s | %d | %.3f | %.3f | %.3f | %s | %s |" % (what, len(xs), med, lo, hi,
                                                          verdict, note)


def scan_row(scan, skipped):
    if scan is None:
        return "| owners scan, 1 GB heap | — | — | — | — | ≥ 1 GB/s | not run (--no-scan) |"
    lines, cells = scan
    if not cells:
        return ("| owners scan, 1 GB heap (bench/bench_scan.py) | | | | | ≥ 1 GB/s | see "
                "its output below |")

    def gbs(cell):
        m = re.match(r"([\d.]+) GB/s", cell)
        return float(m.group(1)) if m else None
    verdict = " / ".join("%s %s" % (k, "met" if (gbs(v) or 0) >= SCAN_TARGET_GBS
                                    else "**missed**") for k, v in sorted(cells.items()))
    return ("| owners scan, 1 GB heap (bench/bench_scan.py: its *scan* column) | 1 | — | — "
            "| — | ≥ %g GB/s: %s | %s |" % (SCAN_TARGET_GBS, verdict, "; ".join(
                "%s %s" % kv for kv in sorted(cells.items()))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default="/usr/bin/python3.11")
    ap.add_argument("--sessions", type=int, default=3, help="fresh gdb sessions per figure")
    ap.add_argument("--update", action="store_true",
                    help="rewrite bench/RESULTS.md's section (and bench_scan.py's)")
    ap.add_argument("--no-scan", action="store_true", help="do not run bench/bench_scan.py")
    ap.add_argument("--keep", action="store_true", help="keep the core (build/bench/gdb/)")
    ap.add_argument("--threads", type=int, default=0,
                    help="time every command on a core of this many threads instead")
    ap.add_argument("--ring-records", type=int, default=THREAD_RING,
                    help="PYREF_RING_RECORDS of the --threads core")
    ap.add_argument("--core", help="with --threads: reuse this core (and its facts.json)")
    ap.add_argument("--before", metavar="REV",
                    help="with --threads: also time REV's gdbext/ (git archive) per command")
    args = ap.parse_args()
    if args.threads:
        return threads_main(args)

    subprocess.run(["make", "-s", "-C", ROOT, "all"], check=True)
    m = machine()
    load0 = open("/proc/loadavg").read().split()[0]
    core, facts = make_core(args.python)
    sentinel = "0x%x" % facts["sentinel"]
    print("gdb-bench: core %s, %.0f MiB; %d records written (%.1f per workload item), "
          "sentinel %s" % (os.path.relpath(core, ROOT), facts["core_bytes"] / 2**20,
                           facts["written"], facts["per_item"], sentinel), flush=True)

    hist = "pyref history %s" % sentinel
    keys = ("ring", "history cold", "history warm", "leaks cold", "leaks warm", "start-up")
    times = {k: [] for k in keys}
    firsts = {}
    phases = []
    for i in range(args.sessions):
        res, wall = gdb_session(args.python, core, [hist, hist])
        times["history cold"].append(res[0]["seconds"])
        times["history warm"].append(res[1]["seconds"])
        times["start-up"].append(wall - res[0]["seconds"] - res[1]["seconds"])
        firsts["history"] = res[0]
        res, _ = gdb_session(args.python, core, ["pyref leaks", "pyref leaks"][:2 if i == 0
                                                                               else 1])
        times["leaks cold"].append(res[0]["seconds"])
        times["leaks warm"] += [r["seconds"] for r in res[1:]]
        firsts["leaks"] = res[0]
        res, _ = gdb_session(args.python, core, ["pyref ring"])
        times["ring"].append(res[0]["seconds"])
        firsts["ring"] = res[0]
        if i == 0:  # the analysis: once
            phases.append(gdb_run(args.python, core,
                                  PHASES_SCRIPT % {"obj": facts["sentinel"]}, "phases")[0])
        print("gdb-bench: session %d/%d done" % (i + 1, args.sessions), file=sys.stderr,
              flush=True)
    for r in firsts.values():
        if r["error"]:
            print("gdb-bench: %s: %s" % (r["command"], r["error"]), file=sys.stderr)
    scan = None if args.no_scan else scan_figure(args.update)
    load1 = open("/proc/loadavg").read().split()[0]

    def out(k):
        r = firsts[k]
        return ("error: " + r["error"]) if r["error"] else "`%s` (%d lines)" % (
            r["first_line"].strip(), r["lines"])

    lines = ["| what | sessions | median s | min s | max s | target | output |",
             "|---|---:|---:|---:|---:|---|---|",
             row("`pyref history SENTINEL`, cold", times["history cold"], HISTORY_TARGET_S,
                 out("history")),
             row("`pyref history SENTINEL`, warm (same session)", times["history warm"]),
             row("`pyref leaks`, cold", times["leaks cold"], None, out("leaks")),
             row("`pyref leaks`, warm (same session; first session only)",
                 times["leaks warm"]),
             row("`pyref ring`, cold (decodes the ring, no index)", times["ring"], None,
                 out("ring")),
             row("gdb start-up: python3.11, its debug info, the core, pyref (the session's "
                 "wall time outside the commands)", times["start-up"]),
             scan_row(scan, args.no_scan)]
    plines = ["| phase of a cold `pyref history` (one session) | median s | min s | max s |",
              "|---|---:|---:|---:|"]
    for k in [k for k in phases[0] if k != "agree"]:
        xs = [p[k] for p in phases]
        plines.append("| %s | %.3f | %.3f | %.3f |" % (k, statistics.median(xs), min(xs),
                                                        max(xs)))
    agree = all(p["agree"][0] == p["agree"][1] for p in phases)
    text = "\n".join(lines)
    ptext = "\n".join(plines)
    print()
    print(text)
    print()
    print(ptext)
    if not agree:
        print("gdb-bench: Ring.records_for and the index DISAGREE on the sentinel's records",
              file=sys.stderr)
    if scan:
        print("\nbench/bench_scan.py:\n  " + "\n  ".join(scan[0]))
    print("\ngdb-bench: %s; load average %s before, %s after" % (m["cpu"], load0, load1))

    if args.update:
        block = "\n".join([
            "Measured %s on %s (%s CPUs), %s, Linux %s; load average %s before the run, %s "
            "after." % (m["date"], m["cpu"], m["nproc"],
                        subprocess.check_output(["gdb", "--version"], text=True)
                        .splitlines()[0], m["kernel"], load0, load1),
            "",
            "Command: `/usr/bin/python3 bench/gdb_bench.py %s` (`make bench` runs it "
            "without options). Target: `%s` running bench/workload_ext.c traced "
            "(default settings, %.1f records per workload item) with PYREF_RING_RECORDS=%d "
            "(a %d MiB ring), %d records written (the ring wrapped %.0f× over), the "
            "sentinel's records spread over 90 %% of the ring, then abort; core %.0f MiB. "
            "Each figure from %d fresh `gdb -batch -nx -x gdbext/pyref-gdb.py %s CORE` "
            "sessions, timed inside gdb (time.perf_counter around gdb.execute)." % (
                " ".join(sys.argv[1:]), args.python, facts["per_item"], RING_RECORDS,
                RING_RECORDS * 32 >> 20,
                facts["written"], facts["written"] / RING_RECORDS,
                facts["core_bytes"] / 2**20, args.sessions, args.python),
            "",
            text,
            "",
            "*cold* = the first command of a fresh gdb (pyref has read and decoded nothing; "
            "the core itself is in the OS page cache); *warm* = the same command again in "
            "that session. Where a cold command's time goes (each phase from scratch, in "
            "one gdb; the byte search and the index %s on the sentinel's records):" % (
                "agree" if agree else "**disagree**"),
            "",
            ptext,
        ] + (["", "The owners scan's full table (live and core, `pyref owners` end to end) "
              "is bench/bench_scan.py's section, below."] if scan else []))
        compare.update_section(compare.RESULTS, SECTION, BEGIN, END, block)
        print("gdb-bench: wrote %s" % os.path.relpath(compare.RESULTS, ROOT))
    if not args.keep:
        os.remove(core)


if __name__ == "__main__":
    main()
