"""Scales a vector and sums the result."""
import sys

sys.path.insert(0, sys.argv[1])
import steal_list_setitem  # noqa: E402

v = steal_list_setitem.scaled([1, 2.5, 4, 8], 0.5)
print(sum(v), v)
