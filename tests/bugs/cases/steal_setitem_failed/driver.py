"""Stores values in range (fine), then one past the end (IndexError)."""
import sys

sys.path.insert(0, sys.argv[1])
import steal_setitem_failed  # noqa: E402

slots = [None] * 4
values = [[i, i * 2.5] for i in range(5)]
for i, v in enumerate(values):
    try:
        steal_setitem_failed.put(slots, i, v)
    except IndexError:
        print("slot %d does not exist" % i)
print(slots, values)
