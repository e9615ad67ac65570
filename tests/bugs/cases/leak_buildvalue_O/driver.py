"""Splits 100 dotted names: each call leaks the head."""
import sys

sys.path.insert(0, sys.argv[1])
import leak_buildvalue_O  # noqa: E402

for i in range(100):
    name = "package%d.module.attr" % i
    assert leak_buildvalue_O.split_first(name) == ("package%d" % i, "module.attr")
