"""Target for tests/gdb/test_leaks.py: references returned to Python by a traced extension
(tests/ext/leaks_ext.c) and kept there, beside real leaks, then a stop inside the
extension (a breakpoint on leaks_stop under gdb, else its SIGABRT: a core).

    python leaks_target.py MODDIR OUTDIR N

RETURNED   N Tokens, each from new_ref (Py_NewRef) and kept in this list only: held
INTS       N ints from new_int (PyLong_FromLong), kept in this list only: held
ALSO       N Kept objects, each in this list and leaked once by leak_ref: count 2, one
           holder found, one reference leaked
(nowhere)  N Tokens leaked once by leak_ref and referenced from nowhere: leaked
           one Token whose only holder is a leaked Holder's attribute: held (a leaked
           object still holds its references)
           one Token leaked once, that a list since freed pointed to: the stale word in
           freed memory must not count
BYTES      a bytearray whose bytes spell the address of the first leaked Token 8 times:
           words of a byte buffer are data, not holders

OUTDIR/ids.gdb  `set $o_NAME = 0x...` for some of them
"""
import os
import struct
import sys


class Token:
    """A plain instance, referenced once."""


class Kept:
    """A plain instance held by ALSO and leaked once."""


class Holder:
    pass


def leak_fresh(ext, cls):
    """A new object leaked by the extension, with no other reference left: returns its
    address only."""
    obj = cls()
    ext.leak_ref(obj)
    return id(obj)


def leak_holding(ext):
    """A leaked Holder whose attribute holds the only reference to a returned Token."""
    h = Holder()
    h.token = ext.new_ref(Token())
    ext.leak_ref(h)
    return id(h), id(h.token)


def leak_after_freed_list(ext):
    """A leaked Token that a list, freed since, also pointed to."""
    t = Token()
    ext.leak_ref(t)
    tmp = [t] * 100             # a malloc block, not pymalloc: freed, its words stay
    del tmp
    return id(t)


def main(moddir, outdir, n):
    sys.path.insert(0, moddir)
    import leaks_ext
    global RETURNED, INTS, ALSO, VAR
    RETURNED = [leaks_ext.new_ref(Token()) for _ in range(n)]
    INTS = [leaks_ext.new_int(10 ** 9 + i) for i in range(n)]
    ALSO = [Kept() for _ in range(n)]
    for kept in ALSO:
        leaks_ext.leak_ref(kept)
    del kept
    leaked = [leak_fresh(leaks_ext, Token) for _ in range(n)]
    global BYTES
    BYTES = bytearray(64)       # written in place: no bytes object spells the address too
    struct.pack_into("<8Q", BYTES, 0, *[leaked[0]] * 8)
    holder, held_by_leaked = leak_holding(leaks_ext)
    stale = leak_after_freed_list(leaks_ext)
    ids = {"returned": id(RETURNED[0]), "int": id(INTS[0]), "also": id(ALSO[0]),
           "leaked": leaked[0], "holder": holder, "held_by_leaked": held_by_leaked,
           "stale": stale}
    with open(os.path.join(outdir, "ids.gdb"), "w") as f:
        for name, addr in ids.items():
            f.write("set $o_%s = 0x%x\n" % (name, addr))
    leaks_ext.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
