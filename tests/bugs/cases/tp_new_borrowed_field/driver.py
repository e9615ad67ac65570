"""Handlers around closures made on the spot, then called."""
import sys

sys.path.insert(0, sys.argv[1])
import tp_new_borrowed_field  # noqa: E402


def scale_by(k):
    return lambda x: x * k


handlers = [tp_new_borrowed_field.Handler(scale_by(k), "x%d" % k) for k in range(1, 4)]
for h in handlers:
    print(h, h(10))
