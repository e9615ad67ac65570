"""Swaps pairs of fresh objects and drops the results."""
import sys

sys.path.insert(0, sys.argv[1])
import buildvalue_N_borrowed  # noqa: E402

pairs = [("left-%d" % i, [i]) for i in range(10)]
for p in pairs:
    s = buildvalue_N_borrowed.swap_pair(p)
    assert s == (p[1], p[0])
    del s
print(pairs)
