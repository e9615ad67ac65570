"""Queues filled, closed and dropped; then pending() of a closed queue."""
import sys

sys.path.insert(0, sys.argv[1])
import crash_null_field  # noqa: E402

for i in range(50):
    q = crash_null_field.Queue("jobs")
    for j in range(5):
        q.put(("job", i, j))
    assert q.pending() == 5
    q.close()
q = crash_null_field.Queue("jobs")
q.put("last")
q.close()
print(q.pending())
