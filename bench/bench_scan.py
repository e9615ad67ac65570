#!/usr/bin/python3
"""Speed of `pyref owners`' memory scan on a big process, live and from a core.

Builds a Python process with about --mib MiB of heap (pointer-rich small objects — tuples,
str, int, lists through pymalloc — and large bytes buffers through malloc), holds one
object at slot 3 of a list, and stops it with SIGABRT under gdb. Then, in gdb:

- the raw scan: scan.scan over every region `pyref owners` searches, for the object's
  address, through libc's wmemchr (the default) and, on a 256 MiB slice, bytes.find (the
  fallback without ctypes); GB/s of target memory;
- `pyref owners EXPR` end to end (all passes, attribution, the account), and with
  --depth 3, seconds;

once on the live process and once on a core written by gdb's gcore.

  bench/bench_scan.py                   print the table (newest pyenv interpreter, 1 GiB)
  bench/bench_scan.py --mib 256         a smaller process
  bench/bench_scan.py --update          ... and rewrite its section of bench/RESULTS.md
"""
import argparse
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOADER = os.path.join(ROOT, "gdbext", "pyref-gdb.py")
RESULTS = os.path.join(HERE, "RESULTS.md")
BEGIN = "<!-- bench_scan:begin (bench/bench_scan.py --update rewrites this part) -->"
END = "<!-- bench_scan:end -->"

TARGET = r'''
import os, sys
mib = int(sys.argv[2])
class Needle:
    pass
# About half the heap pointer-rich small objects, half large buffers.
n_small = mib * (1 << 20) // 2 // 160
small = [(i, str(i), [i]) for i in range(n_small)]
big = [bytes(8000) for _ in range(mib * (1 << 20) // 2 // 8000)]
L = [0, 1, 2, Needle()]
with open(os.path.join(sys.argv[1], "ids.json"), "w") as f:
    f.write('{"needle": %d}' % id(L[3]))
os.abort()
'''

MEASURE = r'''
import gdb, json, time
from pyref.inferior import memsearch, target
from pyref.reader import scan
addr = json.load(open("%(ids)s"))["needle"]
mem = memsearch.Memory([])
regions = mem.regions
total = sum(e - s for s, e in regions)
out = {"bytes": total, "regions": len(regions), "accelerated": scan.accelerated()}
def view(a, n):  # gdb's own buffer, no copy (target.read copies it into bytes)
    try:
        return gdb.selected_inferior().read_memory(a, n)
    except gdb.MemoryError as e:
        raise MemoryError(str(e)) from None


times = {"scan_s": [], "view_s": []}
for _ in range(3):  # interleaved, best of 3 each
    for key, read in (("scan_s", target.read), ("view_s", view)):
        res = scan.scan(read, regions, [addr])
        times[key].append(res.seconds)
out["scan_s"], out["view_s"] = min(times["scan_s"]), min(times["view_s"])
out["hits"] = len(res.hits.get(addr, []))
part, acc = [], 0
for s, e in regions:
    if acc >= 256 << 20:
        break
    e = min(e, s + (256 << 20) - acc)
    part.append((s, e))
    acc += e - s
res = scan.scan(target.read, part, [addr], use_libc=False)
out["find_bytes"], out["find_s"] = res.scanned, res.seconds
t = time.perf_counter()
for s, e in regions:
    pos = s
    while pos < e:
        n = min(scan.CHUNK, e - pos)
        try:
            target.read(pos, n)
        except target.MemoryReadError:
            pass
        pos += n
out["read_s"] = time.perf_counter() - t
t = time.perf_counter()
text = gdb.execute("pyref owners 0x%%x" %% addr, to_string=True)
out["owners_s"] = time.perf_counter() - t
out["owners_ok"] = "item [3]" in text and "0 unexplained" in text
out["owners_text"] = text
t = time.perf_counter()
text = gdb.execute("pyref owners --depth 3 0x%%x" %% addr, to_string=True)
out["depth_s"] = time.perf_counter() - t
out["depth_ok"] = "module '__main__' L" in text
out["owners_text"] += text
print("@@RESULT " + json.dumps(out))
'''


def newest_python():
    for minor in (13, 12, 11, 10):
        hits = sorted(glob.glob(os.path.expanduser(
            "~/.pyenv/versions/3.%d.*/bin/python3.%d" % (minor, minor))))
        if hits:
            return hits[-1]
    return "/usr/bin/python3.11d"


