"""pyref_mark: label a point of a program's history in the pyref ring from Python.

    import pyref_mark
    pyref_mark.mark("phase 2")      # True when a MARK record was written

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
