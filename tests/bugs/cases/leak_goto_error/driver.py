"""Parses good records, then 200 batches whose last record is bad (each leaks its name)."""
import sys

sys.path.insert(0, sys.argv[1])
import leak_goto_error  # noqa: E402

good = [{"name": "n%d" % i, "value": i} for i in range(10)]
assert len(leak_goto_error.parse_records(good)) == 10
bad = good[:3] + [{"name": "broken-%d" % len(good), "value": "x"}]
for _ in range(200):
    try:
        leak_goto_error.parse_records(bad)
    except TypeError:
        pass