def gdb_run(args, script, cwd):
    cmd = ["gdb", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set width 0",
           "-ex", "set debuginfod enabled off", "-x", LOADER] + args
    with open(os.path.join(cwd, "measure.py"), "w") as f:
        f.write(script)
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=3600)
    m = re.search(r"^@@RESULT (.*)$", p.stdout, re.M)
    if not m:
        sys.exit("bench_scan: no result from gdb:\n" + p.stdout[-3000:] + p.stderr[-3000:])
    return json.loads(m.group(1))


def measure(python, mib, work):
    ids = os.path.join(work, "ids.json")
    target_py = os.path.join(work, "target.py")
    with open(target_py, "w") as f:
        f.write(TARGET)
    script = MEASURE % {"ids": ids}
    core = os.path.join(work, "core.bench")
    live = gdb_run(["-ex", "run", "-ex", "source measure.py",
                    "-ex", "generate-core-file " + core,
                    "--args", python, target_py, work, str(mib)], script, work)
    dead = gdb_run(["-ex", "source measure.py", python, core], script, work)
    os.unlink(core)
    return live, dead


def rows(python, mib, live, dead):
    out = []
    for kind, r in (("live", live), ("core", dead)):
        gb = r["bytes"] / 1e9
        out.append({
            "target": kind, "scanned": "%.0f MiB in %d regions" % (r["bytes"] / 2**20,
                                                                  r["regions"]),
            "scan": "%.2f GB/s (%.2f s)" % (gb / r["scan_s"], r["scan_s"]),
            "scan, no copy": "%.2f GB/s" % (gb / r["view_s"]),
            "read only": "%.2f GB/s" % (gb / r["read_s"]) if r["read_s"] else "-",
            "bytes.find": "%.2f GB/s" % (r["find_bytes"] / 1e9 / r["find_s"])
            if r["find_s"] else "-",
            "pyref owners": "%.2f s%s" % (r["owners_s"], "" if r["owners_ok"] else " (!)"),
            "--depth 3": "%.2f s%s" % (r["depth_s"], "" if r["depth_ok"] else " (!)"),
        })
    return out


def table(python, mib, cells):
    cols = ["target", "scanned", "scan", "scan, no copy", "read only", "bytes.find",
            "pyref owners", "--depth 3"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in cells:
        lines.append("| " + " | ".join(r[c] for c in cols) + " |")
    return "\n".join(lines)


def update_results(text):
    old = open(RESULTS).read() if os.path.exists(RESULTS) else ""
    block = BEGIN + "\n" + text.rstrip() + "\n" + END
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    with open(RESULTS, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=newest_python())
    ap.add_argument("--mib", type=int, default=1024, help="heap to build (MiB)")
    ap.add_argument("--update", action="store_true", help="rewrite bench/RESULTS.md's part")
    args = ap.parse_args()
    subprocess.check_call(["make", "-s", "-C", ROOT, "all"])
    work = tempfile.mkdtemp(prefix="pyref-bench-scan-")
    try:
        live, dead = measure(args.python, args.mib, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cells = rows(args.python, args.mib, live, dead)
    version = subprocess.check_output([args.python, "-c", "import sys; print(sys.version."
                                       "split()[0])"], text=True).strip()
    load = os.getloadavg()[0]
    head = ("Python %s, a process with %d MiB of heap; one address searched; best of 3 "
            "scans; wmemchr: %s; load average %.1f on %d CPUs" % (
                version, args.mib, "yes" if live["accelerated"] else "no (bytes.find)",
                load, os.cpu_count()))
    body = table(args.python, args.mib, cells)
    print(head)
    print(body)
    for kind, r in (("live", live), ("core", dead)):
        if not (r["owners_ok"] and r["depth_ok"]):
            print("warning (%s): pyref owners did not find the list slot:\n%s" %
                  (kind, r["owners_text"]))
    if args.update:
        text = ("## pyref owners: memory scan (bench/bench_scan.py)\n\n"
                "Measured %s. %s.\n\n%s\n\n"
                "scan = scan.scan over every region pyref owners searches, as pyref owners "
                "runs it (1 MiB reads through target + wmemchr); no copy = wmemchr on "
                "gdb's own buffer (no copy into bytes); read only = the "
                "reads without the search; "
                "bytes.find = the fallback search without ctypes, on 256 MiB; pyref owners "
                "= the command end to end (a pass for the object, one for the list's item "
                "array, attribution, the account); --depth 3 = up to the module (5 "
                "passes).\n" % (
                    datetime.date.today().isoformat(), head, body))
        update_results(text)
        print("bench/RESULTS.md updated")


if __name__ == "__main__":
    main()
