"""Runs inside the interpreter under test (3.10+, plain, under ASan or under valgrind): one
fresh process per measurement of bench/compare.py. Imports one build of
bench/workload_ext.c, runs a warm-up pass, then times PASSES passes of run(N, callback,
EVERY) and prints one JSON line.

Usage: PY bench/workload.py MODULE_DIR MODNAME N EVERY PASSES [LIBPYREF]

Output: {"seconds": [wall per pass], "cpu": [process CPU time per pass], "checksum": C,
"records": R or null, "capacity": records a thread's ring holds, or null} — `records` is how
many records the ring gained during the timed passes (the sum of its thread heads, read
through libpyref's exported `pyref_ring`, as bench/driver.py does), when the module loaded
LIBPYREF; null for an untraced build. The checksum is the same for every build.
"""
import importlib
import json
import os
import sys
import time


def callback(t):
    """What the extension calls every EVERY-th tuple: a little Python work on the tuple."""
    return t[0] & 7


def loaded_libpyref(path):
    """The ctypes handle of libpyref when this process already has it loaded, else None."""
    if not path:
        return None
    import ctypes
    try:
        return ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
    except OSError:
        return None


def main():
    moddir, modname = sys.argv[1], sys.argv[2]
    n, every, passes = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    libpath = sys.argv[6] if len(sys.argv) > 6 else None
    sys.path.insert(0, moddir)
    mod = importlib.import_module(modname)
    mod.run(max(1, n // 8), callback, every)  # warm up: page in code, register the thread

    lib = loaded_libpyref(libpath)
    if lib is not None:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from driver import ring_heads
        before = ring_heads(lib)[0]
    seconds, cpu, checksum = [], [], None
    for _ in range(passes):
        c0, t0 = time.process_time(), time.perf_counter()
        checksum = mod.run(n, callback, every)
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    heads, capacity = ring_heads(lib) if lib is not None else (None, None)
    records = heads - before if lib is not None else None
    print(json.dumps({"seconds": seconds, "cpu": cpu, "checksum": checksum, "records": records,
                      "capacity": capacity}))


if __name__ == "__main__":
    main()
