# pyref's GDB loader: `source /path/to/gdbext/pyref-gdb.py` (or gdb -x ...), or install it
# as an auto-load script. Puts gdbext/ on sys.path, checks that this GDB has what pyref
# needs, registers the `pyref` commands and, in an interactive session, says so in one
# line (once). Sourcing it again is harmless.
import os
import sys

import gdb


def _load():
    # gdb.TargetConnection (GDB 12) is what pyref tells a live process from a core with.
    if not hasattr(gdb, "TargetConnection") or sys.version_info < (3, 9):
        gdb.write("pyref: needs GDB 12+ with Python 3.9+ (this is GDB %s with Python %d.%d);"
                  " not loaded\n" % (gdb.VERSION, sys.version_info[0], sys.version_info[1]))
        return
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        import pyref
        pyref.register()
    except Exception as e:  # one line, never a traceback
        gdb.write("pyref: cannot load: %s: %s\n" % (type(e).__name__, e))
        return
    if not getattr(pyref, "announced", False) and _interactive():
        pyref.announced = True
        gdb.write(pyref.BANNER + "\n")


def _interactive():
    """True when someone types at this GDB: its standard input is a terminal and it was
    not started with -batch (where GDB prints nothing of its own either). GDB's Python
    has no word for batch mode, so its command line says, up to --args (the program's)."""
    try:
        if not os.isatty(0):
            return False
        with open("/proc/self/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    for a in argv[1:]:
        if a in (b"--args", b"--"):
            break
        if a.lstrip(b"-") in (b"batch", b"batch-silent"):
            return False
    return True


_load()
