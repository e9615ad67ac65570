"""ns per recorded transition at the optimisation levels users build debug extensions with:
-O0 (a `-O0 -g` debug build), -Og (setuptools' default with python3.11d) and -O2, traced
against untraced, per interpreter.

    python3 bench/opt_levels.py [--n N] [--rounds R] [ID...]   (default ids: 3.11d 3.14)

Builds tests/ext/frees_ext.c (`loop(obj, n)`: n Py_INCREF/Py_DECREF pairs from C) untraced
and traced at each level, and times loop() in fresh processes taking turns; each figure is
the minimum over ROUNDS processes of the minimum over 5 runs, in ns per transition (one
INCREF or DECREF). Recording stays on with its defaults (FREE capture on, PYCTX off).
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import pyreftest  # noqa: E402

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "frees_ext.c")
LEVELS = ("-O0", "-Og", "-O2")
SCRIPT = r'''
import sys, time
sys.path.insert(0, sys.argv[1]); import frees_ext as ext
n = int(sys.argv[2]); o = object(); best = 1e9
for _ in range(5):
    t = time.perf_counter(); ext.loop(o, n); best = min(best, time.perf_counter() - t)
print(best / (2 * n) * 1e9)
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2_000_000, help="INCREF/DECREF pairs per run")
    ap.add_argument("--rounds", type=int, default=5, help="processes per build")
    ap.add_argument("ids", nargs="*", default=["3.11d", "3.14"])
    opts = ap.parse_args()
    print("| interpreter | level | untraced ns | traced ns | added ns | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for ident in opts.ids:
        python, why = pyreftest.interpreter(ident)
        if python is None:
            print("| %s | skipped: %s |" % (ident, why))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            dirs = {}
            for level in LEVELS:
                for traced in (False, True):
                    d = os.path.join(tmp, "%s-%d" % (level, traced))
                    os.mkdir(d)
                    pyreftest.build_ext(SRC, python, d, traced=traced, extra_cflags=[level])
                    dirs[level, traced] = d
            best = {k: 1e9 for k in dirs}
            for _ in range(opts.rounds):
                for k, d in dirs.items():
                    out = subprocess.check_output([python, "-c", SCRIPT, d, str(opts.n)],
                                                  text=True)
                    best[k] = min(best[k], float(out))
            for level in LEVELS:
                u, t = best[level, False], best[level, True]
                print("| %s | %s | %.2f | %.2f | %.2f | %.2fx |" % (ident, level, u, t, t - u,
                                                                    t / u))


if __name__ == "__main__":
    main()
