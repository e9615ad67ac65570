"""A moving average over more values than the ring holds."""
import sys

sys.path.insert(0, sys.argv[1])
import crash_abort  # noqa: E402

ring = crash_abort.Ring()
for i in range(40):
    ring.push(i * 0.5)
    print(i, ring.mean())
