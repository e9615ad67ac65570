"""Imports routesext, makes N INCREF/DECREF pairs, then either reads this process's own
pyref ring (through ctypes and gdbext's gdb-free decoder) and prints what it holds, or
aborts for a core.

Usage: python driver.py MODULE_DIR GDBEXT_DIR N count|abort
Prints: the libpyref.so in use, then (count) the number of records whose site is in
routesext.c, or (abort) the address of the churned object before aborting.
"""
import ctypes
import os
import sys

moddir, gdbext, n, action = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, moddir)
import routesext  # noqa: E402

obj = object()
routesext.churn(obj, n)
with open("/proc/self/maps") as f:
    libs = sorted({line.split()[-1] for line in f if line.rstrip().endswith("/libpyref.so")})
print("libpyref", libs[0] if libs else "none", flush=True)
if action == "abort":
    print("obj 0x%x" % id(obj), flush=True)
    os.abort()

sys.path.insert(0, gdbext)
from pyref.reader import decode, sites  # noqa: E402

if not libs:  # the static runtime: pyref_ring is in the extension itself
    lib = ctypes.CDLL(routesext.__file__)
else:
    lib = ctypes.CDLL(libs[0])
ring_addr = ctypes.c_void_p.in_dll(lib, "pyref_ring").value
ring = decode.decode_ring(lambda addr, size: ctypes.string_at(addr, size), ring_addr)
files = {}
mine = 0
for rec in ring.records_for(id(obj)):
    if rec.site not in files:
        s = sites.read_site(lambda addr, size: ctypes.string_at(addr, size), rec.site)
        files[rec.site] = os.path.basename(s.file) if s else None
    mine += files[rec.site] == "routesext.c" and rec.op_name in ("INCREF", "DECREF", "DEALLOC")
print("records", mine, flush=True)
