# GDB auto-load hook, installed as PREFIX/lib/libpyref.so-gdb.py: GDB runs it when a
# process or core it debugs maps PREFIX/lib/libpyref.so, if `auto-load safe-path` allows
# that directory (add-auto-load-safe-path PREFIX/lib). It runs the loader installed in
# PREFIX/share/pyref/gdbext; loading pyref twice is harmless.
#
# The loader is run with globals of its own rather than through `source`: GDB runs scripts
# in __main__ and keeps an outer script's __file__ there, which the loader would misread.
def _pyref_autoload():
    import os
    import gdb
    lib = os.path.dirname(os.path.realpath(__file__))
    loader = os.path.normpath(os.path.join(lib, "..", "share", "pyref", "gdbext",
                                           "pyref-gdb.py"))
    if not os.path.isfile(loader):
        gdb.write("pyref: %s: no pyref loader at %s; source pyref-gdb.py by hand\n"
                  % (__file__, loader))
        return
    with open(loader) as f:
        code = compile(f.read(), loader, "exec")
    exec(code, {"__file__": loader, "__name__": "pyref_gdb_loader"})


_pyref_autoload()
del _pyref_autoload
