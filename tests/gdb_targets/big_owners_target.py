"""Target for tests/gdb/test_owners.py's test_big_containers: one object held only at
item [5000000] of a 10 M-item list (40 MB into its item array) and one held only as a
dict's value 50 MB into its keys, ids written for gdb, then SIGABRT (a core). Each block
is malloc's own mapping; an anonymous mapping made right after it lands just below it
and the kernel merges the two: the region no longer starts with the block's header,
which is then found by searching back from the word.

    python big_owners_target.py OUTDIR
"""
import mmap
import os
import sys


class Token:
    pass


def main(outdir):
    global BIG, WIDE
    BIG = [None] * 10000000
    below = [_anonymous()]
    BIG[5000000] = Token()
    WIDE = dict.fromkeys(range(2000000))      # int keys: 24-byte entries after 16 MB
    below.append(_anonymous())
    WIDE[1500000] = Token()
    with open(os.path.join(outdir, "ids.gdb"), "w") as f:
        f.write("set $o_item = 0x%x\nset $o_value = 0x%x\n" % (id(BIG[5000000]),
                                                              id(WIDE[1500000])))
    os.abort()


def _anonymous():
    m = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.write(b"x" * 4096)
    return m


if __name__ == "__main__":
    main(sys.argv[1])
