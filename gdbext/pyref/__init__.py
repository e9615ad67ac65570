"""pyref's reader side: finds, decodes and reasons about the reference-count rings that the
pyref runtime records in a traced CPython extension (format: docs/ring-format.md), in a
live process under GDB, a core dump, or a raw memory image. The package is the pipeline,
bytes -> facts -> findings -> words, one folder per step (docs/architecture.md):

    reader/    bytes in, facts out: the ring format and decoder, call sites, ELF cores, the
               pointer scan, Python frames. gdb-free: every function takes read(addr, size)
    rules/     facts in, findings out: events and lifetimes, the ownership verdict, the
               leak analysis, the owners report, the C-API table. gdb-free
    inferior/  the only code that touches the target through gdb: memory, mappings,
               symbols, DWARF layouts, objects, the rings, frames, the memory search
    commands/  the user's words: `pyref ...` commands, `set/show pyref`, `$pyref_*`

errors.py holds what every layer shares (PyrefError, the reader contract ReadError).
Nothing below inferior/ imports gdb (tests/unit/test_layers.py checks); importing any
module registers nothing: the loader (gdbext/pyref-gdb.py) calls register().
"""

__version__ = "0.1.0"  # = pyref_version in c_helpers/ring.c (tests/gdb/test_layout.py checks)

# What the loader (gdbext/pyref-gdb.py) says once when pyref loads into an interactive GDB.
BANNER = ('pyref %s: reference-count history of C extensions; "help pyref" lists its '
          'commands' % __version__)
announced = False  # the banner was printed in this GDB

# The modules whose register() creates the `pyref` commands, `set/show pyref`, the
# backtrace filter and the `$pyref_*` functions, in the order `help pyref` has no say in
# (gdb sorts it).
COMMAND_MODULES = ("settings", "backtrace", "functions", "show", "ring", "history", "why",
                   "explain", "pystack", "watch", "owners", "leaks")


def register():
    """Registers everything pyref adds to GDB. Registering again is harmless: each
    command, parameter and function is created once."""
    import importlib

    from pyref import commands
    from pyref.inferior import target
    target.connect_events()
    commands.register()
    for name in COMMAND_MODULES:
        importlib.import_module("pyref.commands." + name).register()
