"""Registers a few objects and lists the keys."""
import sys

sys.path.insert(0, sys.argv[1])
import premature_decref_format  # noqa: E402

reg = premature_decref_format.Registry()
for obj in ([1, 2], {"a": 1}, 3.5, "text", (4,)):
    reg.register(obj)
print(reg.keys())
