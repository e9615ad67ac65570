"""Cost of the runtime's hooks, per interpreter: ns added per recorded transition by the
interest-table store (FREE capture) and by the Python-context read (PYREF_PYCONTEXT=1),
and ns added per PyObject_Free by the allocator hook.

    python3 bench/hooks_bench.py [PYTHON...]     (default: every tests/ interpreter)

Builds tests/ext/frees_ext.c twice (traced without hooks; traced with hooks) and times, in
fresh processes taking turns, `loop(obj, n)` (n INCREF/DECREF pairs from C) and
`alloc_free(n, 32, batch)` (PyObject_Malloc/PyObject_Free pairs) with the free hook off
(PYREF_FREES=0) and on. Each figure is the minimum over ROUNDS processes of the minimum
over REPEAT runs.
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import pyreftest  # noqa: E402
import test_frees  # noqa: E402

N = 20_000_000
NFREE = 4_000_000
REPEAT = 5
ROUNDS = 5

SCRIPT = r'''
import sys, time
sys.path.insert(0, sys.argv[1]); import frees_ext as ext
what, n = sys.argv[2], int(sys.argv[3]); o = object(); best = 1e9
for _ in range(%d):
    t = time.perf_counter()
    if what == "loop":
        ext.loop(o, n)
    else:
        ext.alloc_free(n, 32, int(what))
    best = min(best, time.perf_counter() - t)
print(best / (2 * n if what == "loop" else n) * 1e9)
''' % REPEAT


def run(python, moddir, what, n, env=None):
    e = dict(os.environ)
    e.update(env or {})
    out = subprocess.check_output([python, "-c", SCRIPT, moddir, what, str(n)], env=e,
                                  text=True)
    return float(out)


def bench(python):
    with tempfile.TemporaryDirectory() as tmp:
        shim, hooks = os.path.join(tmp, "shim"), os.path.join(tmp, "hooks")
        os.mkdir(shim)
        os.mkdir(hooks)
        pyreftest.build_ext(test_frees.SRC, python, shim)
        test_frees.build_hooked(python, hooks)
        cases = {
            "shim": (shim, "loop", N, {}),
            "interest": (hooks, "loop", N, {"PYREF_PYCONTEXT": "0"}),
            "pyctx": (hooks, "loop", N, {"PYREF_PYCONTEXT": "1"}),
            "free1-off": (hooks, "1", NFREE, {"PYREF_FREES": "0"}),
            "free1-on": (hooks, "1", NFREE, {}),
            "free64k-off": (hooks, "65536", NFREE, {"PYREF_FREES": "0"}),
            "free64k-on": (hooks, "65536", NFREE, {}),
        }
        t = {k: 1e9 for k in cases}
        for _ in range(ROUNDS):
            for k, (d, what, n, env) in cases.items():
                t[k] = min(t[k], run(python, d, what, n, env))
    print("%s\n  per transition: shim %.2f ns, +interest store %+.2f ns, +python context "
          "%+.2f ns\n  per PyObject_Free: same block %+.2f ns (%.2f -> %.2f), "
          "64Ki blocks %+.2f ns (%.2f -> %.2f)" % (
              python, t["shim"], t["interest"] - t["shim"], t["pyctx"] - t["interest"],
              t["free1-on"] - t["free1-off"], t["free1-off"], t["free1-on"],
              t["free64k-on"] - t["free64k-off"], t["free64k-off"], t["free64k-on"]))
    sys.stdout.flush()


if __name__ == "__main__":
    pythons = sys.argv[1:] or [p.values[0] for p in pyreftest.interpreters() if not p.marks]
    for p in pythons:
        bench(p)
