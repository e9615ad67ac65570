# pyref's GDB loader: `source /path/to/gdbext/pyref-gdb.py` (or gdb -x ...), or install it
# as an auto-load script. Puts gdbext/ on sys.path, checks GDB and Python, registers the
# `pyref` commands. Sourcing it again is harmless: nothing is registered twice.
import os
import sys

import gdb

# Modules that define `pyref` subcommands; a missing one is skipped.
SUBCOMMAND_MODULES = ("pyref.commands", "pyref.settings", "pyref.functions", "pyref.ringcmd", "pyref.why", "pyref.explain", "pyref.pystack", "pyref.watch", "pyref.owners")


def _load():
    gdb_major = int("".join(c for c in gdb.VERSION.split(".")[0] if c.isdigit()) or 0)
    if gdb_major < 12 or sys.version_info < (3, 9):
        gdb.write("pyref: needs GDB 12+ with Python 3.9+ (this is GDB %s with Python %d.%d);"
                  " not loaded\n" % (gdb.VERSION, sys.version_info[0], sys.version_info[1]))
        return
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import importlib
    import importlib.util
    for name in SUBCOMMAND_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                importlib.import_module(name)
        except Exception as e:  # one line, never a traceback
            gdb.write("pyref: cannot load %s: %s: %s\n" % (name, type(e).__name__, e))
    from pyref import commands
    commands.register()


_load()
