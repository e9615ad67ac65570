"""Searches generated keys 100 times: each match leaks the generated item."""
import sys

sys.path.insert(0, sys.argv[1])
import leak_iter_next  # noqa: E402


def keys(n):
    return ("key-%d" % i for i in range(n))


for n in range(10, 110):
    assert leak_iter_next.index_of(keys(n), "key-7") == 7
try:
    leak_iter_next.index_of(keys(5), "key-7")
except ValueError:
    pass
