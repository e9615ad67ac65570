"""for_each() with a callback that returns None: 1000 leaked references to None."""
import sys

sys.path.insert(0, sys.argv[1])
import leak_none_result  # noqa: E402

seen = []
for _ in range(10):
    assert leak_none_result.for_each(seen.append, range(100)) == 100
assert len(seen) == 1000
