"""pyref-run's overhead: the same traced program run bare and under bin/pyref-run, the
whole command (process start to exit; pyref-run's gdb start, stop, leak analysis and
report included), median of ROUNDS interleaved rounds, and the ratio: wall time, and CPU
time (user + system of the command and everything it waited for: gdb, the program), which
other load on the machine does not inflate.

    /usr/bin/python3 bench/pyref_run_bench.py [--rounds 5] [--python python3.11d]

Programs (all on the project's own test extensions, built traced, both runs recording):
- pytest, 3 tests: tests/ext/leakcheck/suite on leakcheck_ext built -DFIXED (no leak);
- pytest, 300 tests: 300 generated tests calling leakcheck_ext.remember 1000 times each,
  for the plugin's per-test cost (6 marks' records a test) and a full ring to analyse;
- workload: bench/workload.py on bench/workload_ext.c, 500k tuples a pass, 3 passes.
Prints a markdown table.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import pyreftest  # noqa: E402

PYREF_RUN = os.path.join(ROOT, "bin", "pyref-run")
LEAKCHECK = os.path.join(ROOT, "tests", "ext", "leakcheck")


def build_workload(python, outdir):
    suffix = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        text=True).strip()
    cflags = pyreftest.pyref_flags(python, "--cflags")
    libs = pyreftest.pyref_flags(python, "--libs")
    out = os.path.join(outdir, "wl_traced" + suffix)
    subprocess.run(["gcc", "-O2", "-g", "-fPIC", "-shared"] + cflags +
                   ["-DMODNAME=wl_traced", os.path.join(ROOT, "bench", "workload_ext.c"),
                    "-o", out] + libs, check=True, capture_output=True, text=True)
    return outdir


def many_tests(d, n):
    os.makedirs(d)
    with open(os.path.join(d, "test_many.py"), "w") as f:
        f.write("import leakcheck_ext\n\n")
        for i in range(n):
            f.write("def test_%d():\n    for _ in range(1000):\n"
                    "        leakcheck_ext.remember(object())\n\n" % i)
    return d


def _cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, cwd, env):
    """(wall seconds, CPU seconds, status, stderr) of one run."""
    c0, t0 = _cpu(), time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - t0, _cpu() - c0, p.returncode, p.stderr


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--python", default="/usr/bin/python3.11d")
    args = ap.parse_args(argv)
    py = args.python
    pyreftest.ensure_runtime()
    with tempfile.TemporaryDirectory(prefix="pyref-run-bench.") as tmp:
        mod = os.path.join(tmp, "mod")
        os.makedirs(mod)
        pyreftest.build_ext(os.path.join(LEAKCHECK, "leakcheck_ext.c"), py, mod,
                            extra_cflags=("-DFIXED", "-O2"))
        build_workload(py, mod)
        suite = os.path.join(tmp, "suite")
        shutil.copytree(os.path.join(LEAKCHECK, "suite"), suite)
        many = many_tests(os.path.join(tmp, "many"), 300)
        env = dict(os.environ, PYTHONPATH=mod, PYTHONDONTWRITEBYTECODE="1")
        pytest_args = ["-m", "pytest", "-q", "-p", "no:cacheprovider"]
        programs = [
            ("pytest, 3 tests", [py] + pytest_args, suite),
            ("pytest, 300 tests x 1000 calls", [py] + pytest_args, many),
            ("workload.py, 3 x 500k tuples", [py, os.path.join(ROOT, "bench", "workload.py"),
                                            mod, "wl_traced", "500000", "8", "3"], tmp),
        ]
        rows = []
        for label, cmd, cwd in programs:
            bare, run = [], []
            for _ in range(args.rounds):
                wall, cpu, rc, err = timed(cmd, cwd, env)
                assert rc == 0, err
                bare.append((wall, cpu))
                wall, cpu, rc, err = timed([PYREF_RUN, "--"] + cmd, cwd, env)
                assert rc == 0, err
                assert "no leaks" in err, err
                run.append((wall, cpu))
            med = [statistics.median(x[k] for x in v) for v in (bare, run) for k in (0, 1)]
            rows.append((label,) + tuple(med))
            print("%s: bare %.2f s wall, %.2f s CPU; pyref-run %.2f s wall, %.2f s CPU" %
                  ((label,) + tuple(med)), file=sys.stderr)
    print("| program (%s, median of %d) | bare wall / CPU | pyref-run wall / CPU | ratio "
          "wall / CPU | added CPU |" % (os.path.basename(py), args.rounds))
    print("|---|---:|---:|---:|---:|")
    for label, bw, bc, rw, rc in rows:
        print("| %s | %.2f / %.2f s | %.2f / %.2f s | x%.2f / x%.2f | +%.2f s |" % (
            label, bw, bc, rw, rc, rw / bw, rc / bc, rc - bc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
