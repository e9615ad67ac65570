"""Renames one Config 100 times: each rename leaks the previous name."""
import sys

sys.path.insert(0, sys.argv[1])
import leak_setter_overwrite  # noqa: E402

cfg = leak_setter_overwrite.Config("initial", verbose=True)
for i in range(100):
    cfg.name = "config-%d" % i
assert cfg.name == "config-99"
