"""Drives forksig_ext for tests/gdb/test_fork_signal.py, then aborts for a core.

Usage: python forksig_driver.py MODULE_DIR signal|fork

signal  the main thread churns while a SIGALRM handler (every 20 us) does its own
        INCREF/DECREF pairs; prints "handler CALLS WRITTEN DROPPED OBJ HOBJ".
fork    the main thread churns 100 pairs, a worker thread 50 pairs and stays alive, then
        os.fork(): the child churns 10 pairs in ./child and aborts; the parent waits, churns
        5 pairs and aborts. Prints "objs OBJ WOBJ PARENT_PID" and "child PID STATUS".
"""
import os
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])
import forksig_ext as m  # noqa: E402

mode = sys.argv[2]
if mode == "signal":
    obj, hobj = [], []
    m.churn(obj, 1, 0)
    m.hammer(hobj, 20)
    t0 = time.monotonic()
    while True:
        m.churn(obj, 2000, 2)
        calls, written, dropped = m.counts()
        if calls >= 4000 and dropped >= 20 and written >= 20 or time.monotonic() - t0 > 20:
            break
    calls, written, dropped = m.stop()
    print("handler", calls, written, dropped, id(obj), id(hobj), flush=True)
    m.crash()
elif mode == "fork":
    obj, wobj = [], []
    m.churn(obj, 100, 0)
    ready, release = threading.Event(), threading.Event()

    def worker():
        m.churn(wobj, 50, 0)
        ready.set()
        release.wait()

    threading.Thread(target=worker, daemon=True).start()
    ready.wait()
    print("objs", id(obj), id(wobj), os.getpid(), flush=True)
    pid = os.fork()
    if pid == 0:
        os.chdir("child")
        m.churn(obj, 10, 0)
        m.crash()
    _, status = os.waitpid(pid, 0)
    print("child", pid, status, flush=True)
    m.churn(obj, 5, 0)
    m.crash()
