"""describe() of short and long values: each long one leaks its str()."""
import sys

sys.path.insert(0, sys.argv[1])
import leak_overwrite  # noqa: E402

for i in range(100):
    assert leak_overwrite.describe(i) == "<int: %d>" % i
    long = list(range(i, i + 20))
    assert leak_overwrite.describe(long) == "<list: %d characters>" % len(str(long))
