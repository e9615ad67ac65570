"""Lookups (hits and misses), errors, full collections."""
import gc
import sys

sys.path.insert(0, sys.argv[1])
import ok_module_state as m  # noqa: E402

for i in range(300):
    name = "name-%d" % (i % 40)
    assert m.lookup(name) == (name, len(name))
    if i % 50 == 0:
        try:
            m.lookup("")
        except m.LookupError:
            pass
        gc.collect()
assert len(m.cache) == 40
