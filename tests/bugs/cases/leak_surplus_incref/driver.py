"""A memoized function called for 300 keys, twice each: 300 misses, each leaking one
reference to the cached result."""
import sys

sys.path.insert(0, sys.argv[1])
import leak_surplus_incref  # noqa: E402


def label(i):
    return "item-%05d" % i


memo = leak_surplus_incref.Memo(label)
for _ in range(2):
    for i in range(300):
        assert memo(i) == label(i)
assert memo.misses == 300
