"""pyref_mark: label a point of a program's history in the pyref ring from Python.

    import pyref_mark
    pyref_mark.mark("phase 2")      # True when a MARK record was written

    python -m pyref_mark [--repeat N] SCRIPT [ARGS...]

runs SCRIPT (as `python SCRIPT ARGS...` would, once per run) N times in one process
(default $PYREF_REPEAT, which `pyref-run --repeat N` sets, or 1), each run between
`test:start SCRIPT #K` and `test:end SCRIPT #K` marks with the singletons' drift, as the
pytest plugin marks a test: `pyref-run --repeat 3 -- python -m pyref_mark script.py`
reports what grows from run to run. Its exit status is the last run's.

`mark(label)` calls the runtime's `pyref_mark()` (c_helpers/include/pyref/ring.h) by ctypes
in the libpyref.so that the process's traced extensions already loaded: it never loads
the library itself (that would start a ring no traced code writes to), so before a traced
extension is imported, or in a process without one, it writes nothing and returns False.
`pyref leaks` names each leaked reference by the last label before its acquisition
(`pyref-run` prints them). The label is encoded as UTF-8 and cut at 240 bytes.

$PYREF_LIB, when set, names the library file to look for instead of libpyref.so (a copy
under another name). No dependency beyond the standard library.
"""
import ctypes
import os
import runpy
import sys

_fn = None


def _lookup():
    """The process's pyref_mark, or None while no libpyref is loaded."""
    global _fn
    if _fn is None:
        mode = getattr(os, "RTLD_NOLOAD", 4) | getattr(os, "RTLD_LAZY", 1)
        for name in filter(None, (os.environ.get("PYREF_LIB"), "libpyref.so")):
            try:
                lib = ctypes.CDLL(name, mode=mode)
            except OSError:
                continue
            fn = lib.pyref_mark
            fn.argtypes = [ctypes.c_char_p]
            fn.restype = None
            _fn = fn
            break
    return _fn


def available():
    """True when a libpyref is loaded in this process (a mark would be written)."""
    return _lookup() is not None


def mark(label):
    """Writes a MARK record labelled `label` (str or bytes) on the calling thread's ring.
    Returns True when the runtime was there to write it."""
    fn = _lookup()
    if fn is None:
        return False
    fn(label.encode("utf-8", "replace") if isinstance(label, str) else bytes(label))
    return True


# Singletons whose counts mean something: 3.12 made them immortal.
SINGLETONS = (("None", None), ("True", True), ("False", False), ("Ellipsis", Ellipsis),
              ("NotImplemented", NotImplemented)) if sys.version_info < (3, 12) else ()


def singleton_counts():
    """sys.getrefcount() of each of SINGLETONS (empty on 3.12+)."""
    return [sys.getrefcount(obj) for _, obj in SINGLETONS]


def drift_label(before, after):
    """'None=-100 True=2', the singletons whose counts changed between two
    singleton_counts(); '' when none did."""
    return " ".join("%s=%d" % (name, a - b) for (name, _), a, b in
                    zip(SINGLETONS, after, before) if a != b)


def run_repeated(script, args, n):
    """Runs `script` n times as __main__ with sys.argv = [script] + args, each run marked
    (module docstring). Returns the last run's exit status."""
    status = 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    for k in range(1, n + 1):
        label = "%s #%d" % (script, k)
        sys.argv = [script] + list(args)
        mark("test:start " + label)
        before = singleton_counts()
        try:
            runpy.run_path(script, run_name="__main__")
            status = 0
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        drift = drift_label(before, singleton_counts())
        if drift:
            mark("test:drift " + drift)
        mark("test:end " + label)
    return status


def main(argv):
    n = int(os.environ.get("PYREF_REPEAT") or 1)
    if argv[:1] == ["--repeat"] and len(argv) > 1:
        n, argv = int(argv[1]), argv[2:]
    if not argv or n < 1:
        sys.stderr.write("usage: python -m pyref_mark [--repeat N] SCRIPT [ARGS...]\n")
        return 2
    return run_repeated(argv[0], argv[1:], n)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
