"""Target for tests/gdb/test_owners.py and tests/gdb/test_leaks.py: one object per kind of holder,
their addresses written for gdb, then a stop inside a C function of owners_ext (a
breakpoint on owners_stop when run under gdb, else its SIGABRT: a core).

    python owners_target.py MODDIR OUTDIR [owners|leak|correct] [CALLS]

owners   a Token at L[3] (L holds itself at L[4]), D['k'], H.attr, in the C static
         held_static, in the local `pylocal` of main(), and in the C local held_local
         of hold_local() (the stop)
leak     CALLS Tokens, each passed once to leak_ref (one reference leaked per call)
correct  CALLS Tokens, each passed once to balanced (no reference leaked)

OUTDIR/ids.gdb  `set $o_NAME = 0x...` for each object
"""
import os
import sys


class Token:
    """What the holders hold: a plain instance, referenced once."""


class Holder:
    pass


def main(moddir, outdir, mode="owners", calls=1000):
    sys.path.insert(0, moddir)
    import owners_ext
    ids = {}
    if mode == "owners":
        global L, D, H
        L = [0, 1, 2, Token()]
        L.append(L)  # a cycle for --depth
        D = {"a": 1, "k": Token(), "z": 26}
        H = Holder()
        H.first = 1
        H.attr = Token()
        owners_ext.hold_static(Token())
        ids["list_item"] = id(L[3])
        ids["dict_value"] = id(D["k"])
        ids["attribute"] = id(H.attr)
        ids["list"] = id(L)
        ids["static"] = id(_static_of())
    elif mode == "leak":
        global KEPT
        KEPT = [Token() for _ in range(calls)]
        for t in KEPT:
            owners_ext.leak_ref(t)
    else:
        global KEEP
        KEEP = [Token() for _ in range(calls)]
        for t in KEEP:
            owners_ext.balanced(t)
    pylocal = Token()  # a local of this Python frame while hold_local runs
    ids["pylocal"] = id(pylocal)
    with open(os.path.join(outdir, "ids.gdb"), "w") as f:
        for name, addr in ids.items():
            f.write("set $o_%s = 0x%x\n" % (name, addr))
    if mode == "owners":
        owners_ext.hold_local(Token)
    else:
        owners_ext.stop()
    return pylocal


def _static_of():
    """The object hold_static keeps, found without keeping a reference of our own: the
    only Token alive whose holders are none of ours (gc knows every instance)."""
    import gc
    ours = {id(L[3]), id(D["k"]), id(H.attr)}
    for o in gc.get_objects():
        if type(o) is Token and id(o) not in ours:
            return o
    raise SystemExit("the static's Token was not found")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(sys.argv[3:4]),
         *([int(sys.argv[4])] if len(sys.argv) > 4 else []))
