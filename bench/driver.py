"""Runs inside the interpreter under test (3.10+): times micro_untraced.pairs and
micro_traced.pairs, interleaved round by round, and prints one JSON line.

Usage: PY bench/driver.py MODULE_DIR LIBPYREF PAIRS ROUNDS

Output: {"untraced": [ns per transition, ...], "traced": [...], "recorded": N,
"expected": N, "capacity": C} — `recorded` is the sum of the ring's thread heads read
through libpyref's exported `pyref_ring` (it must equal `expected`: every transition of the
traced loop was recorded, none was optimised away).
"""
import ctypes
import json
import sys


def ring_heads(lib):
    """(sum of all descriptors' head, capacity) of the process's ring, or (0, 0)."""
    addr = ctypes.c_void_p.in_dll(lib, "pyref_ring").value
    if not addr:
        return 0, 0
    hdr = ctypes.string_at(addr, 64)
    capacity = int.from_bytes(hdr[20:24], "little")
    table_off = int.from_bytes(hdr[48:52], "little")
    desc_size = int.from_bytes(hdr[52:56], "little")
    max_threads = int.from_bytes(hdr[56:60], "little")
    total = 0
    for i in range(max_threads):
        desc = ctypes.string_at(addr + table_off + i * desc_size, 16)
        total += int.from_bytes(desc[8:16], "little")
    return total, capacity


def main():
    moddir, libpath = sys.argv[1], sys.argv[2]
    pairs, rounds = int(sys.argv[3]), int(sys.argv[4])
    sys.path.insert(0, moddir)
    import micro_traced
    import micro_untraced

    lib = ctypes.CDLL(libpath)  # the same libpyref.so the traced module loaded
    objs = [object() for _ in range(8)]
    mods = {"untraced": micro_untraced, "traced": micro_traced}
    for mod in mods.values():  # warm up: page in the ring, register the thread
        mod.pairs(objs, pairs)
    base, capacity = ring_heads(lib)
    out = {name: [] for name in mods}
    for r in range(rounds):
        order = ("untraced", "traced") if r % 2 == 0 else ("traced", "untraced")
        for name in order:
            out[name].append(mods[name].pairs(objs, pairs) / (2.0 * pairs))
    recorded, _ = ring_heads(lib)
    out["recorded"] = recorded - base
    # each call also takes and drops one reference to each object, untimed
    out["expected"] = rounds * (2 * pairs + 2 * len(objs))
    out["capacity"] = capacity
    out["rounds"] = rounds
    print(json.dumps(out))


if __name__ == "__main__":
    main()
