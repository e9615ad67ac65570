"""Runs one seedext pattern, prints what the test needs to know, then aborts for a core.

Usage: python seed_driver.py MODULE_DIR PATTERN [CALLS]
"""
import os
import sys

sys.path.insert(0, sys.argv[1])
import seedext  # noqa: E402

pattern, calls = sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1
arg = []
for _ in range(calls):
    if pattern == "leak":
        seedext.leak(arg)
    else:
        getattr(seedext, pattern)()
print("none", id(None), "arg", id(arg), flush=True)
os.abort()
