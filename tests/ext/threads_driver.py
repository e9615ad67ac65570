"""THREADS threads each churn their own list with PAIRS balanced INCREF/DECREF pairs at
once (tests/ext/threads_ext.c), then the process aborts for a core.

Usage: python threads_driver.py MODULE_DIR THREADS PAIRS
"""
import os
import sys
import threading

sys.path.insert(0, sys.argv[1])
import threads_ext  # noqa: E402

nthreads, pairs = int(sys.argv[2]), int(sys.argv[3])
objs = [["churned", i] for i in range(nthreads)]
start = threading.Barrier(nthreads)


def run(obj):
    start.wait()
    threads_ext.churn(obj, pairs)


threads = [threading.Thread(target=run, args=(o,)) for o in objs]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("objs", *[id(o) for o in objs], flush=True)
os.abort()
