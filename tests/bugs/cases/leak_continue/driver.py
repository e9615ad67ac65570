"""Sizes of mixed lists, 100 times: each call skips (and leaks) the int and the float."""
import sys

sys.path.insert(0, sys.argv[1])
import leak_continue  # noqa: E402

DATA = [b"ab", 12345, "xyz", 2.5, (1, 2), [0] * 4]
for _ in range(100):
    assert leak_continue.total_size(DATA) == 2 + 3 + 2 + 4
