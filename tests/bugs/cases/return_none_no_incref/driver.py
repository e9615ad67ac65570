"""Logs more messages than None has references."""
import sys

sys.path.insert(0, sys.argv[1])
import return_none_no_incref  # noqa: E402

log = return_none_no_incref.Logger()
for i in range(sys.getrefcount(None) + 1000):
    log.log("event %d" % i)
print(log.count())
