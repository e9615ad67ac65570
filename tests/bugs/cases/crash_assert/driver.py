"""Nested scopes, then one __exit__ too many."""
import sys

sys.path.insert(0, sys.argv[1])
import crash_assert  # noqa: E402

s = crash_assert.Scope()
for i in range(20):
    with s:
        with s:
            pass
s.__exit__(None, None, None)
