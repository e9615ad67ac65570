"""Encodes 600 records (nested dicts, lists, tuples, strings with quotes, numbers, None,
booleans, and objects through default()), checks the output against json, and ends."""
import json
import sys

sys.path.insert(0, sys.argv[1])
import ok_encoder  # noqa: E402


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


def default(obj):
    if isinstance(obj, Point):
        return {"x": obj.x, "y": obj.y}
    raise TypeError("not serializable: %r" % obj)


enc = ok_encoder.Encoder({}, default, ": ", ", ", sort_keys=True)
for i in range(600):
    record = {
        "id": i, "name": 'item "%d"' % i, "tags": ["a", "b%d" % (i % 7)],
        "score": i / 7, "big": 10 ** 20 + i, "ok": i % 2 == 0, "note": None,
        "where": Point(i, -i), "nested": {"depth": [1, (2, 3), {"k": "v"}]},
    }
    text = enc.encode(record)
    want = json.dumps(record, default=default, sort_keys=True)
    assert text == want, (text, want)
