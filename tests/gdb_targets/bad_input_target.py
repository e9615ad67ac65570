"""Target for tests/gdb/test_bad_input.py and tests/gdb/test_no_side_effects.py: builds the bad
inputs pyref's commands must survive, writes their addresses, runs the traced seedext so
that a ring exists, then stops with SIGABRT (a live stop under gdb, or a core dump).

    python bad_input_target.py MODDIR OUTDIR

OUTDIR/ids.gdb   `set $b_NAME = 0x...` for each input, for gdb to `source`

Inputs: a freed object (python3.11d's debug allocator poisons freed memory with 0xDD), a
non-object pointer (a ctypes malloc'd buffer full of 'A'), the data buffer of a bytes
object (inside an object, not at its start), a 10**6-element list, a self-referencing list
and dict, plus a few ordinary objects used as controls.
"""
import ctypes
import os
import sys


def main(moddir, outdir):
    sys.path.insert(0, moddir)
    import seedext

    freed = object()
    freed_addr = id(freed)
    del freed
    buf = ctypes.create_string_buffer(b"A" * 63)
    data = bytes(range(256)) * 4
    huge = [None] * 10 ** 6
    self_list = [1]
    self_list.append(self_list)
    self_dict = {}
    self_dict["me"] = self_dict
    text = "hello" + str(len(sys.argv))
    arg = []
    for _ in range(3):
        seedext.correct()
        seedext.leak(arg)
    ids = {
        "freed": freed_addr,
        "nonobj": ctypes.addressof(buf),
        "bytes_data": id(data) + bytes.__basicsize__ - 1,
        "huge": id(huge),
        "self_list": id(self_list),
        "self_dict": id(self_dict),
        "arg": id(arg),
        "str": id(text),
        "none": id(None),
    }
    with open(os.path.join(outdir, "ids.gdb"), "w") as f:
        for name, addr in ids.items():
            f.write("set $b_%s = 0x%x\n" % (name, addr))
    sys.stdout.flush()
    os.abort()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
