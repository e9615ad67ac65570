"""Target for tests/gdb/test_gdb_show.py: builds one object of each kind `pyref show` knows,
writes their addresses and expected reference counts, then stops with SIGABRT (a live
stop under gdb, or a core dump).

    python objects_target.py OUTDIR

OUTDIR/ids.gdb   `set $o_NAME = 0x...` for each object, for gdb to `source`
OUTDIR/ids.json  {"ids": {NAME: [address, refcount or null]}, "sizes": {NAME: bytes}}

Run it with PYTHONMALLOC=debug on a release build so that freed memory is filled with 0xDD.
"""
import ctypes
import json
import os
import sys


class Plain:
    def __init__(self):
        self.alpha = 1
        self.beta = "two"


class Outer:
    class Inner:
        def method(self):
            pass


def free_function():
    pass


def main(outdir):
    objs = {
        "int_small": 7,
        "int_zero": 0,
        "int_large": 2 ** 100 + 12345,
        "int_neg": -(2 ** 70) - 5,
        "int_huge": 7 ** 5000,
        "str_ascii": "".join(["hello", " ", "world"]),
        "str_latin1": "".join(["caf", "\xe9"]),
        "str_ucs2": "".join(["\u20ac", "uro"]),
        "str_ucs4": "".join(["smile ", "\U0001F600"]),
        "str_long": "ab" * 5000,
        "bytes": bytes([0, 65, 66, 255]),
        "float": float("3.25"),
        "tuple": (1, "two", 3.5),
        "tuple1": (int("5"),),
        "tuple0": (),
        "list": [1, [2, 3], "x"],
        "list0": [],
        "dict": {"a": 1, "b": [2]},
        "dict_int_keys": {1: "one", 2: "two"},
        "set": {1, 2, 3},
        "set0": set(),
        "frozenset": frozenset(["q"]),
        "type": Plain,
        "builtin_type": int,
        "module": os,
        "function": free_function,
        "method": Outer.Inner.method,
        "none": None,
        "true": True,
        "false": False,
        "huge_list": list(range(10 ** 6)),
        "big_dict": {i: i for i in range(100000)},
        "nested": [[[[[[[["deep"]]]]]]]],
    }
    instance = Plain()
    objs["split_dict"] = instance.__dict__
    self_list = [1]
    self_list.append(self_list)
    objs["self_list"] = self_list
    self_dict = {}
    self_dict["me"] = self_dict
    objs["self_dict"] = self_dict
    objs["dict_deleted"] = d = {"x": 1, "y": 2, "z": 3}
    del d["x"]
    del d

    # A non-GC object whose ob_type we corrupt just before stopping (ob_type is the last
    # member of PyObject on every supported build).
    objs["corrupt"] = corrupt = float("1.5")
    objs["corrupt_nontype"] = corrupt_nontype = float("2.5")  # ob_type -> a list
    ob_type_offset = object.__basicsize__ - ctypes.sizeof(ctypes.c_void_p)

    # An object freed just before the stop (600 bytes: outside pymalloc, so the debug
    # allocator's 0xDD fill is not overwritten by a free-list link).
    freed = bytes(600)

    ids = {}
    for name in objs:
        ids[name] = [id(objs[name]), None]
    for name in ("float", "tuple", "list", "dict", "set", "bytes", "str_ascii", "int_large",
                 "split_dict", "self_list"):
        ids[name][1] = sys.getrefcount(objs[name]) - 1
    sizes = {}
    for name in ("tuple", "bytes", "int_large", "int_neg", "list", "float"):
        o = objs[name]
        n = len(o) if isinstance(o, (tuple, bytes)) else 0
        if isinstance(o, int):
            n = (o.bit_length() + 29) // 30
        sizes[name] = type(o).__basicsize__ + type(o).__itemsize__ * n
    del o  # the loop variable would hold a reference to the last object
    ids["freed"] = [id(freed), None]
    ids["null"] = [0, None]
    with open(os.path.join(outdir, "ids.json"), "w") as f:
        json.dump({"ids": ids, "sizes": sizes}, f)
    with open(os.path.join(outdir, "ids.gdb"), "w") as f:
        for name, (addr, _) in ids.items():
            f.write("set $o_%s = 0x%x\n" % (name, addr))
    ctypes.c_void_p.from_address(id(corrupt) + ob_type_offset).value = 0xDEADBEEF
    ctypes.c_void_p.from_address(id(corrupt_nontype) + ob_type_offset).value = \
        id(objs["list"])
    del freed
    os.abort()


if __name__ == "__main__":
    main(sys.argv[1])
