"""200 connections: used, re-initialised, closed (some with callbacks that refer back to
the connection: cycles), dropped, collected; 50 are kept alive to the end."""
import gc
import sys

sys.path.insert(0, sys.argv[1])
import ok_type_fields  # noqa: E402

Connection = ok_type_fields.Connection
closed = []
kept = []
for i in range(200):
    c = Connection("host-%d.example" % i, {"timeout": 1.5 * i, "retries": i % 4})
    for j in range(3):
        c.send(b"payload %d/%d" % (i, j))
    assert c.option("retries") == i % 4 and c.option("missing") is None
    if i % 3 == 0:
        c.__init__("renamed-%d" % i, on_close=lambda sent, c=c: closed.append((c.host, len(sent))))
    if i % 2 == 0:
        c.close()
    if i % 4 == 1:
        kept.append(c)
del c
gc.collect()
assert len(closed) == 34 and len(kept) == 50, (len(closed), len(kept))
