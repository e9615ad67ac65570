"""Target for tests/gdb/test_gdb_show.py on a release interpreter without the debug allocator:
frees ten small bytes objects (pymalloc blocks: the freed block's first word becomes a
free-list link) and aborts.  python pymalloc_target.py OUTDIR -> OUTDIR/freed.txt"""
import os
import sys

objs = [bytes(range(i, i + 20)) for i in range(10)]
addrs = [id(o) for o in objs]
with open(os.path.join(sys.argv[1], "freed.txt"), "w") as f:
    f.write(" ".join("0x%x" % a for a in addrs))
del objs
os.abort()
